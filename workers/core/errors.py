"""The two kinds of failure a handler may raise; the runtime decides what each means for SQS."""

from __future__ import annotations


class HandlerError(Exception):
    """Base of the errors the runtime understands."""

    reason: str  # what the log line and the DLQ's attribute say


class PermanentError(HandlerError):
    """Retrying cannot help (bad input, unknown service): the message goes to its DLQ at once."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TransientError(HandlerError):
    """A peer is down or slow: leave the message for SQS to redeliver after a backoff.

    ``retry_after`` (seconds), when a peer said when to come back (HTTP 429), overrides the backoff.
    ``deferred``: nothing is down, the message only waits its turn (a profile's rate-limit
    window, another daemon's lease on the same update), so the daemon does not pause for it.
    """

    def __init__(self, reason: str, retry_after: float | None = None, deferred: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.deferred = deferred
