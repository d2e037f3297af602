"""post-sent: count each link of a sent post once, in Redis."""

from __future__ import annotations

from typing import Any, Sequence

import structlog

from workers import archive, metrics
from workers.deps import Deps
from workers.errors import TransientError
from workers.events import PostSent
from workers.handlers import handler
from workers.links import ReplicasBehind
from workers.redisconn import REDIS_ERRORS
from workers.urls import InvalidURL, normalize_url

log = structlog.get_logger()


@handler("post-sent")
def post_sent(event: PostSent, deps: Deps) -> dict[str, Any]:
    keys, invalid = distinct_keys(event.all_urls)
    if invalid:
        metrics.INVALID_URLS.labels("post-sent").inc(len(invalid))
    for url, reason in invalid:
        log.warning("url.invalid", update_id=event.update_id, reason=reason, url=url[:200])
    try:  # with WORKERS_REDIS_WAIT_REPLICAS, also on that many replicas once it returns
        counted = deps.links.record(event.update_id, keys)
    except ReplicasBehind as exc:
        raise TransientError(f"redis replicas: {exc}") from None
    except REDIS_ERRORS as exc:
        raise TransientError(f"redis unavailable: {type(exc).__name__}: {exc}") from None
    if deps.archive is not None:  # every key, counted now or before: the archive is a superset
        archive.stage([{"update_id": event.update_id, "url": key,
                        "profile_id": event.profile_id, "created_at": event.created_at,
                        "service": event.service} for key in keys])
    deps.notifier.update_sent(event.profile_id, event.update_id, keys)  # best effort, never raises
    return {"urls": len(keys), "counted": sum(counted), "invalid_urls": len(invalid)}


def distinct_keys(urls: Sequence[Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """The event's normalized keys, each once, in order; and the invalid URLs with reasons
    (an entry that is no string shows as its JSON type: it may be any size or shape)."""
    keys: dict[str, None] = {}
    invalid = []
    for url in urls:
        if not isinstance(url, str):
            invalid.append((f"<{json_type(url)}>", "not a string"))
            continue
        try:
            keys[normalize_url(url)] = None
        except InvalidURL as exc:
            invalid.append((url, str(exc)))
    return list(keys), invalid


def json_type(value: Any) -> str:
    names = {type(None): "null", bool: "boolean", int: "number", float: "number",
             list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)
