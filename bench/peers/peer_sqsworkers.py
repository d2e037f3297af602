"""Doist's sqs-workers, consuming the bench's queue: ``python peer_sqsworkers.py``.

One process, one loop: receive up to 10 (long polling), run the processor on each in turn,
delete the successes in one batch. Its JSON codec, so bodies are plain JSON (its default,
pickle, would only add work). The queue is ``WORKERS_QUEUE_PREFIX`` + ``post-sent``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from peer_common import QUEUE, TASK, count_post
from sqs_workers import SQSEnv

# sqs-workers' own default for process_queue's long poll.
WAIT_SECONDS = 10

env = SQSEnv(queue_prefix=os.environ.get("WORKERS_QUEUE_PREFIX", ""), codec="json")
queue = env.queue(QUEUE)


@queue.processor(TASK)
def count(event: dict[str, Any]) -> None:
    count_post(event)


if __name__ == "__main__":
    print("sqsworkers.started", flush=True)
    try:
        queue.process_queue(wait_second=WAIT_SECONDS)
    except KeyboardInterrupt:
        sys.exit(130)
