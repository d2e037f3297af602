"""The consumer, one process_batch at a time, against moto's server and a real redis-server."""

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import drain, queue_depth, wait_until
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.core.errors import PermanentError, TransientError
from workers.core.message import Message
from workers.core.settings import Settings
from workers.domain.links.counter import LinkCounter
from workers.queues import consumer_of, handlers, post_sent
from workers.runtime.consumer import Consumer, Handlers, Outcome
from workers.runtime.daemon import Daemon, lane_sizes


def post(update_id: str, *urls: str) -> str:
    return json.dumps({"update_id": update_id, "profile_id": "p1", "urls": list(urls)})


@pytest.fixture
def send(sqs, queues, prefix):
    def send(*bodies: str, queue: str = "post-sent") -> None:
        for body in bodies:
            sqs.send_message(QueueUrl=queues[prefix + queue], MessageBody=body)
    return send


def counts(settings: Settings, redis_client, *keys: str) -> list[int]:
    return LinkCounter(redis_client, settings.link_buckets).counts(keys)


def test_handled_messages_are_counted_and_deleted(settings, send, sqs, source, redis_client):
    send(post("u1", "https://a.com"), post("u2", "https://a.com", "https://www.b.com/"))
    consumer = consumer_of("post-sent", settings)
    result = consumer.process_batch(wait_seconds=1)
    if result.received < 2:  # SQS may hand out fewer than asked
        result.add(consumer.process_batch(wait_seconds=1))
    assert (result.received, result.succeeded) == (2, 2)
    assert counts(settings, redis_client, "a.com", "b.com") == [2, 1]
    assert queue_depth(sqs, source) == 0


def test_a_redelivered_message_counts_once(settings, send, sqs, source, redis_client):
    body = post("u1", "https://a.com")
    send(body, body)  # the API enqueued it twice
    consumer = consumer_of("post-sent", settings)
    while consumer.process_batch(wait_seconds=1).received:
        pass
    assert counts(settings, redis_client, "a.com") == [1]
    assert queue_depth(sqs, source) == 0


def test_a_transient_failure_is_redelivered_later_and_counted_once(settings, send, sqs, source,
                                                                   redis_client):
    attempts = []
    counting = post_sent.build(settings, redis_client)

    def fails_after_counting_once(event):
        counting.handle(event)
        attempts.append(event.update_id)
        if len(attempts) == 1:
            raise TransientError("archive unavailable")

    send(post("u1", "https://a.com"))
    consumer = Consumer("post-sent", settings, handlers=Handlers(fails_after_counting_once))
    first = consumer.process_batch(wait_seconds=1)
    assert (first.retried, first.succeeded) == (1, 0)
    assert queue_depth(sqs, source) == 1  # kept, not deleted
    assert consumer.process_batch(wait_seconds=0).received == 0  # hidden for its backoff
    second = received_again(consumer, within=settings.visibility_timeout + 10)
    assert second.succeeded == 1
    assert counts(settings, redis_client, "a.com") == [1]
    assert queue_depth(sqs, source) == 0


def received_again(consumer: Consumer, within: float):
    """The result of the first batch that receives something, polling a second at a time."""
    return wait_until(lambda: (result := consumer.process_batch(wait_seconds=1)).received
                      and result, timeout=within)


def visibility_set(consumer: Consumer) -> list[int]:
    """The visibility timeouts the consumer gives its messages, in order, as it sets them."""
    seen: list[int] = []
    change = consumer.sqs.change_visibility

    def recording(pairs):
        seen.extend(seconds for _, seconds in pairs)
        return change(pairs)

    consumer.sqs.change_visibility = recording
    return seen


def test_backoff_grows_with_the_receive_count(settings, send, sqs, source):
    def always_fails(event):
        raise TransientError("down")

    # Given a message whose handler always fails transiently (2 s visibility timeout)
    send(post("u1", "https://a.com"))
    consumer = Consumer("post-sent", settings, handlers=Handlers(always_fails))
    timeouts = visibility_set(consumer)
    # When it is received three times
    consumer.process_batch(wait_seconds=1)
    for _ in range(2):
        assert consumer.process_batch(wait_seconds=0).received == 0  # hidden meanwhile
        received_again(consumer, within=20)
    # Then each receive hid it twice as long as the one before
    assert timeouts == [2, 4, 8]


def test_retry_after_sets_the_visibility(settings, send, sqs, source):
    def throttled(event):
        raise TransientError("429", retry_after=1)

    # Given a 60 s visibility timeout, and a peer answering "retry after 1 s"
    settings = Settings(**{**vars(settings), "visibility_timeout": 60})
    send(post("u1", "https://a.com"))
    consumer = Consumer("post-sent", settings, handlers=Handlers(throttled))
    timeouts = visibility_set(consumer)
    consumer.process_batch(wait_seconds=1)
    # Then the message is hidden for 1 s, not 60: it comes back long before the timeout
    assert timeouts == [1]
    received_again(consumer, within=15)


