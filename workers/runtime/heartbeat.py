"""Keeps the messages whose handlers are still running invisible, so SQS does not hand them out
again while we work on them (the loop peers fall into without one)."""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from workers.runtime.message import Message
from workers.settings import MAX_VISIBILITY_SECONDS

Extend = Callable[[Sequence[tuple[Message, int]]], object]


class Heartbeat:
    """Extends a message's visibility by ``timeout`` when half of it has passed."""

    def __init__(self, extend: Extend, timeout: int, on_error: Callable[[Exception], None]):
        self._extend = extend
        self.timeout = timeout
        self._on_error = on_error
        # Told when the thread ends other than by stop() (the daemon then exits non-zero:
        # without its heartbeat, long handlers' messages would be handed out again).
        self.on_death: Callable[[BaseException | None], None] | None = None
        self._lock = threading.Lock()
        # receipt handle -> (message, received at, visible again at)
        self._held: dict[str, tuple[Message, float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self.extensions = 0

    def start(self) -> None:
        if self.timeout > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def track(self, messages: Sequence[Message]) -> None:
        now = time.monotonic()
        with self._lock:
            for m in messages:
                self._held[m.receipt_handle] = (m, now, now + self.timeout)

    def untrack(self, messages: Sequence[Message]) -> None:
        with self._lock:
            for m in messages:
                self._held.pop(m.receipt_handle, None)

    def holding(self) -> int:
        """Messages received and not yet acknowledged (the registry's in_flight)."""
        return len(self._held)

    def beat(self, now: float | None = None) -> int:
        """Extends those past half their timeout; returns how many it extended."""
        now = time.monotonic() if now is None else now
        due: list[tuple[Message, int]] = []
        with self._lock:
            for handle, (m, received, visible_at) in self._held.items():
                if visible_at - now <= self.timeout / 2:
                    # SQS refuses to keep a message hidden past 12 h from its receive.
                    seconds = int(min(self.timeout, MAX_VISIBILITY_SECONDS - (now - received)))
                    if seconds > 0:
                        due.append((m, seconds))
                        self._held[handle] = (m, received, now + seconds)
        if due:
            try:
                self._extend(due)
                self.extensions += len(due)
            except Exception as exc:  # SQS away: the next beat tries again
                self._on_error(exc)
        return len(due)

    def _run(self) -> None:
        interval = max(0.2, self.timeout / 6)
        error: BaseException | None = None
        try:
            while not self._stop.wait(interval):
                self.beat()
        except BaseException as exc:  # a failed log write in on_error, SystemExit...
            error = exc
        if not self._stop.is_set() and self.on_death is not None:
            self.on_death(error)
