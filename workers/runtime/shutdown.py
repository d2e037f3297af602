"""Shutdown is a flag: the signal handler sets it, the loop reads it between batches."""

from __future__ import annotations

import os
import signal
import threading
from typing import NoReturn

from workers.adapters import tracing

# How often the main thread looks for a signal's flag.
WATCH_SECONDS = 0.2
# How often a daemon looks whether its parent (supervisord) is still there.
PARENT_CHECK_SECONDS = 1.0

def forced_exit(status: int) -> NoReturn:
    """Exits now (os._exit: never waiting for threads still running), after tracing's bounded
    flush of the spans still batched (os._exit skips the SDK's own flush at exit; a no-op with
    tracing off), which may not stop it."""
    try:
        tracing.flush()
    except BaseException:  # the exit must happen whatever it does
        pass
    os._exit(status)


class Shutdown:
    """The signal handler only assigns an attribute: it runs between two bytecodes of the main
    thread, which may hold a lock at that moment (a log write, an Event's condition), so
    taking any lock there could deadlock. ``watch`` turns the flag into an Event that wakes
    every sleeping thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None or self._event.is_set()

    def request(self, reason: str = "requested") -> None:
        self.signal_name = self.signal_name or reason
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleeps up to ``seconds``, waking early on shutdown; True if shutdown was requested."""
        return self._event.wait(seconds) or self.requested

    def watch(self) -> str:
        """Main thread: sleeps until shutdown is requested, wakes every waiter, says why."""
        while not self.requested:
            # An Event's wait, not time.sleep: the same pause, but one that libfaketime (the
            # clock-skew tests) leaves working, where it makes time.sleep fail with EINVAL.
            self._event.wait(WATCH_SECONDS)
        self.request()
        return self.signal_name or "requested"

    def watch_parent(self, interval: float = PARENT_CHECK_SECONDS) -> None:
        """Requests a warm stop once the parent process is gone. A daemon whose supervisord
        died (killed, or dead of a broken pipe) is adopted by init or a subreaper, and its
        parent PID changes; nobody would stop or restart it any more.

        A thread comparing ``os.getppid()`` with the parent at start, rather than Linux's
        PR_SET_PDEATHSIG: portable, it takes the same path as SIGTERM without a signal, and
        PDEATHSIG fires when the parent's forking *thread* ends, not the parent."""
        parent = os.getppid()

        def check() -> None:
            while not self._event.wait(interval):
                if os.getppid() != parent:
                    self.request("parent.died")
                    return

        threading.Thread(target=check, name="parent-watch", daemon=True).start()

    def install(self) -> None:
        """SIGTERM/SIGINT request a warm stop; a second one stops now (work not deleted comes
        back from SQS after its visibility timeout, so nothing is lost; the spans of what was
        handled are flushed first, for at most ``tracing.FORCED_FLUSH_SECONDS``)."""

        def handle(signum: int, _frame: object) -> None:
            if self.signal_name is not None:
                os.write(2, b"second signal: stopping now\n")
                forced_exit(1)
            self.signal_name = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
