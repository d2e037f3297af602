"""Keeps the messages whose handlers are still running invisible, so SQS does not hand them out
again while we work on them (the loop peers fall into without one)."""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from workers.core.message import Message
from workers.core.settings import MAX_VISIBILITY_SECONDS

# Sets each message's visibility timeout; returns those SQS refused (a batch call answers per
# entry), or raises when SQS did not answer at all.
Extend = Callable[[Sequence[tuple[Message, int]]], Sequence[Message]]


class Heartbeat:
    """Extends a message's visibility by ``timeout`` when half of it has passed.

    An extension counts once SQS took it: a message whose extension failed (SQS away, or its
    entry refused) stays due, and the next beat (a sixth of the timeout later, well before it
    turns visible) tries again, rather than half a timeout after an extension never made."""

    def __init__(self, extend: Extend, timeout: int,
                 on_error: Callable[[Exception], None],
                 on_refused: Callable[[Sequence[Message]], None] | None = None):
        self._extend = extend
        self.timeout = timeout
        self._on_error = on_error
        self._on_refused = on_refused
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
        """Extends those past half their timeout; returns how many SQS extended."""
        now = time.monotonic() if now is None else now
        due: list[tuple[Message, int]] = []
        with self._lock:
            for m, received, visible_at in self._held.values():
                if visible_at - now <= self.timeout / 2:
                    # SQS refuses to keep a message hidden past 12 h from its receive.
                    seconds = int(min(self.timeout, MAX_VISIBILITY_SECONDS - (now - received)))
                    if seconds > 0:
                        due.append((m, seconds))
        if not due:
            return 0
        try:
            refused = {m.receipt_handle for m in self._extend(due)}
        except Exception as exc:  # SQS away: still due, the next beat tries again
            self._on_error(exc)
            return 0
        took = [(m, seconds) for m, seconds in due if m.receipt_handle not in refused]
        with self._lock:
            for m, seconds in took:
                held = self._held.get(m.receipt_handle)
                if held is not None:  # not acknowledged meanwhile
                    # Counted from the call's start: SQS counts from its own receipt, later.
                    self._held[m.receipt_handle] = (m, held[1], now + seconds)
        self.extensions += len(took)
        if refused and self._on_refused is not None:
            self._on_refused([m for m, _ in due if m.receipt_handle in refused])
        return len(took)

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
