import json

from workers.core.message import Message
from workers.queues import consumer_of
from workers.runtime.heartbeat import Heartbeat


def msg(n: int) -> Message:
    return Message(id=f"m{n}", receipt_handle=f"r{n}", body="{}", receive_count=1)


def recorder(extended: list):
    """An extend that SQS takes whole, recording each call's pairs."""
    def extend(pairs):
        extended.append(list(pairs))
        return []
    return extend


def test_extends_a_message_once_half_its_timeout_has_passed():
    extended = []
    beat = Heartbeat(recorder(extended), timeout=10, on_error=print)
    beat.track([msg(1)])
    t0 = beat._held["r1"][1]
    assert beat.beat(now=t0 + 4) == 0
    assert beat.beat(now=t0 + 5.5) == 1
    assert extended == [[(msg(1), 10)]]
    assert beat.beat(now=t0 + 6) == 0  # hidden until t0 + 15.5 now


def test_forgets_finished_messages():
    extended = []
    beat = Heartbeat(recorder(extended), timeout=10, on_error=print)
    beat.track([msg(1), msg(2)])
    beat.untrack([msg(1)])
    beat.beat(now=beat._held["r2"][1] + 9)
    assert [m.id for m, _ in extended[0]] == ["m2"]


def test_sqs_errors_are_reported_not_raised():
    errors = []

    def fail(_pairs):
        raise ConnectionError("sqs away")

    beat = Heartbeat(fail, timeout=2, on_error=errors.append)
    beat.track([msg(1)])
    beat.beat(now=beat._held["r1"][1] + 2)
    assert len(errors) == 1


def test_an_extension_sqs_did_not_answer_is_tried_again_before_the_message_turns_visible():
    # Given a message hidden for 30 s, whose first extension (at t=15) fails: SQS away
    calls = []

    def extend(pairs):
        calls.append([m.id for m, _ in pairs])
        if len(calls) == 1:
            raise ConnectionError("sqs away")
        return []

    beat = Heartbeat(extend, timeout=30, on_error=lambda exc: None)
    beat.track([msg(1)])
    t0 = beat._held["r1"][1]
    beat.beat(now=t0 + 15)
    # When the next beat comes, a sixth of the timeout later (the message still hidden till 30)
    extended = beat.beat(now=t0 + 20)
    # Then it extends the message again, and counts only the extension SQS took
    assert (extended, calls, beat.extensions) == (1, [["m1"], ["m1"]], 1)


def test_an_entry_sqs_refused_is_tried_again_alone():
    # Given two messages due, and a batch call that refuses the second one's entry
    calls = []

    def extend(pairs):
        calls.append([m.id for m, _ in pairs])
        return [m for m, _ in pairs if m.id == "m2"] if len(calls) == 1 else []

    beat = Heartbeat(extend, timeout=30, on_error=print)
    beat.track([msg(1), msg(2)])
    t0 = beat._held["r1"][1]
    # When the heartbeat beats at half the timeout, then a sixth of it later
    first = beat.beat(now=t0 + 15)
    second = beat.beat(now=t0 + 20)
    # Then the refused message alone is extended again at once; the taken one waits its turn
    assert (first, second) == (1, 1)
    assert calls == [["m1", "m2"], ["m2"]]
    assert beat.extensions == 2


def test_the_consumer_s_heartbeat_reads_sqs_s_answer_per_entry(settings, sqs, source):
    # Given a consumer holding a message it received from SQS, and one whose receipt handle
    # SQS no longer takes (its timeout expired, say)
    sqs.send_message(QueueUrl=source, MessageBody=json.dumps(
        {"update_id": "u1", "profile_id": "p1", "url": "https://a.com"}))
    consumer = consumer_of("post-sent", settings)
    [received] = consumer.sqs.receive(1, 1)
    stale = Message(id="gone", receipt_handle="expired-handle", body="{}", receive_count=1)
    calls = []
    change = consumer.sqs.change_visibility
    consumer.sqs.change_visibility = lambda pairs: (calls.append([m.id for m, _ in pairs]),
                                                    change(pairs))[1]
    beat = consumer.heartbeat
    beat.track([received, stale])
    t0 = beat._held[received.receipt_handle][1]
    # When the heartbeat extends both, in one batch call
    extended = beat.beat(now=t0 + settings.visibility_timeout)
    # Then only the one SQS took counts, and the next beat tries the refused one alone
    assert (extended, beat.extensions) == (1, 1)
    beat.beat(now=t0 + settings.visibility_timeout + 0.1)
    assert calls == [[received.id, "gone"], ["gone"]]
