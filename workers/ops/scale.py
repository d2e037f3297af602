"""How many processes of each program a host runs under its supervisord, kept in the counters'
Redis for every host (workers.ops.fleet), applied by each host's ``workers-scale``.

Each process is a supervisord program of its own, ``post-sent_00``, ``post-sent_01``..., written
from a template of conf/supervisord.conf (``[fleet-program:post-sent]``) into
``$WORKERS_RUN_DIR/programs.conf``, which supervisord includes. Applying a count rewrites that
file, has supervisord read it again (``reloadConfig``, supervisorctl's ``reread``), then adds
the new programs (``addProcessGroup``: they start) and stops, then removes, those no longer
wanted (``stopProcessGroup``, a SIGTERM: the daemon finishes what it holds; then
``removeProcessGroup``). No other process restarts: each program is a group of one, and
supervisord restarts a group only when its own section changes. So supervisorctl shows what
runs, and nothing else.

The wanted counts come from Redis (``{fleet}:wanted:<host>``). ``workers scale --watch`` (the
``workers-scale`` program) looks every ``WATCH_SECONDS`` and applies a change at once. When
Redis is away at its start, it applies the counts it last read from Redis, kept in the scale
file (``WORKERS_SCALE_FILE``, by default ``scale.json`` in ``WORKERS_RUN_DIR``), or
``WORKERS_<QUEUE>_PROCS`` before any; Redis's counts win once it answers. Both the run
directory and the scale file's are checked private first (workers.ops.rundir): we neither talk
to a socket nor write a file where another user could have planted one.
"""

from __future__ import annotations

import configparser
import re
import threading
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import structlog
from supervisor.xmlrpc import SupervisorTransport

from workers.adapters.redisconn import REDIS_ERRORS, Client, connect
from workers.core.events import DECLARED
from workers.core.settings import LINKS_API_PROCS, LINKS_API_PROGRAM, Settings
from workers.ops import fleet, rundir

# States in which a process counts as running (or about to be, or about to be retried).
UP = frozenset({"RUNNING", "STARTING", "BACKOFF"})
DOWN = frozenset({"STOPPED", "EXITED", "FATAL"})
POLL_SECONDS = 0.2
# workers-scale looks at Redis this often: a count set anywhere applies within a second or two
# (SPEC.md promises 5), for one HGETALL a second per host.
WATCH_SECONDS = 1.0
# What `workers scale` runs N of: each queue's daemons, and the read API's servers, which share
# one port (SO_REUSEPORT), so adding one is starting a process like any daemon's. Each runs
# this many until WORKERS_<PROGRAM>_PROCS or Redis says otherwise: its queue's declaration's.
DEFAULT_PROCS = {**{q.name: q.procs for q in DECLARED}, LINKS_API_PROGRAM: LINKS_API_PROCS}
PROGRAMS = tuple(DEFAULT_PROCS)
# The section conf/supervisord.conf holds each program's template in.
TEMPLATE = "fleet-program:"
# A process of ours: post-sent_00 (supervisord's group and process name alike).
PROCESS_NAME = re.compile(r"(?P<program>.+)_(?P<num>\d{2})")
PROGRAMS_FILE = "programs.conf"


class ScaleError(Exception):
    """What the operator must fix; one line."""


@dataclass
class Change:
    program: str
    wanted: int
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        moves = [f"started {', '.join(self.started)}" if self.started else "",
                 f"stopped {', '.join(self.stopped)}" if self.stopped else ""]
        done = "; ".join(m for m in moves if m) or "already so"
        return f"{self.program}: {self.wanted} processes ({done})"


def socket_path(settings: Settings) -> str:
    return f"{settings.run_dir}/supervisor.sock"


def server(settings: Settings, url: str | None = None) -> Any:
    """supervisord's XML-RPC interface, over its unix socket by default."""
    url = url or f"unix://{socket_path(settings)}"
    return xmlrpc.client.ServerProxy("http://127.0.0.1",
                                     transport=SupervisorTransport(None, None, url))


def process_names(wanted: dict[str, int]) -> list[str]:
    return [f"{program}_{n:02d}" for program in PROGRAMS for n in range(wanted.get(program, 0))]


