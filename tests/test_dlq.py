"""`workers dlq`: list, peek, replay and purge, against moto's server; the move-task path (which
moto lacks) against a stand-in for SQS's task API."""

import json
import signal
import subprocess
import sys
import time
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from helpers import drain, queue_depth, wait_until, workers_cmd
from workers.adapters.sqs import ERROR_ATTRIBUTE, SQSQueue
from workers.ops.dlq import COPY, TASK, DeadLetters, DLQError
from workers.queues import consumer_of
from workers.runtime.consumer import Consumer
from workers.runtime.daemon import Daemon

# Ten of these are past the payload one SendMessageBatch may carry (256 KiB on moto, 1 MiB on
# SQS), each well within a message's.
POISON_BYTES = 150_000


def dead_letters(sqs, dlq: str, count: int) -> list[str]:
    """``count`` dead letters as our daemon leaves them: their own attribute, and our reason."""
    bodies = [json.dumps({"update_id": str(i), "profile_id": "p"}) for i in range(count)]
    for start in range(0, count, 10):
        sqs.send_message_batch(QueueUrl=dlq, Entries=[{
            "Id": str(i), "MessageBody": body, "MessageAttributes": {
                "origin": {"DataType": "String", "StringValue": "api"},
                ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": "handler said no"},
            }} for i, body in enumerate(bodies[start:start + 10])])
    return bodies


def visible(sqs, url: str) -> int:
    return int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])


def test_poison_messages_reach_the_dlq_and_peek_leaves_them_in_place(settings, env, sqs,
                                                                      source, dlq):
    # Given two messages no retry can fix, handled once by the consumer
    sqs.send_message(QueueUrl=source, MessageBody="not json")
    sqs.send_message(QueueUrl=source, MessageBody='{"update_id": "1"}')
    consumer = consumer_of("post-sent", settings)

    def handled() -> bool:
        consumer.process_batch(wait_seconds=1)  # SQS may hand out fewer than asked
        return queue_depth(sqs, dlq) == 2

    wait_until(handled, timeout=20)
    # When we peek twice
    first = workers_cmd("dlq", "peek", "post-sent", "--json", env=env)
    second = workers_cmd("dlq", "peek", "post-sent", env=env)
    # Then both show them, with their reasons, and they are still there, visible
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    shown = json.loads(first.stdout)
    assert {m["body"] for m in shown} == {'{"update_id": "1"}', "not json"}
    assert all(m["error"] and m["queue"] == settings.queue_name("post-sent") for m in shown)
    assert all(m["id"] in second.stdout for m in shown)
    assert "error: body is not JSON" in second.stdout
    assert visible(sqs, dlq) == 2 and queue_depth(sqs, source) == 0


class NoPause:
    """A Shutdown stand-in that never stops and records every pause asked of it."""

    requested = False

    def __init__(self):
        self.waits: list[float] = []

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)


def handle_until(consumer: Consumer, count: int) -> list:
    """Batches until ``count`` messages were received (SQS may hand out fewer than asked);
    each batch's result, after the lane's peer-down check has seen it."""
    results = []
    daemon = Daemon(consumer)
    while sum(r.received for r in results) < count:
        results.append(consumer.process_batch(wait_seconds=1))
        daemon.pause_if_peers_down(results[-1])
    return results


def test_large_poison_messages_reach_the_dlq_with_their_reasons_in_one_pass(settings, sqs,
                                                                           source, dlq):
    # Given ten ~150 KB bodies no retry can fix
    bodies = [f"{i}:" + "x" * POISON_BYTES for i in range(10)]
    for body in bodies:
        sqs.send_message(QueueUrl=source, MessageBody=body)
    shutdown = NoPause()
    consumer = consumer_of("post-sent", settings, shutdown=shutdown)
    # When the consumer receives them
    results = handle_until(consumer, 10)
    # Then every one is in the DLQ with its reason at the first receive, none left in flight,
    # and the lane never paused as if a peer were down
    assert sum(r.dead_lettered for r in results) == 10
    dead = drain(sqs, dlq)
    assert sorted(m["Body"] for m in dead) == sorted(bodies)
    assert all(m["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"].startswith(
        "body is not JSON") for m in dead)
    assert queue_depth(sqs, source) == 0
    assert shutdown.waits == []


