"""boto3 errors of a handler's AWS call (SNS, SES) as the runtime's permanent or transient errors.

Only the error codes a service names as the message's fault are permanent. Everything else
(throttling, 5xx, the network, and codes we do not know, such as an IAM or account problem an
operator can fix) is transient: SQS redelivers with a backoff, and after WORKERS_MAX_RECEIVES
receives moves the message to its DLQ anyway, so an unknown code costs a few retries at most.
"""

from __future__ import annotations

from collections.abc import Collection

from botocore.exceptions import BotoCoreError, ClientError

from workers.errors import HandlerError, PermanentError, TransientError

AWS_ERRORS = (BotoCoreError, ClientError)


def classify(service: str, exc: Exception, permanent_codes: Collection[str],
             redact: str | None = None) -> HandlerError:
    """The handler error for ``exc``; ``redact``, when given, is kept out of the reason."""
    if not isinstance(exc, ClientError):  # no answer: connection refused, timeout, DNS
        return TransientError(_redacted(f"{service} unreachable: {type(exc).__name__}: {exc}",
                                        redact))
    error = exc.response.get("Error", {})
    code = error.get("Code", "Unknown")
    reason = _redacted(f"{service} {code}: {error.get('Message', '')}".rstrip(": "), redact)
    if code in permanent_codes:
        return PermanentError(reason)
    return TransientError(reason)


def _redacted(text: str, secret: str | None) -> str:
    return text.replace(secret, "<target>") if secret else text
