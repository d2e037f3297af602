"""Runs `workers ARGS...` (or a script, ``SCRIPT.py ARGS...``) counting its Redis round trips:
``python bench/tripcount.py OUT ARGS...`` writes the count to OUT when the process exits (a
warm stop: SIGTERM).

A round trip is one request written to Redis: a command, or a whole pipeline, which
redis-py sends with one ``send_packed_command``. Redis's own INFO counts the commands a
script runs inside it too, which says what Redis does, not how often a daemon waits on it.
"""

from __future__ import annotations

import atexit
import runpy
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import redis.connection


def main() -> None:
    out, args = Path(sys.argv[1]), sys.argv[2:]
    trips = [0]
    lock = threading.Lock()
    send = redis.connection.Connection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        with lock:
            trips[0] += 1
        send(self, command, check_health)

    redis.connection.Connection.send_packed_command = counted  # type: ignore[method-assign]
    atexit.register(lambda: out.write_text(str(trips[0])))
    if args and args[0].endswith(".py"):
        sys.argv = args
        sys.path.insert(0, str(Path(args[0]).resolve().parent))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so atexit runs
        runpy.run_path(args[0], run_name="__main__")
        return
    sys.argv = ["workers", *args]
    from workers.cli import main as workers

    workers()


if __name__ == "__main__":
    main()
