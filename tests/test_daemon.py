"""A real `workers run post-sent` process against moto's server and redis-server."""

from __future__ import annotations

import json
import signal
import time

import pytest
import redis

import devstack
from helpers import ON_SINGLE_AND_CLUSTER, alive, drain, log_events, queue_depth, wait_until
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.domain.links.counter import LinkCounter


def event(update_id: str, *urls: str) -> str:
    return json.dumps({"update_id": update_id, "profile_id": "p1", "created_at": 1480431305,
                       "urls": list(urls)})


@pytest.fixture
def daemon(daemons):
    return lambda *args, environment=None: daemons("post-sent", *args, environment=environment)


def counts_of(redis_client, *keys):
    return LinkCounter(redis_client).counts(keys)


@ON_SINGLE_AND_CLUSTER
def test_an_event_sent_with_plain_boto3_is_counted(daemon, sqs, source, redis_client):
    sqs.send_message(QueueUrl=source, MessageBody=event("u1", "https://www.Buffer.com/#top"))
    proc = daemon()
    wait_until(lambda: counts_of(redis_client, "buffer.com") == [1], timeout=30)
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=10)
    handled = [e for e in log_events(proc.log_path) if e["event"] == "message.handled"]
    assert handled[0]["queue"] == "post-sent" and handled[0]["outcome"] == "succeeded"
    assert {"message_id", "receive_count", "duration_ms"} <= set(handled[0])


@ON_SINGLE_AND_CLUSTER
def test_the_same_event_sent_twice_counts_once(daemon, sqs, source, redis_client):
    body = event("u1", "https://buffer.com", "https://buffer.com/", "https://a.com")
    daemon()
    sqs.send_message(QueueUrl=source, MessageBody=body)
    sqs.send_message(QueueUrl=source, MessageBody=body)
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=30)
    assert counts_of(redis_client, "buffer.com", "a.com") == [1, 1]


@ON_SINGLE_AND_CLUSTER
def test_bad_messages_reach_the_dlq_and_the_daemon_keeps_running(daemon, sqs, source, queues,
                                                                 prefix, redis_client):
    proc = daemon()
    for body in ["{not json", '{"update_id": "1"}', "[]", "\u2603" * 10]:
        sqs.send_message(QueueUrl=source, MessageBody=body)
    dlq = queues[prefix + "post-sent-dlq"]
    wait_until(lambda: queue_depth(sqs, dlq) == 4, timeout=30)
    reasons = [m["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"] for m in drain(sqs, dlq)]
    assert len(reasons) == 4 and all(reasons)
    assert any("profile_id: Field required" in r for r in reasons), reasons
    assert any("not JSON" in r for r in reasons), reasons
    assert proc.poll() is None
    sqs.send_message(QueueUrl=source, MessageBody=event("u1", "https://a.com"))
    wait_until(lambda: counts_of(redis_client, "a.com") == [1], timeout=30)


def test_redis_going_away_does_not_kill_the_daemon(daemon, env, sqs, source, tmp_path):
    own_redis = devstack.redis_server(log_path=tmp_path / "redis.log")
    own_redis.start()
    client = redis.Redis(port=own_redis.port)
    try:
        proc = daemon(environment={**env, "REDIS_URL": f"redis://127.0.0.1:{own_redis.port}/0"})
        own_redis.stop()
        sqs.send_message(QueueUrl=source, MessageBody=event("u1", "https://a.com"))
        wait_until(lambda: any(e.get("outcome") == "retried"
                               for e in log_events(proc.log_path)), timeout=30)
        assert proc.poll() is None
        assert queue_depth(sqs, source) == 1  # kept for a redelivery
        own_redis.start()  # same port, back up
        wait_until(lambda: LinkCounter(client).counts(["a.com"]) == [1], timeout=60)
        wait_until(lambda: queue_depth(sqs, source) == 0, timeout=30)
        assert proc.poll() is None
    finally:
        own_redis.discard()


@ON_SINGLE_AND_CLUSTER
def test_sigterm_during_a_batch_loses_nothing(daemon, env, sqs, source, redis_client):
    total = 300
    for start in range(0, total, 10):
        sqs.send_message_batch(QueueUrl=source, Entries=[
            {"Id": str(i), "MessageBody": event(f"u{i}", f"https://site{i % 7}.com")}
            for i in range(start, start + 10)])
    proc = daemon("--concurrency", "20")
    wait_until(lambda: sum(counts_of(redis_client, *[f"site{i}.com" for i in range(7)])) > 20,
               timeout=60, interval=0.01)
    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=45) == 0
    assert time.monotonic() - stopped_at < 30  # well within supervisord's stopwaitsecs (60)
    events = [e["event"] for e in log_events(proc.log_path)]
    assert "shutdown.requested" in events and events[-1] == "daemon.stopped"
    daemon()  # a fresh daemon takes over whatever the first left
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=120, interval=0.5)
    expected = [sum(1 for i in range(total) if i % 7 == site) for site in range(7)]
    assert counts_of(redis_client, *[f"site{i}.com" for i in range(7)]) == expected


def test_an_idle_daemon_stops_within_a_long_poll(daemon, env):
    # A 4 s long poll (WORKERS_WAIT_SECONDS): the stop waits out the receive in flight, no more.
    proc = daemon(environment={**env, "WORKERS_WAIT_SECONDS": "4"})
    wait_until(lambda: any(e["event"] == "daemon.started" for e in log_events(proc.log_path)),
               timeout=30)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert not alive(proc.pid)
