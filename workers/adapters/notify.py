"""Pusher Channels, best effort: a failed trigger is logged and counted, never raised.

The browser of a profile listens on ``private-profile-{profile_id}``; handlers tell it that a
post went out (``update-sent``) or that its engagement was fetched (``analytics-updated``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import pusher
import structlog
from pusher.requests import RequestsBackend

from workers.adapters import httpclient
from workers.core import metrics
from workers.core.settings import Settings

# Seconds to connect, then to read. Pusher answers in milliseconds; a notification is worth
# less than the message it follows, so an unreachable Pusher costs a handler at most this
# (per phase) before the message is acknowledged anyway.
PUSHER_TIMEOUT_SECONDS = 2
# Pusher refuses events over 10 kB: the links of a post that names many are cut to this many
# characters in all (``url_count`` still says how many there were).
MAX_NOTIFIED_URL_CHARS = 8000
# A batch's notifications at once (SQS receives at most 10): a batch waits for its slowest
# one, not for their sum.
NOTIFY_THREADS = 10
UPDATE_SENT = "update-sent"
ANALYTICS_UPDATED = "analytics-updated"
UPDATE_PUBLISHED = "update-published"

log = structlog.get_logger()


def profile_channel(profile_id: str) -> str:
    return f"private-profile-{profile_id}"


class _PooledBackend(RequestsBackend):
    """pusher's own requests backend, on a session sized for our handler threads."""

    def __init__(self, client: Any, **options: Any):
        super().__init__(client, **options)
        self.session = httpclient.session()


class Notifier:
    """Triggers Pusher events; does nothing when Pusher is not configured."""

    def __init__(self, client: pusher.Pusher | None = None, secret: str | None = None):
        self.client = client
        self._secret = secret  # only to blank it out of error messages
        self._threads: ThreadPoolExecutor | None = None  # update_sent_all's, made on first use
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings,
                      timeout: float = PUSHER_TIMEOUT_SECONDS) -> "Notifier":
        if not settings.pusher_enabled:
            return cls()
        try:
            client = pusher.Pusher(
                app_id=settings.pusher_app_id, key=settings.pusher_key,
                secret=settings.pusher_secret, cluster=settings.pusher_cluster,
                host=settings.pusher_host, port=settings.pusher_port, ssl=settings.pusher_ssl,
                timeout=timeout, backend=_PooledBackend)
        except (TypeError, ValueError) as exc:  # e.g. a non-numeric PUSHER_APP_ID
            log.error("pusher.misconfigured",
                      error=httpclient.describe(exc, settings.pusher_secret))
            return cls()
        return cls(client, settings.pusher_secret)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def trigger(self, channel: str, event: str, data: Any) -> bool:
        """True when Pusher took the event; False when it is off or failed (logged, counted)."""
        if self.client is None:
            return False
        try:
            self.client.trigger(channel, event, data)
        except Exception as exc:  # best effort: whatever went wrong, the handler's work stands
            metrics.PUSHER_FAILURES.labels(event).inc()
            log.warning("pusher.failed", channel=channel, pusher_event=event,
                        error=httpclient.describe(exc, self._secret))
            return False
        return True

    def update_sent(self, profile_id: str, update_id: str, urls: Sequence[str]) -> bool:
        """A post went out; ``urls`` are its normalized, counted links (maybe none)."""
        return self.trigger(profile_channel(profile_id), UPDATE_SENT, {
            "update_id": update_id, "urls": _first_fitting(urls, MAX_NOTIFIED_URL_CHARS),
            "url_count": len(urls)})

    def update_sent_all(self, sent: Sequence[tuple[str, str, Sequence[str]]]) -> None:
        """``update_sent`` of each (profile_id, update_id, urls) of a batch, at once: one
        Pusher call per post, but a batch never waits for them one after another."""
        if self.client is None or not sent:
            return
        if len(sent) == 1:
            self.update_sent(*sent[0])
            return
        list(self._pool().map(lambda s: self.update_sent(*s), sent))

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(NOTIFY_THREADS, thread_name_prefix="pusher")
            return self._threads

    def update_published(self, profile_id: str, update_id: str, service: str,
                         service_update_id: str) -> bool:
        """A scheduled post went out on its network."""
        return self.trigger(profile_channel(profile_id), UPDATE_PUBLISHED, {
            "update_id": update_id, "service": service, "service_update_id": service_update_id})

    def analytics_updated(self, profile_id: str, update_id: str, service: str,
                          engagement: dict[str, int], fetched_at: int) -> bool:
        return self.trigger(profile_channel(profile_id), ANALYTICS_UPDATED, {
            "update_id": update_id, "service": service, "metrics": engagement,
            "fetched_at": fetched_at})


def _first_fitting(urls: Sequence[str], budget: int) -> list[str]:
    kept = []
    for url in urls:
        budget -= len(url) + 3  # its quotes and comma in the JSON
        if budget < 0:
            break
        kept.append(url)
    return kept


__all__ = ["ANALYTICS_UPDATED", "Notifier", "UPDATE_SENT", "profile_channel"]
