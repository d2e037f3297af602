"""The fleet across hosts, read from the registry (workers.runtime.registry): every live process,
each host's wanted and running counts, and setting a host's wanted count. ``workers fleet``,
``workers scale --host``, ``workers stats`` and the console read and write it through here.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any, Callable

from workers.adapters.redisconn import REDIS_ERRORS, Client, connect
from workers.ops.tables import format_age, format_table
from workers.runtime.registry import HOSTS, PROCS, STALE_AFTER_REFRESHES, entry_key, wanted_key

# Fields of an entry that are numbers (the rest are text); Redis keeps them as strings.
INTEGERS = ("pid", "handled", "failed", "dead_lettered", "in_flight")
FLOATS = ("started_at", "last_poll_at", "seen_at", "handled_per_s", "refresh_s")
# `workers scale` looks at the registry this often while it waits for the count to run.
SCALE_POLL_SECONDS = 0.3


class FleetError(Exception):
    """What the operator must fix; one line."""


def redis_now(client: Client) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def processes(client: Client) -> list[dict[str, Any]]:
    """Every live entry (not past its expiry by Redis's clock), by host, program and pid; each
    with ``stale`` True when it missed its last refresh (the process may be gone, or cut off
    from Redis): it drops out at its expiry unless it refreshes again."""
    now = redis_now(client)
    ids = [_text(i) for i in client.zrangebyscore(PROCS, now, "+inf")]
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for entry in ids:
        pipe.hgetall(entry_key(entry))
    found = [_entry(raw, now) for raw in pipe.execute() if raw]  # {} once its hash expired
    return sorted(found, key=lambda e: (e["host"], e["program"], e["pid"]))


def hosts(client: Client, live: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``{"host", "wanted": {program: N}, "running": {program: N}}`` for every host with wanted
    counts or live processes; running counts live entries that are not stale."""
    live = processes(client) if live is None else live
    running: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for entry in live:
        if not entry["stale"]:
            running[entry["host"]][entry["program"]] += 1
    names = sorted({_text(h) for h in client.smembers(HOSTS)} | set(running))
    return [{"host": host, "wanted": wanted(client, host) or {},
             "running": dict(sorted(running[host].items()))} for host in names]


def wanted(client: Client, host: str) -> dict[str, int] | None:
    """The processes ``host`` should run, by program; None when Redis has none for it yet."""
    raw = client.hgetall(wanted_key(host))
    return {_text(k): int(v) for k, v in sorted(raw.items())} if raw else None


def set_wanted(client: Client, host: str, program: str, n: int) -> None:
    """Sets how many processes of ``program`` ``host`` runs; its workers-scale applies it."""
    pipe = client.pipeline(transaction=False)
    pipe.hset(wanted_key(host), program, n)
    pipe.sadd(HOSTS, host)
    pipe.execute()


def seed_wanted(client: Client, host: str, counts: dict[str, int]) -> dict[str, int]:
    """Sets ``host``'s counts where Redis has none yet (HSETNX: never over a `workers scale`),
    and returns what Redis then holds."""
    pipe = client.pipeline(transaction=False)
    for program, n in counts.items():
        pipe.hsetnx(wanted_key(host), program, n)
    pipe.sadd(HOSTS, host)
    pipe.execute()
    return wanted(client, host) or {}


def running(client: Client, host: str, program: str) -> int:
    """Live, non-stale processes of ``program`` on ``host``."""
    return sum(1 for e in processes(client)
               if e["host"] == host and e["program"] == program and not e["stale"])


def check_host(client: Client, host: str) -> None:
    """Raises FleetError unless ``host`` is in the fleet (has wanted counts or a live process):
    a typo would otherwise leave counts for a host that never comes."""
    names = [h["host"] for h in hosts(client)]
    if host not in names:
        raise FleetError(f"no host {host[:100]!r} in the fleet (known: "
                         f"{', '.join(names) or 'none'}); a host joins when its workers-scale "
                         "or a process of it starts")


def scale(redis_url: str, host: str, program: str, n: int, timeout: float,
          known: bool = False, sleep: Callable[[float], None] = time.sleep) -> str:
    """``workers scale``: sets the count, then waits until ``host``'s registry shows it. Unless
    ``known`` (this host), ``host`` must be in the fleet already: a typo would otherwise leave
    counts for a host that never comes."""
    try:
        client = connect(redis_url)
        if not known:
            check_host(client, host)
        set_wanted(client, host, program, n)
    except REDIS_ERRORS as exc:
        raise FleetError(f"Redis is not reachable ({type(exc).__name__}: {exc}): the wanted "
                         "counts are kept there") from None
    deadline = time.monotonic() + timeout
    now = -1
    while True:
        try:
            now = running(client, host, program)
        except REDIS_ERRORS:
            pass
        if now == n:
            return f"{program} on {host}: {n} processes running"
        if time.monotonic() > deadline:
            raise FleetError(f"{program} on {host}: {max(now, 0)} of {n} processes running "
                             f"after {timeout:.0f}s (is workers-scale running there, under "
                             "supervisord?)")
        sleep(SCALE_POLL_SECONDS)


def render(live: list[dict[str, Any]], by_host: list[dict[str, Any]], now: float) -> str:
    """``workers fleet``: a table per host."""
    if not by_host:
        return "no process is registered"
    headers = ["PROGRAM", "QUEUE", "PID", "VERSION", "UPTIME", "LAST POLL", "HANDLED", "FAILED",
               "DEAD", "IN FLIGHT", "STATE"]
    parts = []
    for host in by_host:
        rows = [[e["program"], e["queue"] or "-", str(e["pid"]), e["version"],
                 format_age(now - e["started_at"]),
                 format_age(now - e["last_poll_at"]) + " ago" if e["last_poll_at"] else "-",
                 str(e["handled"]), str(e["failed"]), str(e["dead_lettered"]),
                 str(e["in_flight"]),
                 f"stale ({format_age(now - e['seen_at'])} since seen)" if e["stale"]
                 else "live"]
                for e in live if e["host"] == host["host"]]
        counts = ", ".join(f"{p} {host['running'].get(p, 0)}/{n}"
                           for p, n in host["wanted"].items()) or "none in Redis"
        table = format_table(headers, rows) if rows else "  (no process registered)"
        parts.append(f"{host['host']}  (running/wanted: {counts})\n{table}")
    return "\n\n".join(parts)


def as_json(live: list[dict[str, Any]], by_host: list[dict[str, Any]]) -> str:
    return json.dumps({"processes": live, "hosts": by_host})


def _entry(raw: dict[Any, Any], now: float) -> dict[str, Any]:
    entry: dict[str, Any] = {_text(k): _text(v) for k, v in raw.items()}
    for name in INTEGERS:
        entry[name] = int(float(entry.get(name) or 0))
    for name in FLOATS:
        entry[name] = float(entry.get(name) or 0)
    entry["stale"] = now - entry["seen_at"] > STALE_AFTER_REFRESHES * entry["refresh_s"]
    return entry


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["FleetError", "as_json", "check_host", "hosts", "processes", "redis_now", "render",
           "running", "scale", "seed_wanted", "set_wanted", "wanted"]
