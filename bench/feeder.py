"""The producer side of a throughput run: a thread that keeps the queue fed, never flooded.

moto's SQS does work linear in the queue's depth (in flight included) on every call, and a
receive of 10 costs ten times that, so a queue filled up front would make moto the thing
measured. The feeder keeps the messages outstanding (sent, not yet deleted) between ``low``
and ``high``, topping up in batches of 10. It learns what was deleted from the counting
proxy, not from moto: asking moto for the queue's depth would itself cost depth-linear work.
It sends to moto directly (its requests are the API's bill, not the consumer's).

What it sends are SendMessageBatch entries without their ``Id``: a body, and the message
attributes a peer's own format needs (sqs-workers names its job in one); each peer reads its
own encoding of the same events.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

BATCH = 10
POLL_SECONDS = 0.01


class Feeder(threading.Thread):
    def __init__(self, sqs: Any, queue_url: str, entries: Sequence[dict[str, Any]],
                 consumed: Callable[[], int], low: int, high: int):
        super().__init__(name="feeder", daemon=True)
        self.sqs = sqs
        self.queue_url = queue_url
        self.entries = entries
        self.consumed = consumed
        self.low, self.high = low, high
        self.sent = 0
        self.starved = 0  # top-ups that found nothing outstanding: the consumer outran us
        self.error: BaseException | None = None
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        try:
            self._feed()
        except BaseException as exc:  # reported by the bench; a dead feeder must not hang it
            self.error = exc

    def _feed(self) -> None:
        while self.sent < len(self.entries) and not self._stop.is_set():
            outstanding = self.sent - self.consumed()
            if outstanding >= self.low:
                time.sleep(POLL_SECONDS)
                continue
            self.starved += outstanding <= 0 and self.sent > 0
            self._send(min(self.high - outstanding, len(self.entries) - self.sent))

    def _send(self, count: int) -> None:
        end = self.sent + count
        while self.sent < end:
            chunk = self.entries[self.sent:min(end, self.sent + BATCH)]
            entries = [{**entry, "Id": str(i)} for i, entry in enumerate(chunk)]
            response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if response.get("Failed"):
                raise RuntimeError(f"moto refused {len(response['Failed'])} sends: "
                                   f"{response['Failed'][0]}")
            self.sent += len(chunk)
