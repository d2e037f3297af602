"""The read API's figures: requests/s of ONE `workers links serve` process for single-URL
lookups over counted URLs, and its latency at a constant ~700 requests/s (the seed system's
burst); beside them, redis-benchmark doing the same Redis read (HGET on a counter hash), the
limit of this machine's Redis. The same for each server of bench/readservers.py (granian,
ours; uvicorn with httptools and uvloop; the hand-written protocol it replaced), and the peak
resident size of a process of each, above its size at rest, under each hostile client of
tests/support/hostile.py (a fresh process for each), with the worst wait of another client
meanwhile. --quick measures granian alone, each hostile client for a second.

wrk (Debian's; `make bench` installs it) generates the load on loopback, with
bench/wrk/shares.lua picking a random counted URL per request. The counters are filled as
bench/redismem.py fills them: pipelined HINCRBY on ``LinkCounter.slot`` of each URL's key.
Throughput: 64 connections flat out. Latency: 7 connections, each waiting 9.5 ms on average
(1 to 18 whole ms, at random) after an answer before its next request, about 700 requests/s
with the answer's own half millisecond; wrk cannot pace at an exact rate (its delay() is whole
milliseconds after each answer) and wrk2 is not in Debian, so the rate reached is reported.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import hostile  # the tests' hostile clients (tests/support): one definition of each attack
import procstat
import readservers
import redis

import devstack
from workers.domain.links.counter import LinkCounter
from workers.domain.links.urls import normalize_key

HERE = Path(__file__).resolve().parent

SCRIPT = HERE / "wrk" / "shares.lua"
PIPELINE = 10_000
THROUGHPUT_CONNECTIONS = 64
PACED_CONNECTIONS, PACE_MS = 7, 10
GOAL_RPS, GOAL_P99_MS, PACED_TARGET = 10_000, 1.0, 700
REDIS_BENCH_REQUESTS = {False: 500_000, True: 50_000}
SERVERS = {False: readservers.SERVERS, True: ("granian",)}
# Seconds each hostile client runs (the padded flood stops sooner, after its URLs).
SIEGE_SECONDS = {False: 5.0, True: 1.0}
# The padded flood runs until its 1,500 URLs are answered (or this long): a cache that kept
# them would hold 90 MB.
PADDED_SECONDS = {False: 60.0, True: 1.0}
# SPEC: a process stays within this of its resident size at rest, whatever one client sends.
MEMORY_BOUND_MIB = 64


class ReadBenchError(RuntimeError):
    pass


def url_of(i: int) -> str:
    """The i-th counted URL (bench/wrk/shares.lua builds the same), ~40 characters."""
    return f"bench{i % 9973}.example.com/{2016 + i % 9}/post-{i:x}"


def fill(client: redis.Redis, urls: int) -> tuple[str, bytes]:
    """Counts each URL once; returns one (hash, field) for redis-benchmark to read."""
    counter = LinkCounter(client)
    pipe = client.pipeline(transaction=False)
    sample = counter.slot(normalize_key(url_of(0)))
    for i in range(urls):
        counters, field = counter.slot(normalize_key(url_of(i)))
        pipe.hincrby(counters, field, 1)
        if b"\0" not in field and i == urls // 2:  # argv cannot carry a NUL byte
            sample = (counters, field)
        if (i + 1) % PIPELINE == 0:
            pipe.execute()
    pipe.execute()
    return sample


def wrk(url: str, urls: int, connections: int, seconds: float,
        pace_ms: int = 0) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(SCRIPT),
            url]
    env = {**os.environ, "READ_URLS": str(urls), "READ_PACE_MS": str(pace_ms)}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise ReadBenchError(f"wrk failed: {out.stderr.strip()[:300]}")
    return parse_wrk(out.stdout)


def parse_wrk(text: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if not rps or not total:
        raise ReadBenchError(f"wrk said: {text[:500]}")
    latency = {f"p{int(p)}_ms": _ms(value, unit) for p, value, unit in
               re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    failed = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    return {"requests_per_s": float(rps.group(1)), "requests": int(total.group(1)), **latency,
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sum(map(int, failed.groups())) if failed else 0}


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def redis_benchmark(port: int, slot: tuple[str, bytes], requests: int) -> dict[str, Any]:
    """redis-benchmark's HGET of one counter: the same read, 64 clients, no pipelining."""
    argv = [shutil.which("redis-benchmark") or "redis-benchmark", "-h", "127.0.0.1", "-p",
            str(port), "-c", str(THROUGHPUT_CONNECTIONS), "-n", str(requests), "-q",
            "HGET", slot[0], os.fsdecode(slot[1])]
    out = subprocess.run(argv, capture_output=True, timeout=300)
    found = re.search(rb"([\d.]+) requests per second(?:, p50=([\d.]+) msec)?", out.stdout)
    if out.returncode != 0 or not found:
        raise ReadBenchError(f"redis-benchmark said: {out.stdout[-300:]!r} {out.stderr[-300:]!r}")
    return {"requests_per_s": float(found.group(1)),
            "p50_ms": float(found.group(2)) if found.group(2) else None,
            "clients": THROUGHPUT_CONNECTIONS}


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load(server: str, redis_port: int, urls: int, seconds: float,
         workdir: Path) -> dict[str, Any]:
    """Flat out and paced, on one process of ``server``."""
    api, port = readservers.start(server, redis_port, workdir)
    try:
        base = f"http://127.0.0.1:{port}/"
        check = wrk(base, urls, 4, 1)  # a warm-up that also checks every answer is a 200
        cpu_before = procstat.cpu_seconds(api.pid)
        flat = wrk(base, urls, THROUGHPUT_CONNECTIONS, seconds)
        cpu = procstat.cpu_seconds(api.pid) - cpu_before
        paced = wrk(base, urls, PACED_CONNECTIONS, seconds, pace_ms=PACE_MS)
    finally:
        stop(api)
    return {"throughput": {**flat, "connections": THROUGHPUT_CONNECTIONS,
                           "server_cpu_us_per_request": cpu / max(flat["requests"], 1) * 1e6},
            "paced": {**paced, "connections": PACED_CONNECTIONS, "pace_ms": PACE_MS},
            "errors": check["non_2xx"] + flat["non_2xx"] + paced["non_2xx"]}


