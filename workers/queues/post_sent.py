"""post-sent: count each link of a sent post once, in Redis; archive each batch's links in S3."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import structlog

from workers.adapters import aws
from workers.adapters.notify import Notifier
from workers.adapters.redisconn import Client
from workers.core import metrics
from workers.core.errors import TransientError
from workers.core.events import Event, PostSent
from workers.core.settings import Settings
from workers.domain.links.archive import Archive
from workers.domain.links.counter import LinkCounter, ReplicasBehind
from workers.domain.links.urls import InvalidURL, normalize_url
from workers.runtime.consumer import Handlers

log = structlog.get_logger()


class CountLinks:
    def __init__(self, counter: LinkCounter, notifier: Notifier, archive: Archive | None):
        self.counter = counter
        self.notifier = notifier
        self.archive = archive  # None when WORKERS_ARCHIVE_BUCKET is unset

    def handle(self, event: PostSent) -> dict[str, Any]:
        keys, invalid = valid_keys(event)
        with replicas_transient():  # with WORKERS_REDIS_WAIT_REPLICAS, also on that many
            counted = self.counter.record(event.update_id, keys)
        self.notifier.update_sent(event.profile_id, event.update_id, keys)  # best effort
        return {"urls": len(keys), "counted": sum(counted), "invalid_urls": invalid}

    def handle_batch(self, events: Sequence[PostSent]) -> list[dict[str, Any]]:
        """``handle`` of a whole batch: every event's links counted in one Redis round trip
        (and one WAIT, when asked), each pair still exactly once; Redis failing fails the
        batch (the consumer retries it whole)."""
        keyed = [(event, *valid_keys(event)) for event in events]
        with replicas_transient():
            counted = self.counter.record_all(
                [(event.update_id, keys) for event, keys, _ in keyed])
        self.notifier.update_sent_all(  # best effort, never raises
            [(event.profile_id, event.update_id, keys) for event, keys, _ in keyed])
        return [{"urls": len(keys), "counted": sum(counts), "invalid_urls": invalid}
                for (_, keys, invalid), counts in zip(keyed, counted, strict=True)]

    def archive_batch(self, events: Sequence[Event]) -> None:
        """The batch's records in one S3 object (never one per message) before its messages
        are deleted; if the write fails, they are retried (counting again is harmless), so no
        counted link is ever missing from the archive."""
        if self.archive is None:
            return
        records = [r for e in events if isinstance(e, PostSent) for r in archive_records(e)]
        if not records:
            return
        try:
            self.archive.write(records)
        except Exception as exc:  # S3 away, bucket missing: transient for the batch
            reason = f"archive unavailable: {type(exc).__name__}: {exc}"
            log.warning("archive.failed", error=reason, records=len(records))
            raise TransientError(reason) from None


def build(settings: Settings, redis: Client) -> Handlers:
    counter = LinkCounter(redis, buckets=settings.link_buckets,
                          replicas=settings.redis_wait_replicas)
    archive = (Archive(aws.client(settings, "s3"), settings.archive_bucket)
               if settings.archive_bucket else None)
    count = CountLinks(counter, Notifier.from_settings(settings), archive)
    return Handlers(count.handle, batch=count.handle_batch, before_ack=(count.archive_batch,))


@contextmanager
def replicas_transient() -> Iterator[None]:
    """Redis's replicas behind: transient, the counts are retried whole. (Redis away is the
    consumer's to say, as for every handler.)"""
    try:
        yield
    except ReplicasBehind as exc:
        raise TransientError(f"redis replicas: {exc}") from None


def valid_keys(event: PostSent) -> tuple[list[str], int]:
    """The event's keys, and how many of its URLs were invalid (each logged and counted)."""
    keys, invalid = distinct_keys(event.all_urls)
    if invalid:
        metrics.INVALID_URLS.labels("post-sent").inc(len(invalid))
    for url, reason in invalid:
        log.warning("url.invalid", update_id=event.update_id, reason=reason, url=url[:200])
    return keys, len(invalid)


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
