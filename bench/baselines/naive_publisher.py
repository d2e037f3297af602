"""The hand-written publisher: what a team writes first, and what "exactly once" is measured
against in `make bench` (bench/publishbench.py).

Each of a few threads long-polls for 10 publish messages, posts each to its network (the same
calls our adapters make, without our state machine: no claim, no lookup, no record), and
deletes the batch. A redelivery after a crash or a timeout posts again; that is the point of
the comparison, not a bug to fix here.

Configured by environment (AWS_ENDPOINT_URL, REDIS_URL for the tokens, WORKERS_QUEUE_PREFIX,
WORKERS_*_API_URL). SIGTERM ends it at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import requests

from workers.adapters.networks import facebook, linkedin
from workers.adapters.redisconn import connect
from workers.core.settings import Settings

QUEUE = "publish"
WAIT_SECONDS = 20
BATCH = 10
DEFAULT_THREADS = 2


def post(session: requests.Session, settings: Settings, redis: Any, event: dict) -> None:
    service = event["service"]
    token = redis.hget(f"creds:{event['profile_id']}", service).decode()
    auth = {"Authorization": f"Bearer {token}"}
    url = settings.network_option(service, "url", "")  # the bench's stand-in's, always set
    if service == "twitter":
        answer = session.post(f"{url}/2/tweets", headers=auth,
                              json={"text": event["text"]}, timeout=10)
    elif service == "facebook":
        version = settings.network_option(service, "version", facebook.API_VERSION)
        answer = session.post(f"{url}/{version}/"
                              f"{event['target']}/feed", headers=auth,
                              data={"message": event["text"]}, timeout=10)
    else:
        version = settings.network_option(service, "version", linkedin.API_VERSION)
        answer = session.post(f"{url}/rest/posts", timeout=10, headers={
            **auth, "LinkedIn-Version": version,
            "X-Restli-Protocol-Version": "2.0.0"}, json={
            "author": event["target"], "commentary": event["text"], "visibility": "PUBLIC",
            "distribution": {"feedDistribution": "MAIN_FEED"},
            "lifecycleState": "PUBLISHED"})
    answer.raise_for_status()


def work(sqs: Any, url: str, settings: Settings, redis: Any) -> None:
    session = requests.Session()
    with ThreadPoolExecutor(BATCH) as pool:
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=BATCH,
                                           WaitTimeSeconds=WAIT_SECONDS).get("Messages", [])
            events = [json.loads(m["Body"]) for m in messages]
            results = list(pool.map(lambda e: _try(session, settings, redis, e), events))
            done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, (m, ok) in enumerate(zip(messages, results, strict=True)) if ok]
            if done:
                sqs.delete_message_batch(QueueUrl=url, Entries=done)


def _try(session: requests.Session, settings: Settings, redis: Any, event: dict) -> bool:
    try:
        post(session, settings, redis, event)
        return True
    except Exception as exc:  # left for SQS to redeliver, and said
        print(f"publish.failed {event.get('update_id')} {exc!r}", flush=True)
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    args = parser.parse_args()
    settings = Settings.from_env()
    sqs = boto3.client("sqs", region_name=settings.region, endpoint_url=settings.endpoint_url)
    redis = connect(settings.redis_url)
    url = sqs.get_queue_url(QueueName=settings.queue_name(QUEUE))["QueueUrl"]
    print("publisher.started", flush=True)
    threads = [threading.Thread(target=work, args=(sqs, url, settings, redis), daemon=True)
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