def sieges(server: str, redis_port: int, urls: int, quick: bool,
           workdir: Path) -> dict[str, Any]:
    """Each hostile client against a fresh process of ``server`` (memory one freed would
    hide what the next takes), after a second of ordinary load to bring it to rest."""
    out = {}
    for kind in hostile.HOSTILE:
        api, port = readservers.start(server, redis_port, workdir)
        try:
            wrk(f"http://127.0.0.1:{port}/", urls, 4, 1)
            seconds = (PADDED_SECONDS if kind == "padded_urls" else SIEGE_SECONDS)[quick]
            run = hostile.siege(kind, api.pid, port, seconds)
        finally:
            stop(api)
        out[kind] = {"rest_mib": run.rest_mib, "peak_mib": run.peak_mib,
                     "growth_mib": run.growth_mib, "other_requests": run.other_requests,
                     "other_unanswered": run.other_unanswered,
                     "other_worst_s": run.other_worst_s, "hostile_total": run.hostile_total}
    return out


def measure(urls: int, seconds: float, workdir: Path, quick: bool = False) -> dict[str, Any]:
    """Every figure, on a redis-server of its own and a process of each server, all stopped
    after."""
    if shutil.which("wrk") is None:
        raise ReadBenchError("wrk is not installed: `make bench` installs it "
                             "(apt-get install wrk)")
    server = devstack.redis_server(log_path=workdir / "read-redis.log")
    servers: dict[str, Any] = {}
    try:
        procstat.remember(server.start().proc.pid)
        client = redis.Redis(port=server.port)
        started = time.monotonic()
        slot = fill(client, urls)
        filled_s = time.monotonic() - started
        for name in SERVERS[quick]:
            try:
                servers[name] = {**load(name, server.port, urls, seconds, workdir),
                                 "hostile": sieges(name, server.port, urls, quick, workdir)}
            except (readservers.ServerError, OSError, RuntimeError) as exc:
                if name == "granian":
                    raise ReadBenchError(f"{name}: {exc}") from exc
                servers[name] = {"skipped": f"{type(exc).__name__}: {exc}"[:300]}
        reference = redis_benchmark(server.port, slot, REDIS_BENCH_REQUESTS[quick])
    finally:
        server.discard()
    ours = servers["granian"]
    flat, paced, sieged = ours["throughput"], ours["paced"], ours["hostile"]
    return {"urls": urls, "seconds": seconds, "fill_s": filled_s,
            "throughput": flat, "paced": paced, "hostile": sieged,
            "servers": servers, "redis_benchmark": reference, "errors": ours["errors"],
            "goals": {"requests_per_s": {"goal": f"≥ {GOAL_RPS:,} requests/s from one process",
                                         "met": flat["requests_per_s"] >= GOAL_RPS},
                      "p99_ms": {"goal": f"p99 < {GOAL_P99_MS:g} ms at {PACED_TARGET}/s",
                                 "met": paced.get("p99_ms", 1e9) < GOAL_P99_MS},
                      "hostile": {"goal": f"within {MEMORY_BOUND_MIB} MiB of rest, others "
                                          "answered, under each hostile client",
                                  "met": all(r["growth_mib"] < MEMORY_BOUND_MIB
                                             and r["other_unanswered"] == 0
                                             for r in sieged.values())}}}


