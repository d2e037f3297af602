"""The link archive in S3 (moto's server): batched, before deletion, never missing a link."""

import json
import time

import boto3
import pytest

from helpers import log_events, queue_depth, start_daemon, wait_until
from workers.domain.links.archive import Archive
from workers.domain.links.counter import LinkCounter
from workers.queues import consumer_of


def post(update_id, *urls):
    return json.dumps({"update_id": update_id, "profile_id": "p1", "created_at": "1480431305",
                       "service": "twitter", "urls": list(urls)})


@pytest.fixture
def bucket(prefix):
    return prefix + "archive"


@pytest.fixture
def s3(settings):
    return boto3.client("s3", region_name=settings.region, endpoint_url=settings.endpoint_url)


@pytest.fixture
def archived(settings, bucket):
    return settings.model_copy(update={"archive_bucket": bucket})


def all_records(s3, bucket):
    archive = Archive(s3, bucket)
    return {key: list(archive.read(key)) for key in archive.keys()}


def test_a_batch_is_archived_as_one_object_before_deletion(archived, s3, sqs, queues, prefix,
                                                           bucket):
    s3.create_bucket(Bucket=bucket)
    source = queues[prefix + "post-sent"]
    sqs.send_message_batch(QueueUrl=source, Entries=[
        {"Id": "1", "MessageBody": post("u1", "https://a.com")},
        {"Id": "2", "MessageBody": post("u2", "https://a.com", "https://www.b.com/x#y")},
        {"Id": "3", "MessageBody": post("u3")}])
    consumer = consumer_of("post-sent", archived)
    handled = 0
    while handled < 3:
        handled += consumer.process_batch(wait_seconds=1).succeeded
    objects = all_records(s3, bucket)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert all(key.startswith(f"links/dt={day}/") and key.endswith(".jsonl.gz")
               for key in objects)
    assert len(objects) <= 2  # one per batch, never one per message
    records = sorted((r["update_id"], r["url"]) for rs in objects.values() for r in rs)
    assert records == [("u1", "a.com"), ("u2", "a.com"), ("u2", "b.com/x")]
    first = next(r for rs in objects.values() for r in rs)
    assert first["profile_id"] == "p1" and first["created_at"] == 1480431305.0
    assert queue_depth(sqs, source) == 0


def test_an_archive_outage_keeps_the_message_and_counts_once(archived, s3, sqs, queues, prefix,
                                                             bucket, redis_client):
    source = queues[prefix + "post-sent"]
    sqs.send_message(QueueUrl=source, MessageBody=post("u1", "https://a.com"))
    consumer = consumer_of("post-sent", archived)
    first = consumer.process_batch(wait_seconds=1)  # the bucket does not exist yet
    assert (first.retried, first.succeeded) == (1, 0)
    assert LinkCounter(redis_client).counts(["a.com"]) == [1]  # counted, not yet archived
    assert queue_depth(sqs, source) == 1
    s3.create_bucket(Bucket=bucket)
    again = wait_until(lambda: (got := consumer.process_batch(wait_seconds=1)).received and got,
                       timeout=archived.visibility_timeout + 10)  # back after its backoff
    assert again.succeeded == 1
    assert LinkCounter(redis_client).counts(["a.com"]) == [1]
    [records] = all_records(s3, bucket).values()
    assert [(r["update_id"], r["url"]) for r in records] == [("u1", "a.com")]
    assert queue_depth(sqs, source) == 0


def test_a_daemon_archives_what_it_counts(env, s3, sqs, queues, prefix, bucket, tmp_path,
                                          redis_client):
    s3.create_bucket(Bucket=bucket)
    source = queues[prefix + "post-sent"]
    for i in range(30):
        sqs.send_message(QueueUrl=source, MessageBody=post(f"u{i}", f"https://s{i % 3}.com"))
    proc = start_daemon("post-sent", {**env, "WORKERS_ARCHIVE_BUCKET": bucket},
                        tmp_path / "d.log")
    try:
        wait_until(lambda: queue_depth(sqs, source) == 0, timeout=60)
        records = [r for rs in all_records(s3, bucket).values() for r in rs]
        # Every counted update archived; a pair may be there twice (a message delivered twice,
        # SQS's at least once: docs/links.rst), which a rebuild de-duplicates
        assert sorted({r["update_id"] for r in records}) == sorted(f"u{i}" for i in range(30))
        assert LinkCounter(redis_client).counts(["s0.com", "s1.com", "s2.com"]) == [10, 10, 10]
        assert not any(e["event"] == "archive.failed" for e in log_events(tmp_path / "d.log"))
    finally:
        proc.kill()
        proc.wait()


def test_queues_create_makes_the_archive_bucket(env, s3, bucket):
    from helpers import workers_cmd

    for _ in range(2):  # idempotent
        done = workers_cmd("queues", "create", env={**env, "WORKERS_ARCHIVE_BUCKET": bucket})
        assert done.returncode == 0, done.stderr
    s3.head_bucket(Bucket=bucket)