def test_a_dead_letter_sqs_refuses_is_left_for_later_without_pausing_the_lane(settings, sqs,
                                                                              source, dlq):
    # Given poison messages, and a DLQ that refuses the first entry of every batch
    for i in range(3):
        sqs.send_message(QueueUrl=source, MessageBody=f"not json {i}")
    shutdown = NoPause()
    queue = SQSQueue(RefusingFirst(sqs), settings.queue_name("post-sent"),
                     settings.dlq_name("post-sent"))
    consumer = consumer_of("post-sent", settings, sqs_queue=queue, shutdown=shutdown)
    # When the consumer handles them
    results = handle_until(consumer, 3)
    # Then the refused ones stay in the source for a redelivery, the rest are dead letters,
    # and nothing counts as a transient failure of a peer
    refused = sum(r.not_dead_lettered for r in results)
    assert refused >= 1 and sum(r.dead_lettered for r in results) == 3 - refused
    assert sum(r.retried for r in results) == 0 and shutdown.waits == []
    assert queue_depth(sqs, source) == refused and queue_depth(sqs, dlq) == 3 - refused


def test_list_shows_each_dlq_depth_and_oldest_age(env, sqs, dlq, prefix):
    sent_at = time.time()
    dead_letters(sqs, dlq, 3)
    done = workers_cmd("dlq", "list", "--json", env=env)
    since_sent = time.time() - sent_at
    assert done.returncode == 0, done.stderr
    rows = {row["queue"]: row for row in json.loads(done.stdout)}
    assert rows["post-sent"]["dlq"] == prefix + "post-sent-dlq"
    assert (rows["post-sent"]["visible"], rows["analytics"]["visible"]) == (3, 0)
    assert 0 <= rows["post-sent"]["oldest_seconds"] <= since_sent + 1  # sent by this test
    assert rows["analytics"]["oldest_seconds"] is None
    assert visible(sqs, dlq) == 3  # the sample was given back
    text = workers_cmd("dlq", "list", env=env).stdout
    assert text.splitlines()[0].split() == ["QUEUE", "DLQ", "MESSAGES", "IN", "FLIGHT", "OLDEST"]


