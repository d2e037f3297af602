"""AWS for the whole fleet: every boto3 client (SQS, S3, SNS, SES, CloudWatch) built one way,
the errors that mean AWS failed, and a handler's AWS error as permanent or transient.

Only the error codes a service names as the message's fault are permanent. Everything else
(throttling, 5xx, the network, and codes we do not know, such as an IAM or account problem an
operator can fix) is transient: SQS redelivers with a backoff, and after WORKERS_MAX_RECEIVES
receives moves the message to its DLQ anyway, so an unknown code costs a few retries at most.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from workers.adapters import tracing
from workers.core.errors import HandlerError, PermanentError, TransientError
from workers.core.settings import LONG_POLL_SECONDS, Settings

# What a boto3 call raises when AWS (or the network to it) fails: the service's own answer
# (ClientError) or none at all (BotoCoreError: refused, timed out, DNS).
AWS_ERRORS = (BotoCoreError, ClientError)
# A connection that does not open within this long is not going to.
CONNECT_TIMEOUT_SECONDS = 5


def client(settings: Settings, service: str = "sqs", pool: int = 10, attempts: int = 3,
           validate: bool = True) -> Any:
    """A boto3 client whose read timeout outlasts a long poll. ``attempts`` counts the first
    request too (botocore's ``max_attempts`` would count only the retries): 1 is no retry.
    ``validate=False`` skips botocore's check of every call's parameters against the service
    model: for a daemon's hot path, whose few calls are always built the same way (and the
    service still refuses a bad one)."""
    config = Config(
        parameter_validation=validate,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=pool,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=LONG_POLL_SECONDS + 10,
    )
    session = boto3.session.Session()
    made = session.client(service, region_name=settings.region,
                          endpoint_url=settings.endpoint_url, config=config)
    # Our own send and process spans stand for SQS's calls (tracing on).
    return tracing.without_instrumentation(made) if service == "sqs" else made


def error_text(exc: ClientError) -> str:
    """``Code: message`` of the service's answer."""
    error = exc.response.get("Error", {})
    return f"{error.get('Code', '?')}: {error.get('Message', '')}"


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
