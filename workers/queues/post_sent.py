"""post-sent: count each link of a sent post once, in Redis; archive each batch's links in S3."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import structlog

from workers.adapters.redisconn import REDIS_ERRORS
from workers.core import metrics
from workers.core.errors import TransientError
from workers.core.events import Event, PostSent
from workers.domain.links.counter import ReplicasBehind
from workers.domain.links.urls import InvalidURL, normalize_url
from workers.queues import batch_handler, before_ack, queue
from workers.runtime.deps import Deps

log = structlog.get_logger()


# The busy queue: two processes to start with, counting on Redis.
@queue("post-sent", schema=PostSent, procs=2, port_block=0)
def post_sent(event: PostSent, deps: Deps) -> dict[str, Any]:
    keys, invalid = valid_keys(event)
    with redis_transient():  # with WORKERS_REDIS_WAIT_REPLICAS, also on that many replicas
        counted = deps.links.record(event.update_id, keys)
    deps.notifier.update_sent(event.profile_id, event.update_id, keys)  # best effort
    return {"urls": len(keys), "counted": sum(counted), "invalid_urls": invalid}


@batch_handler("post-sent")
def post_sent_batch(events: Sequence[PostSent], deps: Deps) -> list[dict[str, Any]]:
    """``post_sent`` of a whole batch: every event's links counted in one Redis round trip
    (and one WAIT, when asked), each pair still exactly once; Redis failing fails the batch."""
    keyed = [(event, *valid_keys(event)) for event in events]
    with redis_transient():
        counted = deps.links.record_all([(event.update_id, keys) for event, keys, _ in keyed])
    deps.notifier.update_sent_all(  # best effort, never raises
        [(event.profile_id, event.update_id, keys) for event, keys, _ in keyed])
    return [{"urls": len(keys), "counted": sum(counts), "invalid_urls": invalid}
            for (_, keys, invalid), counts in zip(keyed, counted, strict=True)]


@contextmanager
def redis_transient() -> Iterator[None]:
    """Redis away, or its replicas behind: transient, the counts are retried whole."""
    try:
        yield
    except ReplicasBehind as exc:
        raise TransientError(f"redis replicas: {exc}") from None
    except REDIS_ERRORS as exc:
        raise TransientError(f"redis unavailable: {type(exc).__name__}: {exc}") from None


def valid_keys(event: PostSent) -> tuple[list[str], int]:
    """The event's keys, and how many of its URLs were invalid (each logged and counted)."""
    keys, invalid = distinct_keys(event.all_urls)
    if invalid:
        metrics.INVALID_URLS.labels("post-sent").inc(len(invalid))
    for url, reason in invalid:
        log.warning("url.invalid", update_id=event.update_id, reason=reason, url=url[:200])
    return keys, len(invalid)


@before_ack("post-sent")
def archive_batch(deps: Deps, events: Sequence[Event]) -> None:
    """The batch's records in one S3 object (never one per message) before its messages are
    deleted; if the write fails, they are retried (counting again is harmless), so no counted
    link is ever missing from the archive."""
    if deps.archive is None:
        return
    records = [r for e in events if isinstance(e, PostSent) for r in archive_records(e)]
    if not records:
        return
    try:
        deps.archive.write(records)
    except Exception as exc:  # S3 away, bucket missing: transient for the batch
        reason = f"archive unavailable: {type(exc).__name__}: {exc}"
        log.warning("archive.failed", error=reason, records=len(records))
        raise TransientError(reason) from None


def archive_records(event: PostSent) -> list[dict[str, Any]]:
    """One record per valid key of the event, counted now or before: the archive is a
    superset of the counts. Invalid URLs were logged by the handler already."""
    keys, _invalid = distinct_keys(event.all_urls)
    return [{"update_id": event.update_id, "url": key, "profile_id": event.profile_id,
             "created_at": event.created_at, "service": event.service} for key in keys]


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
