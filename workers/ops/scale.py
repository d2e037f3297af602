"""``workers scale``: how many daemons each queue runs under supervisord, changed without
restarting any other.

conf/supervisord.conf gives each queue a program of ``WORKERS_<QUEUE>_MAX_PROCS`` process
slots (post-sent_00, post-sent_01...) that do not start by themselves. The wanted count per
queue is kept in a small JSON file (``WORKERS_SCALE_FILE``, by default ``scale.json`` in
``WORKERS_RUN_DIR``), or comes from ``WORKERS_<QUEUE>_PROCS`` until a first ``scale``. Both
the run directory and the scale file's are checked private first (workers.ops.rundir): we
neither talk to a socket nor write a file where another user could have planted one.
Applying a count starts the first N slots and stops the rest through supervisord's XML-RPC
interface, the one supervisorctl speaks; a stop is supervisord's SIGTERM, so the daemon
finishes what it holds. supervisord runs ``workers scale`` (no arguments) once when it
starts, which applies every queue's count. Growing supervisord's own numprocs instead would
need ``reread``/``update``, which restarts every process of the program.
"""

from __future__ import annotations

import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from supervisor.xmlrpc import SupervisorTransport

from workers import QUEUES
from workers.ops import rundir
from workers.settings import LINKS_API_PROGRAM, Settings, procs_variable

# States in which a process counts as running (or about to be, or about to be retried).
UP = frozenset({"RUNNING", "STARTING", "BACKOFF"})
DOWN = frozenset({"STOPPED", "EXITED", "FATAL"})
POLL_SECONDS = 0.2
# What `workers scale` runs N of: each queue's daemons, and the read API's servers, which share
# one port (SO_REUSEPORT), so adding one is starting a slot like any daemon's.
PROGRAMS = (*QUEUES, LINKS_API_PROGRAM)


class ScaleError(Exception):
    """What the operator must fix; one line."""


@dataclass
class Change:
    queue: str
    wanted: int
    slots: int
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        moves = [f"started {', '.join(self.started)}" if self.started else "",
                 f"stopped {', '.join(self.stopped)}" if self.stopped else ""]
        done = "; ".join(m for m in moves if m) or "already so"
        return f"{self.queue}: {self.wanted} of {self.slots} processes ({done})"


def server(settings: Settings, url: str | None = None) -> Any:
    """supervisord's XML-RPC interface, over its unix socket by default."""
    url = url or f"unix://{settings.run_dir}/supervisor.sock"
    return xmlrpc.client.ServerProxy("http://127.0.0.1",
                                     transport=SupervisorTransport(None, None, url))


class Scaler:
    def __init__(self, settings: Settings, rpc: Any, timeout: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.rpc = rpc
        self.timeout = timeout
        self.sleep = sleep
        self.state = Path(settings.scale_file or Path(settings.run_dir) / "scale.json")
        rundir.ensure_private(settings.run_dir)
        rundir.ensure_private(self.state.parent)

    def wanted(self) -> dict[str, int]:
        """Each queue's count: the last ``scale``'s, else WORKERS_<QUEUE>_PROCS."""
        saved = rundir.read_json(self.state) or {}
        return {q: int(saved.get(q, self.settings.procs_for(q))) for q in PROGRAMS}

    def scale(self, queue: str, count: int) -> Change:
        """Remembers ``count`` for ``queue``, then applies it."""
        slots = self._processes(queue)
        self._check(queue, count, len(slots))
        self._save({**self.wanted(), queue: count})
        return self._apply(queue, count, slots)

    def apply_all(self) -> list[Change]:
        """Applies every queue's wanted count (what supervisord runs at start)."""
        wanted = self.wanted()
        changes = []
        for queue in PROGRAMS:
            slots = self._processes(queue)
            self._check(queue, wanted[queue], len(slots))
            changes.append(self._apply(queue, wanted[queue], slots))
        return changes

    # -- the work -------------------------------------------------------------------------

    def _apply(self, queue: str, count: int, slots: list[dict[str, Any]]) -> Change:
        change = Change(queue, count, len(slots))
        for index, process in enumerate(slots):
            name = f"{process['group']}:{process['name']}"
            if index < count and process["statename"] not in UP:
                self._call(self.rpc.supervisor.startProcess, name, "ALREADY_STARTED")
                change.started.append(process["name"])
            elif index >= count and process["statename"] in UP:
                self._call(self.rpc.supervisor.stopProcess, name, "NOT_RUNNING")
                change.stopped.append(process["name"])
        self._wait(queue, count)
        return change

    def _wait(self, queue: str, count: int) -> None:
        """Until the first ``count`` run and the rest have stopped (each stop finishes the
        daemon's work in hand: up to a long poll and the slowest handler)."""
        deadline = time.monotonic() + self.timeout
        while True:
            states = [p["statename"] for p in self._processes(queue)]
            lagging = [i for i, s in enumerate(states)
                       if (i < count and s != "RUNNING") or (i >= count and s not in DOWN)]
            if not lagging:
                return
            if any(states[i] == "FATAL" for i in lagging if i < count):
                raise ScaleError(f"{queue}_{lagging[0]:02d} cannot start (FATAL): see "
                                 f"supervisord's log in {self.settings.run_dir}")
            if time.monotonic() > deadline:
                raise ScaleError(f"{queue}: not settled after {self.timeout:.0f}s "
                                 f"(states: {', '.join(states)})")
            self.sleep(POLL_SECONDS)

    def _processes(self, queue: str) -> list[dict[str, Any]]:
        try:
            everything = self.rpc.supervisor.getAllProcessInfo()
        except OSError as exc:
            raise ScaleError(f"supervisord is not reachable ({exc}); is it running with "
                             f"WORKERS_RUN_DIR={self.settings.run_dir}?") from None
        mine = [p for p in everything if p["group"] == queue]
        return sorted(mine, key=lambda p: p["name"])

    def _check(self, queue: str, count: int, slots: int) -> None:
        if count > slots:
            raise ScaleError(
                f"{queue} has {slots} process slots; raise {_max_variable(queue)} and "
                "restart supervisord to run more")

    def _call(self, method: Callable[..., Any], name: str, harmless: str) -> None:
        try:
            method(name, False)  # don't block: stops run side by side, then we wait
        except xmlrpc.client.Fault as fault:
            if harmless not in fault.faultString:
                raise ScaleError(f"supervisord refused {name}: {fault.faultString}") from None

    def _save(self, wanted: dict[str, int]) -> None:
        rundir.write_json(self.state, wanted)  # never through a symlink; never half a file


def _max_variable(queue: str) -> str:
    return procs_variable(queue).replace("_PROCS", "_MAX_PROCS")
