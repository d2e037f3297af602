"""The SQS queue client: receive, delete, change visibility, send, dead-letter. Batches of 10."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterator, Sequence, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from workers.message import Message
from workers.settings import LONG_POLL_SECONDS, SQS_BATCH_MAX, Settings

# The errors that mean "SQS (or the network to it) is away": the caller backs off and retries.
SQS_ERRORS = (BotoCoreError, ClientError)
# SQS allows 10 message attributes; a dead letter keeps 7 of the original's and adds ours.
ERROR_ATTRIBUTE = "workers.error"
QUEUE_ATTRIBUTE = "workers.queue"
RECEIVES_ATTRIBUTE = "workers.receive_count"
MAX_ATTRIBUTES = 10
# Long enough to say why, short enough to read in `workers dlq peek`.
MAX_REASON_LENGTH = 1000

T = TypeVar("T")


def client(settings: Settings, service: str = "sqs", pool: int = 10, attempts: int = 3) -> Any:
    """A boto3 client whose read timeout outlasts a long poll."""
    config = Config(
        retries={"mode": "standard", "max_attempts": attempts},
        max_pool_connections=pool,
        connect_timeout=5,
        read_timeout=LONG_POLL_SECONDS + 10,
    )
    session = boto3.session.Session()
    return session.client(service, region_name=settings.region,
                          endpoint_url=settings.endpoint_url, config=config)


@dataclass
class SQSQueue:
    """One SQS queue by name, and its dead-letter queue."""

    sqs: Any
    name: str
    dlq_name: str | None = None

    @cached_property
    def url(self) -> str:
        return self.sqs.get_queue_url(QueueName=self.name)["QueueUrl"]

    @cached_property
    def dlq_url(self) -> str:
        return self.sqs.get_queue_url(QueueName=self.dlq_name or self.name + "-dlq")["QueueUrl"]

    def receive(self, max_messages: int, wait_seconds: int,
                url: str | None = None, visibility: int | None = None) -> list[Message]:
        """``visibility`` overrides the queue's visibility timeout for these messages."""
        extra = {} if visibility is None else {"VisibilityTimeout": visibility}
        response = self.sqs.receive_message(
            QueueUrl=url or self.url,
            MaxNumberOfMessages=max(1, min(max_messages, SQS_BATCH_MAX)),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            MessageAttributeNames=["All"],
            **extra,
        )
        return [Message.from_sqs(raw) for raw in response.get("Messages", [])]

    def delete(self, messages: Sequence[Message], url: str | None = None) -> list[Message]:
        """Deletes in batches of 10; returns the messages SQS did not delete."""
        entries = [{"Id": str(i), "ReceiptHandle": m.receipt_handle}
                   for i, m in enumerate(messages)]
        return self._batch(self.sqs.delete_message_batch, url or self.url, entries, messages)

    def change_visibility(self, pairs: Sequence[tuple[Message, int]],
                          url: str | None = None) -> list[Message]:
        """Sets each message's visibility timeout, counted from now; returns the failures."""
        entries = [{"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": t}
                   for i, (m, t) in enumerate(pairs)]
        return self._batch(self.sqs.change_message_visibility_batch, url or self.url, entries,
                           [m for m, _ in pairs])

    def send(self, bodies: Sequence[str], url: str | None = None,
             attributes: Sequence[dict[str, Any]] | None = None) -> list[int]:
        """Sends in batches of 10; returns the indexes SQS refused."""
        entries = []
        for i, body in enumerate(bodies):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": body}
            if attributes and attributes[i]:
                entry["MessageAttributes"] = attributes[i]
            entries.append(entry)
        return self._batch(self.sqs.send_message_batch, url or self.url, entries,
                           list(range(len(bodies))))

    def dead_letter(self, failures: Sequence[tuple[Message, str]]) -> list[Message]:
        """Copies each message to the DLQ with its reason; returns those safely copied."""
        bodies = [m.body for m, _ in failures]
        attributes = [dead_letter_attributes(m, reason, self.name) for m, reason in failures]
        refused = set(self.send(bodies, url=self.dlq_url, attributes=attributes))
        return [m for i, (m, _) in enumerate(failures) if i not in refused]

    def _batch(self, call: Any, url: str, entries: list[dict], items: Sequence[T]) -> list[T]:
        failed: list[T] = []
        for chunk in chunks(list(zip(entries, items, strict=True)), SQS_BATCH_MAX):
            response = call(QueueUrl=url, Entries=[entry for entry, _ in chunk])
            refused = {f["Id"] for f in response.get("Failed", [])}
            failed.extend(item for entry, item in chunk if entry["Id"] in refused)
        return failed


def dead_letter_attributes(message: Message, reason: str, queue: str) -> dict[str, Any]:
    kept = dict(itertools.islice(original_attributes(message).items(), MAX_ATTRIBUTES - 3))
    kept[ERROR_ATTRIBUTE] = {"DataType": "String", "StringValue": _truncate(reason)}
    kept[QUEUE_ATTRIBUTE] = {"DataType": "String", "StringValue": queue}
    kept[RECEIVES_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(message.receive_count)}
    return kept


def original_attributes(message: Message) -> dict[str, Any]:
    """The message's own attributes, ready to send again: ours (``workers.*``) dropped."""
    return {name: _sendable(value) for name, value in message.attributes.items()
            if not name.startswith("workers.")}


def _sendable(value: dict[str, Any]) -> dict[str, Any]:
    # A received attribute carries empty list fields that SendMessage refuses.
    return {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 1] + "…"


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]