@pytest.mark.parametrize("body, reason", [
    ("{not json", "not JSON"),
    ("[1]", "not an object"),
    (json.dumps({"profile_id": "p1"}), "update_id"),
])
def test_bad_messages_go_to_the_dlq_at_once_with_their_reason(settings, send, sqs, source, dlq,
                                                              body, reason):
    send(body)
    result = consumer_of("post-sent", settings).process_batch(wait_seconds=1)
    assert result.dead_lettered == 1
    [dead] = drain(sqs, dlq)
    assert dead["Body"] == body
    assert reason in dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"]
    assert queue_depth(sqs, source) == 0


def test_a_permanent_error_keeps_the_message_attributes(settings, sqs, source, dlq):
    def refuses(event):
        raise PermanentError("unknown service")

    sqs.send_message(QueueUrl=source, MessageBody=post("u1"), MessageAttributes={
        "trace": {"DataType": "String", "StringValue": "abc"}})
    Consumer("post-sent", settings, handlers=Handlers(refuses)).process_batch(wait_seconds=1)
    [dead] = drain(sqs, dlq)
    assert dead["MessageAttributes"]["trace"]["StringValue"] == "abc"
    assert dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"] == "unknown service"


def test_a_crashing_handler_is_retried_not_fatal(settings, send, sqs, source):
    def buggy(event):
        raise ZeroDivisionError("oops")

    send(post("u1", "https://a.com"))
    result = Consumer("post-sent", settings,
                      handlers=Handlers(buggy)).process_batch(wait_seconds=1)
    assert result.retried == 1
    assert queue_depth(sqs, source) == 1


def test_redis_away_is_transient(settings, send, sqs, source):
    away = handlers("post-sent", Settings(**{**vars(settings),
                                             "redis_url": "redis://127.0.0.1:1/0"}))
    send(post("u1", "https://a.com"))
    result = Consumer("post-sent", settings, handlers=away).process_batch(wait_seconds=1)
    assert result.retried == 1
    assert queue_depth(sqs, source) == 1


def test_redis_away_is_said_by_the_consumer_for_every_handler_and_step(settings):
    """Handlers and before-ack steps let Redis's errors through: the consumer alone makes
    them transient, with one reason, and logs no crash."""
    import redis

    def handle(event):
        raise redis.ConnectionError("gone")

    def step(events):
        raise redis.ConnectionError("gone")

    consumer = Consumer("post-sent", settings, handlers=Handlers(handle, before_ack=(step,)))
    message = Message(id="m1", receipt_handle="r1", body="{}", receive_count=1)
    failed = consumer._failed(message, redis.ConnectionError("gone"))
    assert (failed.kind, failed.reason) == ("retried", "redis unavailable: ConnectionError: gone")
    succeeded = Outcome(message, "succeeded", event=object())
    [after] = consumer._before_ack(consumer._built(), [succeeded])
    assert (after.kind, after.reason) == ("retried", "redis unavailable: ConnectionError: gone")


def test_shutdown_gives_back_what_has_not_started(settings, send, sqs, source):
    started, cancelled = threading.Event(), threading.Event()

    def slow(event):
        started.set()
        cancelled.wait(10)  # still running while the others are given back

    send(*[post(f"u{i}", "https://a.com") for i in range(3)])
    consumer = Consumer("post-sent", settings, handlers=Handlers(slow), concurrency=3)
    consumer.pool = ThreadPoolExecutor(1)  # three received, one running at a time
    cancel = consumer._cancel_unstarted
    consumer._cancel_unstarted = lambda pending: (cancel(pending), cancelled.set())[0]
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(
        result=consumer.process_batch(wait_seconds=1, max_messages=3)))
    worker.start()
    assert started.wait(10)
    consumer.shutdown.request()
    worker.join(10)
    result = outcome["result"]
    assert result.succeeded == 1
    assert result.returned == result.received - 1
    # given back with visibility 0: receivable again at once, not after the 2 s timeout
    assert len(drain(sqs, source)) == result.returned


