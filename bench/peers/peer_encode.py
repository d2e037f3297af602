"""Encodes post-sent events the way a peer's own library enqueues them.

    python peer_encode.py celery|dramatiq|sqsworkers < events.jsonl > entries.jsonl

Each output line is one SendMessageBatch entry without its Id (MessageBody, and
MessageAttributes where the peer uses them), captured from the library's own send path with
its SQS client replaced by a recorder: nothing is sent, nothing of its format is copied.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

from peer_common import QUEUE, Recorder


def celery(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import peer_celery

    recorder = Recorder()
    with peer_celery.app.producer_or_acquire() as producer:
        producer.channel.sqs = lambda queue=None: recorder
        for event in events:
            peer_celery.count.apply_async(args=[event], queue=QUEUE, producer=producer)
    return recorder.sent


def dramatiq(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import peer_dramatiq

    recorder = Recorder()
    peer_dramatiq.broker.queues[QUEUE] = recorder
    for event in events:
        peer_dramatiq.count.send(event)
    return recorder.sent


def sqsworkers(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import peer_sqsworkers

    recorder = Recorder()
    peer_sqsworkers.queue._queue = recorder
    for event in events:
        peer_sqsworkers.count.delay(event=event)
    return recorder.sent


ENCODERS: dict[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]]] = {
    "celery": celery, "dramatiq": dramatiq, "sqsworkers": sqsworkers}


def main() -> None:
    # The libraries build their clients on import; nothing is ever sent to this endpoint.
    for name, value in (("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ.setdefault(name, value)
    events = [json.loads(line) for line in sys.stdin if line.strip()]
    entries = ENCODERS[sys.argv[1]](events)
    if len(entries) != len(events):
        sys.exit(f"{sys.argv[1]}: {len(entries)} messages captured for {len(events)} events")
    for entry in entries:
        sys.stdout.write(json.dumps(entry, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
