"""Celery with its SQS broker (kombu's SQS transport), consuming the bench's queue.

    celery -A peer_celery worker -Q post-sent --pool threads --concurrency 20 \
        --prefetch-multiplier 1 --without-gossip --without-mingle --without-heartbeat

The queue is given as a predefined queue (kombu's documented way for queues that already
exist), reached through AWS_ENDPOINT_URL; long polling of 20 s as kombu's docs suggest for
throughput, no extra client-side wait after a poll.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from peer_common import QUEUE, TASK, count_post, endpoint

WAIT_SECONDS = 20

host, port = endpoint()
key = os.environ.get("AWS_ACCESS_KEY_ID", "testing")
secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
app = Celery("peer_celery")
app.conf.update(
    broker_url=f"sqs://{key}:{secret}@{host}:{port}",
    broker_transport_options={
        "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "is_secure": False,
        "wait_time_seconds": WAIT_SECONDS,
        "polling_interval": 0,
        "visibility_timeout": int(os.environ.get("WORKERS_VISIBILITY_TIMEOUT", "30")),
        "predefined_queues": {QUEUE: {"url": os.environ.get("BENCH_QUEUE_URL", ""),
                                      "access_key_id": key, "secret_access_key": secret}},
    },
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_ignore_result=True,
    # SQS has no broadcast: kombu would need SNS for remote control; the bench needs none.
    worker_enable_remote_control=False,
    worker_hijack_root_logger=False,
)


@app.task(name=TASK)
def count(event: dict[str, Any]) -> None:
    count_post(event)