def test_what_a_poll_brings_after_a_stop_request_is_handled_not_given_back(
        settings, send, sqs, source, redis_client):
    # Given a consumer whose long poll is in flight when its daemon is asked to stop
    consumer = consumer_of("post-sent", settings)
    polling = threading.Event()
    receive = consumer.sqs.receive
    consumer.sqs.receive = lambda *a, **k: (polling.set(), receive(*a, **k))[1]
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(
        result=consumer.process_batch(wait_seconds=5)))
    worker.start()
    assert polling.wait(10)
    consumer.shutdown.request()
    # When the poll brings a message
    send(post("u1", "https://a.com"))
    worker.join(20)
    # Then it is handled and deleted: given back, it would have spent one of its receives
    assert (outcome["result"].succeeded, outcome["result"].returned) == (1, 0)
    assert counts(settings, redis_client, "a.com") == [1]
    assert queue_depth(sqs, source) == 0


def batch_of(settings, send, handler, n: int = 5) -> tuple[Consumer, list]:
    """Sends n events and handles them in one batch (more receives if SQS hands out fewer);
    returns the consumer and the names of the threads the handler ran on."""
    threads = []

    def recording(event):
        threads.append(threading.current_thread().name)
        return handler(event)

    send(*[post(f"u{i}", "https://a.com") for i in range(n)])
    consumer = Consumer("post-sent", settings, handlers=Handlers(recording), concurrency=10)
    consumer.typical_seconds = None
    return consumer, threads


def drain_all(consumer: Consumer, n: int) -> None:
    handled = 0
    while handled < n:
        handled += consumer.process_batch(wait_seconds=1).received


def test_quick_handlers_run_on_the_receiving_thread_without_a_hand_off(settings, send):
    consumer, threads = batch_of(settings, send, lambda event: None)
    consumer.typical_seconds = 0.001  # measured quick on earlier batches
    drain_all(consumer, 5)
    assert threads == [threading.current_thread().name] * 5


def test_slow_handlers_run_on_the_handler_threads_all_at_once(settings, send):
    running, most = [0], [0]
    lock = threading.Lock()

    def slow(event):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1

    consumer, threads = batch_of(settings, send, slow)
    drain_all(consumer, 5)
    assert consumer.typical_seconds >= 0.2  # measured slow: stays on the pool
    assert all(name.startswith("handler") for name in threads)
    assert most[0] > 1  # concurrently, not one after another


def test_a_handler_turning_slow_sends_the_rest_of_its_batch_to_the_pool(settings, send):
    calls = []

    def first_slow(event):
        calls.append(event.update_id)
        if len(calls) == 1:
            time.sleep(0.05)

    consumer, threads = batch_of(settings, send, first_slow)
    consumer.typical_seconds = 0.001
    drain_all(consumer, 5)
    assert threads[0] == threading.current_thread().name  # quick until it was not
    assert threads[1:] and all(name.startswith("handler") for name in threads[1:])


def test_no_receive_after_shutdown(settings, send):
    send(post("u1", "https://a.com"))
    consumer = consumer_of("post-sent", settings)
    consumer.shutdown.request()
    assert consumer.process_batch(wait_seconds=0).received == 0


def test_lanes_split_concurrency_into_receives_of_ten():
    assert lane_sizes(1) == [1]
    assert lane_sizes(20) == [10, 10]
    assert lane_sizes(25) == [10, 10, 5]


class RecordedWaits:
    """A Shutdown stand-in that never stops and remembers how long it was asked to wait; its
    ``clock`` moves only by those waits."""

    requested = False

    def __init__(self):
        self.waits = []
        self.now = 1000.0

    def wait(self, seconds):
        self.waits.append(seconds)
        self.now += seconds

    def clock(self):
        return self.now


def paused_daemon(settings, shutdown: RecordedWaits) -> Daemon:
    daemon = Daemon(consumer_of("post-sent", settings, shutdown=shutdown))
    daemon.clock = shutdown.clock
    return daemon


def test_a_lane_pauses_while_everything_fails_transiently_and_not_after(settings):
    from workers.runtime.consumer import BatchResult

    shutdown = RecordedWaits()
    daemon = paused_daemon(settings, shutdown)
    for _ in range(3):  # a peer is down: every message of every batch failed transiently
        daemon.pause_if_peers_down(BatchResult(received=10, retried=10))
    assert shutdown.waits == [1.0, 2.0, 4.0]
    daemon.pause_if_peers_down(BatchResult())  # an empty poll: nothing is failing now
    daemon.pause_if_peers_down(BatchResult(received=10, retried=10))
    assert shutdown.waits[-1] == 1.0  # the doubling starts over, not at 8 s
    daemon.pause_if_peers_down(BatchResult(received=10, succeeded=1, retried=9))
    assert len(shutdown.waits) == 4  # a success: no pause


