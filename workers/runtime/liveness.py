"""Whether each lane of a daemon is still consuming: what ``/health`` answers, and the gauge of
the last poll.

A lane promises to begin its next step (one receive and its handling) by a deadline: twice the
long poll after it began the current one (the receive takes at most one long poll, the rest is
for its handlers), or, when it chose to pause (SQS or every peer down), after the pause plus
that. A lane past its deadline is stuck; a lane that ended is dead. A lane whose steps fail
(a bug raising at every step) keeps beginning receives, but they do not count: its deadline
stays where its last good step put it, so it turns stale as a stuck lane does, and then ends.
One timestamp shared by the lanes would hide a stuck lane behind a live one, so each lane has
its own.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

# A lane may take one long poll to receive and as long again to handle what it received.
STALE_AFTER_POLLS = 2


class Lanes:
    """Per-lane deadlines; a fresh daemon is healthy at once (it has not had time to poll)."""

    def __init__(self, count: int, wait_seconds: float,
                 clock: Callable[[], float] = time.time):
        self.allowance = STALE_AFTER_POLLS * wait_seconds
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._polled = [now] * count  # when each lane last began a receive
        self._due = [now + self.allowance] * count  # when it must have begun the next
        self._ended: set[int] = set()
        self._failing: set[int] = set()  # whose last step failed

    def polling(self, lane: int) -> None:
        """Lane ``lane`` begins a receive."""
        now = self._clock()
        with self._lock:
            self._polled[lane] = now
            if lane not in self._failing:
                self._due[lane] = now + self.allowance

    def pausing(self, lane: int, seconds: float) -> None:
        """Lane ``lane`` waits ``seconds`` on purpose before its next receive."""
        with self._lock:
            if lane not in self._failing:
                self._due[lane] = self._clock() + seconds + self.allowance

    def failed(self, lane: int) -> float | None:
        """A step of lane ``lane`` failed: its deadline stops moving until a step succeeds.
        Once past it, how long since that deadline's step began (the lane should end)."""
        now = self._clock()
        with self._lock:
            self._failing.add(lane)
            due = self._due[lane]
        return now - (due - self.allowance) if now > due else None

    def succeeded(self, lane: int) -> None:
        """A step of lane ``lane`` went through (whatever its messages' outcomes)."""
        now = self._clock()
        with self._lock:
            if lane in self._failing:
                self._failing.discard(lane)
                self._due[lane] = now + self.allowance

    def ended(self, lane: int) -> None:
        with self._lock:
            self._ended.add(lane)

    def stale(self) -> list[int]:
        """Lanes past their deadline or ended, by index."""
        now = self._clock()
        with self._lock:
            return [i for i, due in enumerate(self._due) if now > due or i in self._ended]

    def oldest_poll(self) -> float:
        """When the lane that polled least recently last polled: the daemon's last poll for
        alerting, since a daemon with one stuck lane consumes at a fraction of its rate."""
        with self._lock:
            return min(self._polled, default=0.0)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, what /health shows)."""
        stale = self.stale()
        return not stale, {"status": "stale" if stale else "ok", "stale_lanes": stale,
                           "seconds_since_poll": round(self._clock() - self.oldest_poll(), 1)}