class Templates:
    """The ``[fleet-program:NAME]`` sections of supervisord's file, as written (supervisord
    expands ``%(ENV_...)s`` and ``%(process_num)d`` itself when it reads the programs)."""

    def __init__(self, conf: str | Path):
        parser = configparser.RawConfigParser(interpolation=None)
        if not parser.read(conf):
            raise ScaleError(f"cannot read supervisord's file {conf} (WORKERS_SUPERVISOR_CONF)")
        self.sections = {s[len(TEMPLATE):]: dict(parser.items(s)) for s in parser.sections()
                         if s.startswith(TEMPLATE)}
        missing = [p for p in PROGRAMS if p not in self.sections]
        if missing:
            raise ScaleError(f"{conf} has no [{TEMPLATE}{missing[0]}] section")

    def render(self, wanted: dict[str, int]) -> str:
        parts = ["; Written by `workers scale` from conf/supervisord.conf's [fleet-program:...]"
                 " sections: one program a process. Do not edit.\n"]
        for name in process_names(wanted):
            program = _program(name) or ""
            lines = [f"[program:{name}]", f"numprocs_start={int(name[-2:])}"]
            lines += [f"{k}={v}" for k, v in self.sections[program].items()]
            parts.append("\n".join(lines) + "\n")
        return "\n".join(parts)


