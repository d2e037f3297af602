"""The SQS queue client: receive, delete, change visibility, send, dead-letter. Batches of 10,
and sends also within SQS's payload cap per request."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterator, Mapping, Sequence, TypeVar

from botocore.exceptions import ClientError

from workers.adapters import tracing
from workers.adapters.aws import error_text
from workers.core.message import Message
from workers.core.settings import SQS_BATCH_MAX
from workers.core.text import truncate

# SQS allows 10 message attributes; a dead letter keeps 7 of the original's and adds ours.
ERROR_ATTRIBUTE = "workers.error"
QUEUE_ATTRIBUTE = "workers.queue"
RECEIVES_ATTRIBUTE = "workers.receive_count"
# On a copy re-sent to wait (``requeue``): the receives its earlier copies spent failing. SQS
# counts the copy's own receives from 0; the consumer adds these to keep the count honest.
EARLIER_RECEIVES_ATTRIBUTE = "workers.earlier_receives"
MAX_ATTRIBUTES = 10
# Long enough to say why, short enough to read in `workers dlq peek`.
MAX_REASON_LENGTH = 1000
# A send batch's payload (bodies and attributes together) is capped at the maximum message
# size. 256 KiB is what every endpoint accepts (SQS's cap before August 2025, moto's today);
# a message larger than that goes in a batch of its own.
BATCH_PAYLOAD_BYTES = 256 * 1024

T = TypeVar("T")


@dataclass
class SQSQueue:
    """One SQS queue by name, and its dead-letter queue."""

    sqs: Any
    name: str
    dlq_name: str | None = None
    topic: str | None = None  # the logical queue, which names its messages' send spans

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
            MessageSystemAttributeNames=tracing.system_attribute_names(
                ["ApproximateReceiveCount", "SentTimestamp"]),
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
             attributes: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
        """Sends in batches SQS accepts; returns the indexes SQS refused."""
        return sorted(self.send_failures(bodies, url, attributes))

    def send_failures(self, bodies: Sequence[str], url: str | None = None,
                      attributes: Sequence[Mapping[str, Any]] | None = None,
                      delay_seconds: int = 0, parents: Sequence[Any] | None = None,
                      destination: str | None = None) -> dict[int, str]:
        """Sends in batches of at most 10 entries and BATCH_PAYLOAD_BYTES, each hidden for
        ``delay_seconds`` first (SQS allows 0 to 900); returns why SQS refused each index it
        refused. A batch SQS refuses whole (an error answer, such as a
        message over the size limit) fails its own entries only; the network being away raises.
        With tracing on, each message gets a send span (``send {destination}``, by default the
        queue's logical name), a child of its ``parents`` context (or of the current one), and
        carries its context."""
        attributes = attributes or [{}] * len(bodies)
        sends = None
        if tracing.enabled():
            sends = tracing.Sends(destination or self.topic or self.name, attributes, parents)
            attributes = sends.attributes
        failed: dict[int, str] = {}
        sizes = [payload_bytes(b, a) for b, a in zip(bodies, attributes, strict=True)]
        for group in batches(sizes):
            entries = [_send_entry(j, bodies[i], attributes[i]) for j, i in enumerate(group)]
            if delay_seconds:
                entries = [{**entry, "DelaySeconds": delay_seconds} for entry in entries]
            send = self.sqs.send_message_batch
            if sends is not None:
                send = sends.calling(send, group)
            try:
                response = send(QueueUrl=url or self.url, Entries=entries)
            except ClientError as exc:
                failed.update(dict.fromkeys(group, error_text(exc)))
                continue
            for f in response.get("Failed", []):
                failed[group[int(f["Id"])]] = f"{f.get('Code', '?')}: {f.get('Message', '')}"
        return failed

    def requeue(self, waits: Sequence[tuple[Message, int]]) -> list[Message]:
        """Sends each message again to this queue, hidden for its wait (SQS's DelaySeconds,
        0 to 900), with its attributes and ``EARLIER_RECEIVES_ATTRIBUTE`` = the receives it
        spent before this one; returns those SQS took (the caller deletes them, and gives
        the others back as usual)."""
        sent: list[Message] = []
        for delay in sorted({d for _, d in waits}):
            group = [m for m, d in waits if d == delay]
            attributes = [requeue_attributes(m) for m in group]
            refused = self.send_failures([m.body for m in group], attributes=attributes,
                                         delay_seconds=delay)
            sent += [m for i, m in enumerate(group) if i not in refused]
        return sent

    def dead_letter(self, failures: Sequence[tuple[Message, str]]
                    ) -> tuple[list[Message], list[tuple[Message, str]]]:
        """Copies each message to the DLQ with its reason; returns those safely copied, and
        why SQS refused each of the others."""
        bodies = [m.body for m, _ in failures]
        attributes = [dead_letter_attributes(m, reason, self.name) for m, reason in failures]
        # With tracing on, each copy is sent in the trace its message carries, so a replay
        # goes on in it.
        refused = self.send_failures(bodies, url=self.dlq_url, attributes=attributes,
                                     parents=tracing.carried(m for m, _ in failures),
                                     destination=f"{self.topic or self.name}-dlq")
        copied = [m for i, (m, _) in enumerate(failures) if i not in refused]
        return copied, [(failures[i][0], why) for i, why in sorted(refused.items())]

    def _batch(self, call: Any, url: str, entries: list[dict], items: Sequence[T]) -> list[T]:
        failed: list[T] = []
        for chunk in chunks(list(zip(entries, items, strict=True)), SQS_BATCH_MAX):
            response = call(QueueUrl=url, Entries=[entry for entry, _ in chunk])
            refused = {f["Id"] for f in response.get("Failed", [])}
            failed.extend(item for entry, item in chunk if entry["Id"] in refused)
        return failed


def _send_entry(index: int, body: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": body}
    if attributes:
        entry["MessageAttributes"] = dict(attributes)
    return entry


def payload_bytes(body: str, attributes: Mapping[str, Any]) -> int:
    """What SQS counts towards its size limit: the body, and each attribute's name, type
    and value."""
    size = len(body.encode())
    for name, value in attributes.items():
        size += len(name.encode()) + len(value.get("DataType", "").encode())
        size += len(value.get("StringValue", "").encode()) + len(value.get("BinaryValue", b""))
    return size


def batches(sizes: Sequence[int], cap: int = BATCH_PAYLOAD_BYTES) -> Iterator[list[int]]:
    """Indexes of payloads of ``sizes`` in groups one batch call takes: at most 10 entries
    whose sizes add up to at most ``cap``; a payload over ``cap`` alone."""
    group: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if group and (len(group) == SQS_BATCH_MAX or total + size > cap):
            yield group
            group, total = [], 0
        group.append(i)
        total += size
    if group:
        yield group


def dead_letter_attributes(message: Message, reason: str, queue: str) -> dict[str, Any]:
    kept = dict(itertools.islice(original_attributes(message).items(), MAX_ATTRIBUTES - 3))
    kept[ERROR_ATTRIBUTE] = {"DataType": "String",
                             "StringValue": truncate(reason, MAX_REASON_LENGTH)}
    kept[QUEUE_ATTRIBUTE] = {"DataType": "String", "StringValue": queue}
    kept[RECEIVES_ATTRIBUTE] = {"DataType": "Number",
                                "StringValue": str(earlier_receives(message)
                                                   + message.receive_count)}
    return kept


def earlier_receives(message: Message) -> int:
    """Receives of the message's earlier copies (``requeue``), 0 for an original."""
    value = message.attributes.get(EARLIER_RECEIVES_ATTRIBUTE) or {}
    text = str(value.get("StringValue", "0"))
    return int(text) if text.isdigit() else 0


def requeue_attributes(message: Message) -> dict[str, Any]:
    """A waiting copy's: its own attributes, and the receives spent failing before this one
    (this receive only waited)."""
    kept = dict(itertools.islice(original_attributes(message).items(), MAX_ATTRIBUTES - 1))
    spent = earlier_receives(message) + message.receive_count - 1
    kept[EARLIER_RECEIVES_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(spent)}
    return kept


def original_attributes(message: Message) -> dict[str, Any]:
    """The message's own attributes, ready to send again: ours (``workers.*``) dropped."""
    return {name: _sendable(value) for name, value in message.attributes.items()
            if not name.startswith("workers.")}


def _sendable(value: dict[str, Any]) -> dict[str, Any]:
    # A received attribute carries empty list fields that SendMessage refuses.
    return {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- queues by name: what the operator tools ask of SQS besides messages ---------------------

@dataclass(frozen=True)
class Depth:
    """SQS's approximate counts of a queue's messages."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


def queue_depth(sqs: Any, url: str) -> Depth:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return Depth(int(attrs.get("ApproximateNumberOfMessages", 0)),
                 int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                 int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)))


def find_url(sqs: Any, name: str) -> str | None:
    """The queue's URL; None when it does not exist."""
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return None


def queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def ensure_queue(sqs: Any, name: str, attributes: dict[str, str]) -> str:
    """The queue's URL, created with ``attributes`` if missing, else brought to them."""
    url = find_url(sqs, name)
    if url is None:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def purge(sqs: Any, url: str) -> None:
    """Deletes every message of the queue, for good."""
    sqs.purge_queue(QueueUrl=url)


def start_move_task(sqs: Any, source_arn: str, destination_arn: str) -> str:
    """Starts SQS's own move of every message from one queue to another; its task handle."""
    return sqs.start_message_move_task(
        SourceArn=source_arn, DestinationArn=destination_arn)["TaskHandle"]


def move_tasks(sqs: Any, source_arn: str) -> list[dict[str, Any]]:
    """The most recent move tasks from the queue, running or done (SQS keeps up to 10)."""
    return sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10).get("Results", [])
