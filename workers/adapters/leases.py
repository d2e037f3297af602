"""Keeping a claim's lease while its holder's call is in flight.

A claim with a lease (an update being published, an email being sent) lets another delivery in
once the lease runs out, on the reckoning that its holder died. A holder still waiting on a slow
call is not dead: requests' and smtplib's timeouts bound each socket operation, not the call, so
a call can outlast any lease. ``LeaseKeeper.keep`` renews the lease every third of it, from one
thread per keeper, for as long as the call runs; a holder killed mid-call renews nothing, and
its lease runs out as before.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import structlog

log = structlog.get_logger()

# Renewals per lease: two may fail (Redis away for a moment) before the lease runs out.
RENEWALS_PER_LEASE = 3


class LeaseKeeper:
    def __init__(self, lease_seconds: float, name: str = "lease-keeper"):
        self.interval = lease_seconds / RENEWALS_PER_LEASE
        self.name = name
        self._held: dict[int, Callable[[], object]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next = 0

    @contextmanager
    def keep(self, renew: Callable[[], object]) -> Iterator[None]:
        """Calls ``renew()`` every third of the lease while the block runs."""
        with self._lock:
            self._next += 1
            ticket = self._next
            self._held[ticket] = renew
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(ticket, None)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            with self._lock:
                held = list(self._held.values())
            for renew in held:
                try:
                    renew()
                except Exception as exc:  # Redis away: the next renewal may get through
                    log.warning("lease.renew_failed", error=f"{type(exc).__name__}: {exc}")


__all__ = ["LeaseKeeper"]