class Scaler:
    def __init__(self, settings: Settings, rpc: Any, timeout: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep,
                 redis: Callable[[], Client] | None = None):
        self.settings = settings
        self.rpc = rpc
        self.timeout = timeout
        self.sleep = sleep
        self.host = settings.host_name
        self.state = Path(settings.scale_file or Path(settings.run_dir) / "scale.json")
        self.programs_file = Path(settings.run_dir) / PROGRAMS_FILE
        rundir.ensure_private(settings.run_dir)
        rundir.ensure_private(self.state.parent)
        self.templates = Templates(settings.supervisor_conf)
        self._redis = redis or (lambda: connect(settings.redis_url))
        self._client: Client | None = None
        self.last: dict[str, int] | None = None  # the counts last read (Redis, file, defaults)
        self.source = ""
        self.log = structlog.get_logger(host=self.host)

    # -- the counts -----------------------------------------------------------------------

    def defaults(self) -> dict[str, int]:
        """The counts before Redis has any: the scale file's (the last read from Redis), else
        WORKERS_<PROGRAM>_PROCS, else the program's declaration."""
        saved = rundir.read_json(self.state) or {}
        return {p: int(saved.get(p, self.settings.procs_for(p, default)))
                for p, default in DEFAULT_PROCS.items()}

    def wanted(self) -> dict[str, int]:
        """This host's counts from Redis (seeded with ``defaults`` where it has none); while
        Redis is away, those last read, or at start ``defaults``."""
        try:
            client = self.client()
            counts = fleet.wanted(client, self.host)
            if counts is None or set(PROGRAMS) - set(counts):
                counts = fleet.seed_wanted(client, self.host, self.defaults())
        except REDIS_ERRORS as exc:
            self._client = None
            if self.source != "file":
                self.log.warning("scale.redis_unavailable", error=str(exc))
            if self.last is None:
                self.last, self.source = self.defaults(), "file"
            return self.last
        counts = {p: counts.get(p, 0) for p in PROGRAMS}
        if counts != self.last or self.source != "redis":
            rundir.write_json(self.state, counts)  # never through a symlink; never half a file
        self.last, self.source = counts, "redis"
        return counts

    def client(self) -> Client:
        if self._client is None:
            self._client = self._redis()
        return self._client

    # -- applying -------------------------------------------------------------------------

    def apply(self, wanted: dict[str, int]) -> list[Change]:
        """One step towards ``wanted``: writes the programs, adds the new (they start), stops
        those no longer wanted, and removes them once stopped. Never waits."""
        wanted_names = process_names(wanted)
        text = self.templates.render(wanted)
        present = self._present()
        changed = self._write(text)
        if changed or set(wanted_names) - set(present):
            self._reload()
        changes = {p: Change(p, wanted.get(p, 0)) for p in PROGRAMS}
        for name in wanted_names:
            program = _program(name) or ""
            if name not in present:
                self._call(self.rpc.supervisor.addProcessGroup, name, "ALREADY_ADDED")
                changes[program].started.append(name)
            elif present[name] == "STOPPED":  # stopped by a scale-down, wanted again
                self._call(self.rpc.supervisor.startProcess, name, "ALREADY_STARTED", False)
                changes[program].started.append(name)
        for name, state in present.items():
            if name in wanted_names:
                continue
            program = _program(name) or ""
            if state in DOWN:
                self._call(self.rpc.supervisor.removeProcessGroup, name, "BAD_NAME")
            elif state != "STOPPING":
                # without waiting: stops run side by side, and the next step removes them
                self._call(self.rpc.supervisor.stopProcessGroup, name, "NOT_RUNNING", False)
                changes[program].stopped.append(name)
        return [c for c in changes.values() if c.started or c.stopped]

    def settle(self, wanted: dict[str, int]) -> list[Change]:
        """Applies ``wanted`` and waits until exactly those processes run (each stop lets a
        daemon finish its work in hand: up to a long poll and the slowest handler)."""
        deadline = time.monotonic() + self.timeout
        changes: dict[str, Change] = {p: Change(p, wanted.get(p, 0)) for p in PROGRAMS}
        names = set(process_names(wanted))
        while True:
            for change in self.apply(wanted):
                changes[change.program].started += change.started
                changes[change.program].stopped += change.stopped
            present = self._present()
            fatal = [n for n in names if present.get(n) == "FATAL"]
            if fatal:
                raise ScaleError(f"{fatal[0]} cannot start (FATAL): see supervisord's log in "
                                 f"{self.settings.run_dir}")
            if set(present) == names and all(present[n] == "RUNNING" for n in names):
                return list(changes.values())
            if time.monotonic() > deadline:
                lagging = sorted(n for n in names | set(present) if present.get(n) != "RUNNING")
                states = ", ".join(f"{n} {present.get(n, 'absent')}" for n in lagging)
                raise ScaleError(f"not settled after {self.timeout:.0f}s: {states}")
            self.sleep(POLL_SECONDS)

    def wait_for(self, program: str, n: int) -> None:
        """Until this host's supervisord runs exactly ``n`` processes of ``program`` (and has
        removed those stopped), as workers-scale leaves it; applies nothing itself."""
        deadline = time.monotonic() + self.timeout
        names = {f"{program}_{i:02d}" for i in range(n)}
        while True:
            present = {k: v for k, v in self._present().items() if _program(k) == program}
            if set(present) == names and all(v == "RUNNING" for v in present.values()):
                return
            if time.monotonic() > deadline:
                states = ", ".join(f"{k} {v}" for k, v in sorted(present.items()))
                raise ScaleError(f"{program}: supervisord has not settled after "
                                 f"{self.timeout:.0f}s ({states or 'none'})")
            self.sleep(POLL_SECONDS)

    def watch(self, stop: threading.Event, interval: float = WATCH_SECONDS) -> None:
        """Applies this host's counts whenever they change, until ``stop``: the workers-scale
        program. supervisord away for a moment (a restart) is waited out."""
        while not stop.is_set():
            try:
                for change in self.apply(self.wanted()):
                    self.log.info("scale.applied", program=change.program, wanted=change.wanted,
                                  started=change.started, stopped=change.stopped,
                                  source=self.source)
            except ScaleError as exc:
                self.log.warning("scale.failed", error=str(exc))
            stop.wait(interval)

    # -- supervisord ----------------------------------------------------------------------

    def _present(self) -> dict[str, str]:
        """Our processes supervisord has, by name, with their states."""
        try:
            everything = self.rpc.supervisor.getAllProcessInfo()
        except OSError as exc:
            raise ScaleError(f"supervisord is not reachable ({exc}); is it running with "
                             f"WORKERS_RUN_DIR={self.settings.run_dir}?") from None
        return {p["name"]: p["statename"] for p in everything if _ours(p)}

    def _write(self, text: str) -> bool:
        try:
            if self.programs_file.read_text() == text and not self.programs_file.is_symlink():
                return False
        except FileNotFoundError:
            pass
        rundir.write_text(self.programs_file, text)
        return True

    def _reload(self) -> None:
        try:
            self.rpc.supervisor.reloadConfig()
        except xmlrpc.client.Fault as fault:
            raise ScaleError(f"supervisord cannot read its files: {fault.faultString}") from None

    def _call(self, method: Callable[..., Any], name: str, harmless: str,
              *args: Any) -> None:
        try:
            method(name, *args)
        except xmlrpc.client.Fault as fault:
            if harmless not in fault.faultString:
                raise ScaleError(f"supervisord refused {name}: {fault.faultString}") from None


def _program(name: str) -> str | None:
    match = PROCESS_NAME.fullmatch(name)
    return match["program"] if match and match["program"] in PROGRAMS else None


def _ours(process: dict[str, Any]) -> bool:
    return process["group"] == process["name"] and _program(process["name"]) is not None
