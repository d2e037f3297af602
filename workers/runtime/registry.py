"""The fleet's registry in the counters' Redis: which process runs where, kept by the processes
themselves (SPEC.md, "The fleet across hosts"; Sidekiq keeps its process set the same way).

Every daemon, ``links serve`` and console process runs a ``Registration``: a thread that writes
the process's entry once every ``REFRESH_SECONDS`` (one EVALSHA: its hash, the hash's TTL, and
its expiry in a sorted set), from figures the process already keeps, so the message path never
waits on it. A warm stop deletes the entry; a process that vanished stops refreshing, and its
entry is past its expiry (by Redis's clock) after ``EXPIRE_AFTER_REFRESHES`` refreshes. A
refresh that fails (Redis away) is logged and tried again next interval: the registry never
costs a daemon its work.

A program of its own (the console) registers the same way, in a few lines::

    registration = Registration(settings.redis_url, settings.host_name, "console").start()
    try:
        ...  # serve until a warm stop
    finally:
        registration.stop()

Keys, all under one hash tag so that a Redis Cluster keeps them in one slot (a script may only
touch the keys of one slot): ``{fleet}:procs`` (sorted set: entry id -> expiry, Unix seconds by
Redis's clock), ``{fleet}:proc:<id>`` (hash: the entry's fields), ``{fleet}:hosts`` (set of the
hosts with wanted counts) and ``{fleet}:wanted:<host>`` (hash: program -> processes wanted).
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
import time
from typing import Any, Callable, Mapping

import structlog

from workers.adapters.redisconn import REDIS_ERRORS, Client, connect

# A process refreshes its entry this often: one Redis call per interval and process.
REFRESH_SECONDS = 5.0
# ... and is gone from the registry once it has missed this many refreshes (15 s).
EXPIRE_AFTER_REFRESHES = 3
# An entry not refreshed for this many of its intervals is shown as stale until it expires:
# its process may be gone, or cut off from Redis.
STALE_AFTER_REFRESHES = 1.5

TAG = "{fleet}"
PROCS = f"{TAG}:procs"
HOSTS = f"{TAG}:hosts"


def entry_key(entry_id: str) -> str:
    return f"{TAG}:proc:{entry_id}"


def wanted_key(host: str) -> str:
    return f"{TAG}:wanted:{host}"


# KEYS: the sorted set, the entry's hash. ARGV: id, TTL, then field, value pairs. Stamps the
# entry with Redis's clock (seen_at), and drops expired members of the set, which a process
# that vanished left behind (their hashes expire by their TTL).
REFRESH = """
local now = redis.call('TIME')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1e6
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[2], 'seen_at', string.format('%.3f', seconds), unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[2], math.ceil(ttl))
redis.call('ZADD', KEYS[1], seconds + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', seconds)
return 1
"""

Snapshot = Callable[[], Mapping[str, Any]]


def version() -> str:
    try:
        return importlib.metadata.version("workers")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def entry_id(host: str, program: str, pid: int) -> str:
    return f"{host}/{program}/{pid}"


class Registration:
    """One process's entry, refreshed by a thread of its own until ``stop``.

    ``snapshot`` returns the figures that change (``last_poll_at``, ``handled``, ``failed``,
    ``dead_lettered``, ``in_flight``); it runs on the registration's thread, every interval,
    and must only read what the process keeps anyway."""

    def __init__(self, redis_url: str, host: str, program: str, *, queue: str = "",
                 snapshot: Snapshot = dict, interval: float = REFRESH_SECONDS,
                 log: Any = None, client: Client | None = None):
        self.redis_url = redis_url
        self.program = program
        self.pid = os.getpid()
        self.id = entry_id(host, program, self.pid)
        self.fixed = {"id": self.id, "host": host, "pid": str(self.pid), "program": program,
                      "queue": queue, "version": version(), "started_at": f"{time.time():.3f}",
                      "refresh_s": _text(float(interval))}
        self.snapshot = snapshot
        self.interval = interval
        self.log = log or structlog.get_logger(program=program)
        self._client = client
        self._script: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry", daemon=True)
        self._rate = _Rate()
        self.failing = False

    def start(self) -> "Registration":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops refreshing and removes the entry at once (if Redis answers)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 10)
        try:
            client = self._connect()
            pipe = client.pipeline(transaction=False)
            pipe.zrem(PROCS, self.id)
            pipe.delete(entry_key(self.id))
            pipe.execute()
        except REDIS_ERRORS as exc:  # it expires on its own
            self._warn("registry.unregister_failed", exc)

    def refresh(self) -> None:
        """Writes the entry once; raises one of REDIS_ERRORS when Redis is away."""
        figures = {k: _text(v) for k, v in self.snapshot().items()}
        figures["handled_per_s"] = _text(self._rate.update(float(figures.get("handled", 0))))
        values = [item for pair in {**self.fixed, **figures}.items() for item in pair]
        client = self._connect()
        if self._script is None:
            self._script = client.register_script(REFRESH)
        ttl = self.interval * EXPIRE_AFTER_REFRESHES
        self._script(keys=[PROCS, entry_key(self.id)], args=[self.id, ttl, *values])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                if self.failing:
                    self.failing = False
                    self._info("registry.refreshed_again")
            except REDIS_ERRORS as exc:
                if not self.failing:
                    self.failing = True
                    self._warn("registry.refresh_failed", exc)
            except Exception as exc:  # a bug in a snapshot must not end the refreshes
                self._warn("registry.refresh_crashed", exc)
            self._stop.wait(self.interval)

    def _connect(self) -> Client:
        if self._client is None:
            self._client = connect(self.redis_url)  # a cluster's raises while it is away
        return self._client

    def _warn(self, event: str, exc: BaseException) -> None:
        self.log.warning(event, error=f"{type(exc).__name__}: {exc}")

    def _info(self, event: str) -> None:
        self.log.info(event)


class _Rate:
    """Messages handled per second between two refreshes, by this process's clock."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def update(self, handled: float) -> float:
        now = time.monotonic()
        last, self._last = self._last, (now, handled)
        if last is None or now <= last[0]:
            return 0.0
        return max(0.0, (handled - last[1]) / (now - last[0]))


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
