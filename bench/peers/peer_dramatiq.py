"""Dramatiq with dramatiq_sqs, consuming the bench's queue.

    dramatiq peer_dramatiq --processes 1 --threads 20

dramatiq_sqs names the SQS queue ``{namespace}_{queue}``; the bench creates it under that
name. The worker prefetches twice its threads, which dramatiq_sqs caps at 10 a receive.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq_sqs import SQSBroker
from peer_common import QUEUE, TASK, count_post

broker = SQSBroker(namespace=os.environ.get("BENCH_NAMESPACE", "bench"),
                   endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
                   region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name=TASK, queue_name=QUEUE)
def count(event: dict[str, Any]) -> None:
    count_post(event)
