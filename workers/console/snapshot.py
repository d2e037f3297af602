"""The queues' figures, sampled once per interval and shared by every page and stream of a
console: however many pages are open, SQS is asked once per ``WORKERS_CONSOLE_REFRESH``
(one GetQueueAttributes per queue and per DLQ), and not at all while nobody looks.

A sample is workers.ops.stats' (the depths, CloudWatch's age of the oldest message at most
once a minute, and from the fleet's registry each live daemon's messages handled a second over
its last refresh): ``processes`` and ``handled_per_s`` are fleet-wide, whichever host asks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool

from workers.ops.stats import Sample, Sampler

Rows = list[dict[str, Any]]


def rows(current: Sample, previous: Sample | None) -> Rows:
    """GET /api/queues's rows (SPEC): one per logical queue."""
    del previous  # the registry's rates are already per second: no difference to take
    out = []
    for q in current.queues:
        # rate is the mean of the live daemons' rates; None where none handled anything
        rate = None if not q.processes else round((q.rate or 0.0) * q.processes, 3)
        out.append({
            "queue": q.queue,
            "visible": q.depth.visible if q.depth else None,
            "in_flight": q.depth.in_flight if q.depth else None,
            "delayed": q.depth.delayed if q.depth else None,
            "dlq": q.dlq.total if q.dlq else None,
            "oldest_age_s": q.oldest_seconds,
            "processes": q.processes,
            "handled_per_s": rate,
        })
    return out


class Snapshots:
    """The latest sample, refreshed at most once per ``refresh`` seconds, on demand or, while
    any stream is open, by one ticker for all of them."""

    def __init__(self, sample: Callable[[], Sample], refresh: float,
                 on_sample: Callable[[], None] = lambda: None):
        self.sample = sample
        self.refresh = refresh
        self.on_sample = on_sample
        self.version = 0
        self._data: Rows = []
        self._at = -float("inf")
        self._previous: Sample | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._streams = 0
        self._ticker: asyncio.Task | None = None

    @classmethod
    def of(cls, sampler: Sampler, refresh: float, **kw: Any) -> "Snapshots":
        return cls(sampler.sample, refresh, **kw)

    async def latest(self) -> Rows:
        """The current figures: the last sample's if younger than the interval."""
        async with self._lock:
            if time.monotonic() - self._at >= self.refresh:
                await self._take()
            return self._data

    async def _take(self) -> None:
        current = await run_in_threadpool(self.sample)
        self._data, self._previous = rows(current, self._previous), current
        self._at = time.monotonic()
        self.on_sample()
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def stream(self) -> AsyncIterator[Rows]:
        """Every new sample, from the current one, until the consumer stops."""
        self._streams += 1
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick())
        try:
            seen = self.version
            yield await self.latest()
            while True:
                seen = await self._next(seen)
                yield self._data
        finally:
            self._streams -= 1

    async def _next(self, seen: int) -> int:
        """Waits for a sample newer than version ``seen``; its version."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > seen)
            return self.version

    async def _tick(self) -> None:
        """One sample per interval while any stream is open."""
        while self._streams > 0:
            started = time.monotonic()
            try:
                await self.latest()
            except Exception:  # SQS away: the streams keep their last figures; try again
                pass
            await asyncio.sleep(max(0.0, self.refresh - (time.monotonic() - started)))
