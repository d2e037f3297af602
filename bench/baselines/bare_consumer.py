"""moto's own ceiling: threads that receive 10 and delete them in one batch, with no handler.

No runtime around a handler can drain the queue faster than this loop does on the same moto,
so the bench reports every consumer's messages/s beside it. Configured by environment, like
the others (AWS_ENDPOINT_URL, WORKERS_QUEUE_PREFIX). SIGTERM ends it at once.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

import boto3
from botocore.config import Config

from workers.core.settings import Settings

QUEUE = "post-sent"
WAIT_SECONDS = 20
BATCH = 10
# Enough receives in flight that moto, not this loop, is what waits.
DEFAULT_THREADS = 4


def work(sqs: Any, url: str) -> None:
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=BATCH,
                                       WaitTimeSeconds=WAIT_SECONDS).get("Messages", [])
        if messages:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                       for i, m in enumerate(messages)]
            failed = sqs.delete_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
            for entry in failed:
                print(f"bare.delete_failed {entry}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    args = parser.parse_args()
    settings = Settings.from_env()
    sqs = boto3.client("sqs", region_name=settings.region, endpoint_url=settings.endpoint_url,
                       config=Config(max_pool_connections=args.threads + 2))
    url = sqs.get_queue_url(QueueName=settings.queue_name(QUEUE))["QueueUrl"]
    print("bare.started", flush=True)
    threads = [threading.Thread(target=work, args=(sqs, url), daemon=True)
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
