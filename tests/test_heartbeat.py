from workers.runtime.heartbeat import Heartbeat
from workers.runtime.message import Message


def msg(n: int) -> Message:
    return Message(id=f"m{n}", receipt_handle=f"r{n}", body="{}", receive_count=1)


def test_extends_a_message_once_half_its_timeout_has_passed():
    extended = []
    beat = Heartbeat(lambda pairs: extended.extend(pairs), timeout=10, on_error=print)
    beat.track([msg(1)])
    t0 = beat._held["r1"][1]
    assert beat.beat(now=t0 + 4) == 0
    assert beat.beat(now=t0 + 5.5) == 1
    assert extended == [(msg(1), 10)]
    assert beat.beat(now=t0 + 6) == 0  # hidden until t0 + 15.5 now


def test_forgets_finished_messages():
    extended = []
    beat = Heartbeat(lambda pairs: extended.extend(pairs), timeout=10, on_error=print)
    beat.track([msg(1), msg(2)])
    beat.untrack([msg(1)])
    beat.beat(now=beat._held["r2"][1] + 9)
    assert [m.id for m, _ in extended] == ["m2"]


def test_sqs_errors_are_reported_not_raised():
    errors = []

    def fail(_pairs):
        raise ConnectionError("sqs away")

    beat = Heartbeat(fail, timeout=2, on_error=errors.append)
    beat.track([msg(1)])
    beat.beat(now=beat._held["r1"][1] + 2)
    assert len(errors) == 1
