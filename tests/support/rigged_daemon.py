"""`workers run QUEUE` with QUEUE's handler replaced by one of the handlers below, for tests of
what no real handler does (nothing in the package knows of this file):

    python tests/support/rigged_daemon.py exits run post-sent --concurrency 2
"""

from __future__ import annotations

import sys
import time
from typing import Any

from workers import queues
from workers.cli import main
from workers.runtime.consumer import Handlers


def exits(event: Any) -> None:
    """A handler (or a library under it) calling sys.exit: SystemExit is no Exception."""
    sys.exit(3)


def exits_later(event: Any) -> None:
    """As ``exits``, a few seconds in: after the test asked for a warm stop."""
    time.sleep(3)
    sys.exit(3)


def breaks_logging(event: Any) -> None:
    """Stdout gone (a closed pipe) while the handler fails: logging the failure fails too."""
    sys.stdout.close()
    raise RuntimeError("and the log line about it cannot be written")


def hangs(event: Any) -> None:
    """Stuck (a call without a timeout): its lane never polls again."""
    time.sleep(3600)


def heartbeat_dies(event: Any) -> None:
    """A handler longer than a beat, while the heartbeat thread dies (``_break_heartbeat``)."""
    time.sleep(2)


def _break_heartbeat() -> None:
    """The heartbeat's first beat raises what no ``except Exception`` catches."""
    from workers.runtime.heartbeat import Heartbeat

    def beat(self: Any, now: float | None = None) -> int:
        raise SystemExit("the heartbeat thread ends")

    Heartbeat.beat = beat  # type: ignore[method-assign]


def never_called(event: Any) -> None:
    """No message reaches a handler: the step before it fails (``_break_step``)."""
    raise AssertionError("not reached")


def _break_step() -> None:
    """Every step of every lane raises (a bug in the receive's handling, say), before SQS."""
    from workers.runtime.consumer import Consumer

    def handle_batch(self: Any, wait_seconds: int = 0, max_messages: int = 10) -> None:
        time.sleep(0.05)  # a step's worth of work, not a spin
        raise RuntimeError("this step always fails")

    Consumer.handle_batch = handle_batch  # type: ignore[method-assign,assignment]


RIGS = {"exits": exits, "exits_later": exits_later, "breaks_logging": breaks_logging,
        "hangs": hangs, "heartbeat_dies": heartbeat_dies, "step_fails": never_called}
SETUPS = {"heartbeat_dies": _break_heartbeat, "step_fails": _break_step}

if __name__ == "__main__":
    name = sys.argv.pop(1)
    rig = RIGS[name]
    SETUPS.get(name, lambda: None)()
    queue = sys.argv[2]
    queues.BUILDS[queue] = lambda settings, redis: Handlers(rig)  # the daemon's wiring, rigged
    main()