def test_replay_moves_every_message_back_with_body_and_attributes(env, sqs, source, dlq):
    bodies = dead_letters(sqs, dlq, 25)
    done = workers_cmd("dlq", "replay", "post-sent", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("moved 25, failed 0") and "receive/send/delete" in done.stdout
    assert "move task not available" in done.stderr  # moto has none: the fallback ran
    assert "replay: moved 25/25" in done.stderr
    moved = drain(sqs, source)
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    # Their own attributes kept, ours dropped: a replayed message starts clean
    assert all(set(m["MessageAttributes"]) == {"origin"} for m in moved)
    assert queue_depth(sqs, dlq) == 0


def test_replay_dry_run_moves_nothing(env, sqs, source, dlq):
    dead_letters(sqs, dlq, 5)
    done = workers_cmd("dlq", "replay", "post-sent", "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert "would move 5 message(s)" in done.stderr
    assert done.stdout.count("  body: ") == 5
    assert visible(sqs, dlq) == 5 and queue_depth(sqs, source) == 0


def test_replay_limit_moves_exactly_n(env, sqs, source, dlq):
    dead_letters(sqs, dlq, 25)
    done = workers_cmd("dlq", "replay", "post-sent", "--limit", "7", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("moved 7, failed 0")
    assert "move task" not in done.stderr  # a limit always copies
    assert queue_depth(sqs, source) == 7 and queue_depth(sqs, dlq) == 18


def test_a_replay_killed_midway_then_rerun_loses_nothing(env, sqs, source, dlq):
    # Given a few hundred dead letters and a replay killed after its first batches
    bodies = dead_letters(sqs, dlq, 200)
    proc = subprocess.Popen([sys.executable, "-m", "workers", "dlq", "replay", "post-sent",
                             "--visibility", "3"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = ""
        while not line.startswith("replay: moved"):
            line = proc.stderr.readline()
            assert line, "replay ended before printing progress"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert queue_depth(sqs, dlq) > 0  # it was killed midway
    # When its last batch is visible again and the replay runs once more
    wait_until(lambda: visible(sqs, dlq) == queue_depth(sqs, dlq), timeout=30)
    done = workers_cmd("dlq", "replay", "post-sent", env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    # Then every body is in the queue (a kill between send and delete may leave a duplicate)
    moved = [m["Body"] for m in drain(sqs, source)]
    assert set(moved) == set(bodies) and len(moved) >= len(bodies)
    assert queue_depth(sqs, dlq) == 0


class RefusingFirst:
    """moto's SQS, except that SQS refuses the first entry of every send batch."""

    def __init__(self, real: Any):
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        response = (self._real.send_message_batch(QueueUrl=QueueUrl, Entries=Entries[1:])
                    if len(Entries) > 1 else {"Successful": []})
        response.setdefault("Failed", []).append({
            "Id": Entries[0]["Id"], "SenderFault": True, "Code": "InvalidMessageContents",
            "Message": "refused"})
        return response


def test_replay_deletes_from_the_dlq_only_what_was_sent(settings, sqs, source, dlq):
    dead_letters(sqs, dlq, 25)
    result = DeadLetters(settings, "post-sent", RefusingFirst(sqs)).replay(method=COPY)
    assert result.failed >= 3 and result.moved + result.failed == 25
    assert queue_depth(sqs, source) == result.moved
    assert queue_depth(sqs, dlq) == result.failed  # the refused stay, hidden for a while
    assert result.failure("the-dlq") == (f"{result.failed} message(s) refused by SQS stay in "
                                         "the-dlq: InvalidMessageContents: refused")


def test_purge_needs_yes(env, sqs, dlq):
    dead_letters(sqs, dlq, 4)
    refused = workers_cmd("dlq", "purge", "post-sent", env=env)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: purge deletes every message") and "--yes" in \
        refused.stderr
    assert queue_depth(sqs, dlq) == 4
    done = workers_cmd("dlq", "purge", "post-sent", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert queue_depth(sqs, dlq) == 0


def test_a_missing_queue_is_one_clear_line(env, prefix):
    done = workers_cmd("dlq", "peek", "email", env=env)  # no `queues` fixture: none exists
    assert done.returncode == 1
    assert done.stderr == (f"error: queue {prefix}email-dlq does not exist "
                           "(`workers queues create` creates it)\n")


def test_every_dlq_command_explains_itself(env):
    for args in (["dlq"], ["dlq", "list"], ["dlq", "peek"], ["dlq", "replay"], ["dlq", "purge"]):
        done = workers_cmd(*args, "--help", env=env)
        assert done.returncode == 0 and "Usage: workers" in done.stdout, args


# -- the move-task path: moto lacks StartMessageMoveTask ----------------------------------------

class WithMoveTask:
    """moto's SQS plus a stand-in for the move-task API, which records what it is asked."""

    def __init__(self, real: Any, running: dict | None = None):
        self._real = real
        self.started: list[dict] = []
        self.tasks = [running] if running else []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def start_message_move_task(self, **kwargs: Any) -> dict:
        self.started.append(kwargs)
        self.tasks.insert(0, {"TaskHandle": "h1", "Status": "RUNNING", "StartedTimestamp": 1,
                              "ApproximateNumberOfMessagesMoved": 0})
        return {"TaskHandle": "h1"}

    def list_message_move_tasks(self, SourceArn: str, MaxResults: int) -> dict:
        for task in self.tasks:  # a running task is found done (5 moved) at the second look
            if task["Status"] == "RUNNING":
                task["looks"] = task.get("looks", 0) + 1
                if task["looks"] == 2:
                    task.update(Status="COMPLETED", ApproximateNumberOfMessagesMoved=5)
                    del task["TaskHandle"]  # SQS gives the handle of running tasks only
        return {"Results": [{k: v for k, v in t.items() if k != "looks"} for t in self.tasks]}


def arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]


def test_replay_uses_sqs_move_task_where_the_endpoint_runs_it(settings, sqs, source, dlq):
    dead_letters(sqs, dlq, 5)
    fake = WithMoveTask(sqs)
    lines: list[str] = []
    result = DeadLetters(settings, "post-sent", fake, poll_seconds=0).replay(
        progress=lines.append)
    assert (result.via, result.moved) == (TASK, 5)
    assert fake.started == [{"SourceArn": arn(sqs, dlq), "DestinationArn": arn(sqs, source)}]
    assert lines[-1] == "moved 5 (SQS move task)"
    assert queue_depth(sqs, dlq) == 5  # the stand-in moves nothing: nothing was copied


def test_replay_follows_a_running_move_task_rather_than_start_another(settings, sqs, dlq):
    dead_letters(sqs, dlq, 5)
    fake = WithMoveTask(sqs, running={"TaskHandle": "h0", "Status": "RUNNING",
                                      "StartedTimestamp": 1})
    lines: list[str] = []
    result = DeadLetters(settings, "post-sent", fake, poll_seconds=0).replay(
        progress=lines.append)
    assert (result.via, result.moved, fake.started) == (TASK, 5, [])
    assert lines[0].startswith("following the move task already running")


def test_replay_with_a_limit_copies_even_where_the_move_task_runs(settings, sqs, source, dlq):
    dead_letters(sqs, dlq, 5)
    fake = WithMoveTask(sqs)
    result = DeadLetters(settings, "post-sent", fake).replay(limit=3)
    assert (result.via, result.moved, fake.started) == (COPY, 3, [])
    assert queue_depth(sqs, source) == 3
    with pytest.raises(DLQError, match="cannot stop after N"):
        DeadLetters(settings, "post-sent", fake).replay(limit=3, method=TASK)


def stubbed_letters(settings) -> tuple[DeadLetters, Stubber]:
    """DeadLetters on a botocore client whose every answer is scripted (no server)."""
    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    letters = DeadLetters(settings, "post-sent", client, poll_seconds=0)
    letters.url, letters.dlq_url = "https://sqs/q", "https://sqs/q-dlq"
    stub = Stubber(client)
    for url, queue_arn in ((letters.dlq_url, "arn:dlq"), (letters.url, "arn:q")):
        stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": queue_arn}},
                          {"QueueUrl": url, "AttributeNames": ["QueueArn"]})
    stub.add_response("list_message_move_tasks", {"Results": []})
    stub.add_response("get_queue_attributes", {"Attributes": {
        "ApproximateNumberOfMessages": "40", "ApproximateNumberOfMessagesNotVisible": "0",
        "ApproximateNumberOfMessagesDelayed": "0"}})
    stub.add_response("start_message_move_task", {"TaskHandle": "h1"},
                      {"SourceArn": "arn:dlq", "DestinationArn": "arn:q"})
    stub.add_response("list_message_move_tasks", {"Results": [
        {"TaskHandle": "h1", "Status": "RUNNING", "ApproximateNumberOfMessagesMoved": 10,
         "ApproximateNumberOfMessagesToMove": 40, "StartedTimestamp": 2}]})
    return letters, stub


def test_move_task_is_started_from_the_dlq_to_its_queue_and_followed(settings):
    letters, stub = stubbed_letters(settings)
    stub.add_response("list_message_move_tasks", {"Results": [
        {"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 40, "StartedTimestamp": 2},
        {"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 3, "StartedTimestamp": 1}]})
    lines: list[str] = []
    with stub:
        result = letters.replay(progress=lines.append)
    stub.assert_no_pending_responses()
    assert (result.via, result.moved) == (TASK, 40)
    assert lines == ["moved 10/40 (SQS move task)", "moved 40 (SQS move task)"]


def test_a_failed_move_task_is_one_clear_error(settings):
    letters, stub = stubbed_letters(settings)
    stub.add_response("list_message_move_tasks", {"Results": [
        {"Status": "FAILED", "FailureReason": "AccessDenied on the destination",
         "ApproximateNumberOfMessagesMoved": 12, "StartedTimestamp": 2}]})
    with stub, pytest.raises(DLQError, match="ended FAILED after 12 .*AccessDenied"):
        letters.replay()
