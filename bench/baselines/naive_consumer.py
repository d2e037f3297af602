"""The baseline: the loop most SQS consumers start as. One message per receive, one delete per
message, one thread, but the SAME counting work as our handler (validate, normalize, count
once in Redis), so the comparison is about the runtime around the handler, not the handler.

Configured like the daemon, by environment (AWS_ENDPOINT_URL, REDIS_URL, WORKERS_QUEUE_PREFIX).
SIGTERM ends it at once: it is a baseline, and what it held comes back from SQS anyway.
"""

from __future__ import annotations

import json
import sys

import boto3

from workers.adapters.redisconn import connect
from workers.core.events import validate
from workers.core.settings import Settings
from workers.domain.links.counter import LinkCounter
from workers.queues.post_sent import distinct_keys

QUEUE = "post-sent"
# Long polling, as any sane naive loop does: an empty queue costs one request per 20 s.
WAIT_SECONDS = 20


def handle(counter: LinkCounter, body: str) -> None:
    event = validate(QUEUE, json.loads(body))
    keys, _invalid = distinct_keys(event.all_urls)
    counter.record(event.update_id, keys)


def main() -> None:
    settings = Settings.from_env()
    sqs = boto3.client("sqs", region_name=settings.region, endpoint_url=settings.endpoint_url)
    counter = LinkCounter(connect(settings.redis_url), buckets=settings.link_buckets)
    url = sqs.get_queue_url(QueueName=settings.queue_name(QUEUE))["QueueUrl"]
    print("naive.started", flush=True)
    while True:
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1,
                                       WaitTimeSeconds=WAIT_SECONDS)
        for message in response.get("Messages", []):
            handle(counter, message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
