"""What every peer's task runs: the same counting work as our post-sent handler and the boto3
loops (validate, normalize, count once in Redis), so the bench compares the runtimes around
it. Imported in the peer virtualenv, where the project is installed beside the peers."""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlsplit

from workers.adapters.redisconn import connect
from workers.core.events import validate
from workers.core.settings import Settings
from workers.domain.links.counter import LinkCounter
from workers.queues.post_sent import distinct_keys

QUEUE = "post-sent"
# Every peer's task is registered under this name, so each encoder and its worker agree.
TASK = "count_post"

_counter: LinkCounter | None = None
_lock = threading.Lock()


def counter() -> LinkCounter:
    """One LinkCounter per process (Celery's prefork children each make their own)."""
    global _counter
    with _lock:
        if _counter is None:
            settings = Settings.from_env()
            _counter = LinkCounter(connect(settings.redis_url), buckets=settings.link_buckets)
        return _counter


def count_post(event: dict[str, Any]) -> None:
    post = validate(QUEUE, event)
    keys, _invalid = distinct_keys(post.all_urls)
    counter().record(post.update_id, keys)


def endpoint() -> tuple[str, int]:
    """The SQS endpoint (the bench's counting proxy) as host and port."""
    parts = urlsplit(os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:1"))
    return parts.hostname or "127.0.0.1", parts.port or 80


class Recorder:
    """Stands in for a boto3 SQS client or queue while an encoder runs: keeps what the peer's
    library would send, so the bench feeds each peer its own format without copying it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **kwargs: Any) -> dict[str, str]:
        entry = {k: v for k, v in kwargs.items() if k in ("MessageBody", "MessageAttributes")}
        self.sent.append(entry)
        return {"MessageId": str(len(self.sent))}

    def get_queue_attributes(self, **_kwargs: Any) -> dict[str, Any]:
        """kombu declares the queue before its first send, and asks its depth."""
        return {"Attributes": {"ApproximateNumberOfMessages": "0"}}
