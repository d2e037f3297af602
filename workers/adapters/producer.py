"""Enqueue validated events, in batches: what the API imports.

    from workers.adapters.producer import Producer
    Producer().send_many("post-sent", [{"update_id": "1", "profile_id": "2", "url": "..."}])
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

# Registers the networks' names, which validating a publish or analytics event reads.
import workers.adapters.networks  # noqa: F401
from workers.adapters.aws import client
from workers.adapters.sqs import SQSQueue
from workers.core.events import Event, InvalidEvent, Queue, declaration, validate
from workers.core.settings import Settings

# Entries SQS refused in a batch (throttling, internal errors) are sent again this many times.
SEND_ATTEMPTS = 3


class SendError(RuntimeError):
    """SQS refused some events even after retries; ``unsent`` lists their indexes."""

    def __init__(self, unsent: list[int], why: str = ""):
        super().__init__(f"SQS refused {len(unsent)} event(s) after {SEND_ATTEMPTS} attempts"
                         + (f": {why}" if why else ""))
        self.unsent = unsent


class Producer:
    def __init__(self, settings: Settings | None = None, sqs: Any = None):
        self.settings = settings or Settings.from_env()
        self._sqs = sqs or client(self.settings)
        self._queues: dict[str, SQSQueue] = {}

    def send(self, queue: str, event: dict[str, Any] | Event, delay_seconds: int = 0) -> None:
        self.send_many(queue, [event], delay_seconds)

    def send_many(self, queue: str, events: Iterable[dict[str, Any] | Event],
                  delay_seconds: int = 0, parents: Sequence[Any] | None = None) -> int:
        """Validates every event first (InvalidEvent names the first bad one, nothing sent),
        then sends them in batches, each delivered ``delay_seconds`` later (at most 900).
        Returns how many were sent. With tracing on, each event's send span is a child of its
        ``parents`` context (workers.adapters.tracing.parents_of), or else of the current one."""
        declared = declaration(queue)  # the one check of its name: LookupError if unknown
        bodies = encode_all(declared, events)
        target = self._queue(queue)
        pending = list(range(len(bodies)))
        why: dict[int, str] = {}
        for _ in range(SEND_ATTEMPTS):
            if not pending:
                break
            # send() splits into batches SQS takes (10 entries, its payload cap per request).
            why = target.send_failures([bodies[i] for i in pending],
                                       delay_seconds=delay_seconds,
                                       parents=[parents[i] for i in pending] if parents else None)
            pending = [pending[j] for j in sorted(why)]
        if pending:
            raise SendError(pending, next(iter(why.values()), ""))
        return len(bodies)

    def _queue(self, queue: str) -> SQSQueue:
        if queue not in self._queues:
            self._queues[queue] = SQSQueue(self._sqs, self.settings.queue_name(queue),
                                           topic=queue)
        return self._queues[queue]


def encode_all(queue: Queue, events: Iterable[dict[str, Any] | Event]) -> list[str]:
    bodies = []
    for number, event in enumerate(events, 1):
        try:
            bodies.append(encode(queue, event))
        except InvalidEvent as exc:
            raise InvalidEvent(f"event {number}: {exc.reason}") from None
    return bodies


def encode(queue: Queue, event: dict[str, Any] | Event) -> str:
    """The message body of a valid event: the caller's JSON as given, unknown fields kept."""
    if isinstance(event, Event):
        return event.model_dump_json(exclude_none=True)
    validate(queue, event)
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