def test_lanes_failing_together_share_one_pause_that_doubles_once_a_round(settings):
    from workers.runtime.consumer import BatchResult

    shutdown = RecordedWaits()
    daemon = Daemon(consumer_of("post-sent", settings, shutdown=shutdown))
    now = [1000.0]
    daemon.clock = lambda: now[0]  # moved by hand: the lanes wait side by side
    failed = BatchResult(received=10, retried=10)
    # Four lanes' batches fail 0.1 s apart (Redis went away under all of them)
    for lane in range(4):
        now[0] = 1000.0 + 0.1 * lane
        daemon.pause_if_peers_down(failed)
    # Each waits out the same pause, to the same moment: not 1, 2, 4 and 8 s
    assert [round(w, 6) for w in shutdown.waits] == [1.0, 0.9, 0.8, 0.7]
    # The next round's failures double it once
    now[0] = 1001.2
    daemon.pause_if_peers_down(failed)
    daemon.pause_if_peers_down(failed)
    assert [round(w, 6) for w in shutdown.waits[4:]] == [2.0, 2.0]


def test_a_before_ack_step_runs_once_per_batch_and_its_failure_keeps_the_batch(
        settings, send, sqs, source, redis_client):
    calls = []

    def replicas_behind(events):
        calls.append(len(events))
        assert len(events) in (1, 2, 3)  # the batch's succeeded events
        if len(calls) == 1:
            raise TransientError("replicas behind")

    send(*[post(f"u{i}", "https://a.com") for i in range(3)])
    wired = post_sent.build(settings, redis_client)
    consumer = Consumer("post-sent", settings,
                        handlers=dataclasses.replace(wired, before_ack=[replicas_behind]))
    first = consumer.process_batch(wait_seconds=1)
    assert (first.succeeded, first.retried) == (0, first.received) and len(calls) == 1
    assert queue_depth(sqs, source) == 3  # none deleted
    batches = 1
    while consumer.totals.succeeded < 3:
        batches += bool(consumer.process_batch(wait_seconds=1).received)
    assert queue_depth(sqs, source) == 0
    assert counts(settings, redis_client, "a.com") == [3]  # the retried ones counted once
    assert len(calls) == batches  # once a batch, not once a message


def test_post_sent_archives_its_batch_before_its_deletes(settings, redis_client):
    from workers.queues import email

    steps = post_sent.build(settings, redis_client).before_ack
    assert [step.__name__ for step in steps] == ["archive_batch"]
    assert email.build(settings, redis_client).before_ack == ()


def test_a_dead_letter_stays_invisible_until_deleted_however_slow_its_copy(settings, send, sqs,
                                                                           source, dlq):
    # Given a poison message, and an SQS whose DLQ copy takes longer than the 2 s timeout
    send("not json")
    consumer = consumer_of("post-sent", settings)
    copy = consumer.sqs.dead_letter
    copying = threading.Event()

    def slow_copy(*args, **kwargs):
        copying.set()
        time.sleep(3 * settings.visibility_timeout)  # a loaded SQS, not a wait for a condition
        return copy(*args, **kwargs)

    consumer.sqs.dead_letter = slow_copy
    consumer.heartbeat.start()
    try:
        with ThreadPoolExecutor(1) as pool:
            handling = pool.submit(consumer.process_batch, 1)
            assert copying.wait(10)
            # When another daemon polls while the copy is under way
            other = consumer_of("post-sent", settings)
            seen = [other.sqs.receive(10, 1) for _ in range(4 * settings.visibility_timeout)]
            result = handling.result()
    finally:
        consumer.heartbeat.stop()
    # Then it never sees the message, and the DLQ holds it once
    assert not any(seen) and result.dead_lettered == 1
    assert len(drain(sqs, dlq)) == 1 and queue_depth(sqs, source) == 0


def test_a_message_stays_hidden_while_handled_whatever_the_queues_own_timeout(
        settings, send, sqs, source):
    # Given a queue whose own visibility timeout is 0 (left so, or changed by hand): a
    # message it hands out is visible again at once, unless the receive says otherwise
    sqs.set_queue_attributes(QueueUrl=source, Attributes={"VisibilityTimeout": "0"})
    send(post("u1", "https://a.com"))
    seen_again = []

    def looks_for_it_again(event):
        seen_again.extend(sqs.receive_message(QueueUrl=source, WaitTimeSeconds=0)
                          .get("Messages", []))

    # When the daemon's consumer (WORKERS_VISIBILITY_TIMEOUT 2) handles it
    consumer = Consumer("post-sent", settings, handlers=Handlers(looks_for_it_again))
    assert consumer.process_batch(wait_seconds=1).succeeded == 1
    # Then nobody else received it meanwhile: the heartbeat's reckoning is what SQS keeps
    assert seen_again == []
    assert queue_depth(sqs, source) == 0
