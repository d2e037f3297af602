"""The well-written boto3 loop: what a competent engineer writes by hand in an afternoon.

Each of a few threads long-polls for 10 messages, handles them one after the other with the
same counting work as our handler (naive_consumer.handle), and deletes the ones it handled in
one DeleteMessageBatch, reading its ``Failed`` entries. A message whose handling fails is left
alone: SQS redelivers it after its visibility timeout. With 2 threads it holds up to 20
messages, as our daemon does at --concurrency 20.

Configured like the daemon, by environment (AWS_ENDPOINT_URL, REDIS_URL, WORKERS_QUEUE_PREFIX).
SIGTERM ends it at once: what it held comes back from SQS anyway.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

import boto3
from botocore.config import Config
from naive_consumer import QUEUE, handle

from workers.adapters.redisconn import connect
from workers.core.settings import Settings
from workers.domain.links.counter import LinkCounter

WAIT_SECONDS = 20  # long polling: an idle queue costs one request per 20 s per thread
BATCH = 10  # SQS caps a receive and a batch delete at 10
DEFAULT_THREADS = 2


def work(sqs: Any, url: str, counter: LinkCounter) -> None:
    while True:
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=BATCH,
                                       WaitTimeSeconds=WAIT_SECONDS)
        done = []
        for message in response.get("Messages", []):
            try:
                handle(counter, message["Body"])
            except Exception as exc:  # left for SQS to redeliver, and said
                print(f"batch.failed {message['MessageId']} {exc!r}", flush=True)
                continue
            done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
        if done:
            failed = sqs.delete_message_batch(QueueUrl=url, Entries=done).get("Failed", [])
            for entry in failed:
                print(f"batch.delete_failed {entry}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    args = parser.parse_args()
    settings = Settings.from_env()
    sqs = boto3.client("sqs", region_name=settings.region, endpoint_url=settings.endpoint_url,
                       config=Config(max_pool_connections=args.threads + 2))
    counter = LinkCounter(connect(settings.redis_url), buckets=settings.link_buckets)
    url = sqs.get_queue_url(QueueName=settings.queue_name(QUEUE))["QueueUrl"]
    print("batch.started", flush=True)
    threads = [threading.Thread(target=work, args=(sqs, url, counter), daemon=True)
               for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
