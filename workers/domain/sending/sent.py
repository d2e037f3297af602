"""Send once: a mark in Redis per email or push message sent, so that a redelivery, a replay
from the DLQ or the same event enqueued twice is acknowledged without sending it again.

A message is claimed before its send (a claim of ``workers.adapters.claims``, its lease renewed
while the send runs: smtplib's timeouts bound each operation, not the conversation, so a slow
server could otherwise outlast the lease and let a second delivery send beside it), marked done
after a send the service accepted, and released after a send that failed, so a retry may send
it. The key is the event's ``idempotency_key`` when the API gives one, else a digest of the queue
and the message body: stable across redeliveries and DLQ replays (which keep the body; the SQS
message id changes on a replay). What this cannot make exactly once is a send whose outcome is
unknown (a timeout after the service accepted it, a daemon killed between the send and the
mark): it is released or its lease expires, and the message is sent again. docs/sending.rst, "Push
and email", says so.

A mark is a claim's hash under the same key as before; a string there (``sent``, or a token)
is a mark of the code before the claims, which a claim reads as done or held.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import structlog

from workers.adapters.claims import Claim, Claims
from workers.adapters.redisconn import REDIS_ERRORS
from workers.core.errors import TransientError
from workers.core.events import Email, Push, digest
from workers.core.settings import IDEMPOTENCY_TTL_SECONDS

# Outlasts the slowest send (SMTP's 30 s timeout, SES's and SNS's 30 s read timeout) with
# margin: while a claim holds, a second delivery of the same message waits (transient) rather
# than sending beside it; a daemon killed mid-send holds it this long at most.
SEND_LEASE_SECONDS = 120

T = TypeVar("T")
log = structlog.get_logger()


def mark_key(queue: str, event: Email | Push) -> str:
    """The Redis key of one message's mark: by the API's key, else by the body's digest.
    ``queue`` is the SQS name, prefix included, so fleets sharing a Redis keep apart."""
    if event.idempotency_key is not None:
        return f"sent:{queue}:k:{digest(event.idempotency_key)}"
    return f"sent:{queue}:b:{event.body_digest}"


class SentMarks:
    """Send-once marks: a claim (``workers.adapters.claims``) per message, done once sent."""

    def __init__(self, client: Any, ttl: int = IDEMPOTENCY_TTL_SECONDS,
                 lease: int = SEND_LEASE_SECONDS):
        self.ttl, self.lease = ttl, lease
        self.claims = Claims(client, lease, ttl, name="send-leases")

    @property
    def redis(self) -> Any:
        return self.claims.client

    @redis.setter
    def redis(self, client: Any) -> None:
        self.claims.client = client

    def once(self, key: str, send: Callable[[], T]) -> T | None:
        """``send()`` unless the mark says it was sent (then None). Redis failing before the
        send fails the message (the consumer retries it); after it, logged only: the send
        happened, and failing the message would make its redelivery send it again for certain."""
        claim = self.claims.claim(key)
        if claim.done:
            return None
        if not claim.ours:
            raise TransientError("another delivery of this message is being sent now")
        try:
            with self.claims.holding(key, claim.owner):
                result = send()
        except BaseException:
            self._forget(claim)
            raise
        self._mark_sent(key)
        return result

    def _mark_sent(self, key: str) -> None:
        try:
            self.claims.done(key)
        except REDIS_ERRORS as exc:
            log.warning("sent.mark_failed", error=f"{type(exc).__name__}: {exc}")

    def _forget(self, claim: Claim) -> None:
        try:
            self.claims.release(claim.key, claim.owner)
        except REDIS_ERRORS as exc:  # the lease expires by itself
            log.warning("sent.release_failed", error=f"{type(exc).__name__}: {exc}")
