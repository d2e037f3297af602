"""Send once: a mark in Redis per email or push message sent, so that a redelivery, a replay
from the DLQ or the same event enqueued twice is acknowledged without sending it again.

A message is claimed before its send (``sending``, for a lease, renewed while the send runs:
smtplib's timeouts bound each operation, not the conversation, so a slow server could
otherwise outlast the lease and let a second delivery send beside it), marked ``sent`` after a
send the service accepted, and released after a send that failed, so a retry may send it. The key
is the event's ``idempotency_key`` when the API gives one, else a digest of the queue and the
message body: stable across redeliveries and DLQ replays (which keep the body; the SQS message
id changes on a replay). What this cannot make exactly once is a send whose outcome is unknown
(a timeout after the service accepted it, a daemon killed between the send and the mark): it is
released or its lease expires, and the message is sent again. README.rst, "Push and email",
says so.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, TypeVar

import structlog

from workers.adapters.leases import LeaseKeeper
from workers.adapters.redisconn import REDIS_ERRORS
from workers.core.errors import TransientError
from workers.core.events import Email, Push, digest
from workers.core.settings import IDEMPOTENCY_TTL_SECONDS

# Outlasts the slowest send (SMTP's 30 s timeout, SES's and SNS's 30 s read timeout) with
# margin: while a claim holds, a second delivery of the same message waits (transient) rather
# than sending beside it; a daemon killed mid-send holds it this long at most.
SEND_LEASE_SECONDS = 120
SENT = b"sent"
# Deletes the claim only if it is still ours: after a lease expired another daemon may hold it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Runs a claim still ours for another lease (ARGV[2] seconds) from now.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

T = TypeVar("T")
log = structlog.get_logger()


def mark_key(queue: str, event: Email | Push) -> str:
    """The Redis key of one message's mark: by the API's key, else by the body's digest.
    ``queue`` is the SQS name, prefix included, so fleets sharing a Redis keep apart."""
    if event.idempotency_key is not None:
        return f"sent:{queue}:k:{digest(event.idempotency_key)}"
    return f"sent:{queue}:b:{event.body_digest}"


class SentMarks:
    def __init__(self, client: Any, ttl: int = IDEMPOTENCY_TTL_SECONDS,
                 lease: int = SEND_LEASE_SECONDS):
        self.redis = client
        self.ttl, self.lease = ttl, lease
        self._release = client.register_script(RELEASE)
        self._renew = client.register_script(RENEW)
        self._keeper = LeaseKeeper(lease, name="send-leases")

    def once(self, key: str, send: Callable[[], T]) -> T | None:
        """``send()`` unless the mark says it was sent (then None). Redis failing before the
        send is transient; after it, logged only: the send happened, and failing the message
        would make its redelivery send it again for certain."""
        claim = self._claim(key)
        if claim is None:
            return None
        try:
            with self._keeper.keep(lambda: self._renew(keys=[key], args=[claim, self.lease])):
                result = send()
        except BaseException:
            self._forget(key, claim)
            raise
        self._mark_sent(key)
        return result

    def _claim(self, key: str) -> str | None:
        """Our claim's token, or None when the message was sent already."""
        token = uuid.uuid4().hex
        try:
            if self.redis.set(key, token, nx=True, ex=self.lease):
                return token
            held = self.redis.get(key)
        except REDIS_ERRORS as exc:
            raise TransientError(f"redis unavailable: {type(exc).__name__}: {exc}") from None
        if held in (SENT, SENT.decode()):
            return None
        if held is None:  # the claim expired between our two calls: try once more later
            raise TransientError("send claim changed hands; retrying")
        raise TransientError("another delivery of this message is being sent now")

    def _mark_sent(self, key: str) -> None:
        try:
            self.redis.set(key, SENT, ex=self.ttl)
        except REDIS_ERRORS as exc:
            log.warning("sent.mark_failed", error=f"{type(exc).__name__}: {exc}")

    def _forget(self, key: str, token: str) -> None:
        try:
            self._release(keys=[key], args=[token])
        except REDIS_ERRORS as exc:  # the lease expires by itself
            log.warning("sent.release_failed", error=f"{type(exc).__name__}: {exc}")