def lines(read: dict[str, Any]) -> list[str]:
    """The read API's rows of the bench's table: ours, then each server side by side."""
    flat, paced, ref = read["throughput"], read["paced"], read["redis_benchmark"]
    goals = read["goals"]

    def verdict(name: str) -> str:
        return f"{goals[name]['goal']}: {'met' if goals[name]['met'] else 'MISSED'}"

    out = [
        f"read API (one `links serve` process, {read['urls']:,} counted URLs, wrk on loopback):",
        f"  flat out, {flat['connections']} connections: {flat['requests_per_s']:,.0f} "
        f"requests/s (p50 {flat['p50_ms']:.2f} ms, p99 {flat['p99_ms']:.2f} ms; "
        f"{flat['server_cpu_us_per_request']:.0f} µs of server CPU a request)  "
        f"[{verdict('requests_per_s')}]",
        f"  paced, {paced['connections']} connections: {paced['requests_per_s']:,.0f} "
        f"requests/s, p50 {paced['p50_ms']:.3f} ms, p99 {paced['p99_ms']:.3f} ms  "
        f"[{verdict('p99_ms')}]",
        f"  hostile clients: [{verdict('hostile')}]",
        f"  redis-benchmark, the same HGET, {ref['clients']} clients: "
        f"{ref['requests_per_s']:,.0f} requests/s; non-200 answers: {read['errors']}",
        "  server (one process each)                  req/s  µs CPU/req  p99 ms at ~700/s  "
        "RSS +MiB (other's worst s): pipeliner | endless header | padded URLs",
    ]
    for name, run in read["servers"].items():
        label = readservers.DESCRIPTION[name]
        if "skipped" in run:
            out.append(f"  {label:<42} skipped: {run['skipped']}")
            continue
        sieged = " | ".join(
            f"{h['growth_mib']:+.0f} ({h['other_worst_s']:.2f}"
            f"{', ' + str(h['other_unanswered']) + ' unanswered' if h['other_unanswered'] else ''})"
            for h in run["hostile"].values())
        out.append(f"  {label:<42} {run['throughput']['requests_per_s']:>6,.0f}  "
                   f"{run['throughput']['server_cpu_us_per_request']:>10.0f}  "
                   f"{run['paced']['p99_ms']:>16.3f}  {sieged}")
    return out
