"""The SQS message as handlers and the runtime see it, built in one place from boto3's response."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from workers.core.errors import PermanentError
from workers.core.text import truncate


class MessageDecodeError(PermanentError):
    """The body is not a JSON object: no retry can fix it."""


@dataclass(frozen=True)
class Message:
    id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_timestamp_ms: int = 0
    attributes: Mapping[str, Any] = field(default_factory=dict)
    trace_header: str | None = None  # the AWSTraceHeader system attribute (tracing on)

    @classmethod
    def from_sqs(cls, raw: Mapping[str, Any]) -> "Message":
        system = raw.get("Attributes", {})
        return cls(
            id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            receive_count=int(system.get("ApproximateReceiveCount", 1)),
            sent_timestamp_ms=int(system.get("SentTimestamp", 0)),
            attributes=raw.get("MessageAttributes", {}),
            trace_header=system.get("AWSTraceHeader"),
        )

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or MessageDecodeError."""
        try:
            value = json.loads(self.body)
        except (ValueError, RecursionError) as exc:
            raise MessageDecodeError(f"body is not JSON: {_short(exc)}") from None
        if not isinstance(value, dict):
            raise MessageDecodeError(f"body is JSON {type(value).__name__}, not an object")
        return value


def _short(exc: BaseException, limit: int = 200) -> str:
    return truncate(str(exc) or type(exc).__name__, limit)
