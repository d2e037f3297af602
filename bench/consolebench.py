"""`make bench`'s console part: the console's SQS requests per second with 1 and with 50 pages
open on its live stream (GET /api/stream). One snapshot per interval is shared by every
stream, so both must be the same: 2 requests (a queue's and its DLQ's GetQueueAttributes) per
logical queue per interval, counted at a counting proxy in front of moto.

``count_requests`` is also what tests/test_console_live.py asserts with."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

import httpx

import devstack
from devstack import awsproxy

STREAMS = (1, 50)
# Snapshots counted per measure; a snapshot is one interval.
SNAPSHOTS = 3
REFRESH_SECONDS = 1
ACTION = "GetQueueAttributes"


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s")
        await asyncio.sleep(0.005)


async def _count(url: str, token: str, proxy_port: int, streams: int,
                 snapshots: int) -> dict[str, Any]:
    counts = [0] * streams
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=streams + 5)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, read=None), limits=limits) as client:
        async def read(i: int) -> None:
            async with client.stream("GET", f"{url}/api/stream", headers=headers) as answer:
                answer.raise_for_status()
                async for line in answer.aiter_lines():
                    if line == "event: queues":
                        counts[i] += 1

        readers = [asyncio.create_task(read(i)) for i in range(streams)]
        try:
            await _until(lambda: all(counts), 60)
            # Counted right after stream 0 gets a snapshot: the next is an interval away.
            seen = counts[0]
            await _until(lambda: counts[0] > seen, 30)
            before, started, first = _requests(proxy_port), time.monotonic(), counts[0]
            await _until(lambda: counts[0] >= first + snapshots, 30 + 10 * snapshots)
            after, elapsed = _requests(proxy_port), time.monotonic() - started
            low = min(counts)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    return {"streams": streams, "snapshots": snapshots, "requests": after - before,
            "seconds": round(elapsed, 3), "requests_per_s": round((after - before) / elapsed, 2),
            "fewest_events_on_a_stream": low}


def count_requests(url: str, token: str, proxy_port: int, streams: int,
                   snapshots: int = SNAPSHOTS) -> dict[str, Any]:
    """GetQueueAttributes requests the console at ``url`` made during ``snapshots`` snapshots
    while ``streams`` streams were open and reading."""
    return asyncio.run(_count(url, token, proxy_port, streams, snapshots))


def _requests(proxy_port: int) -> int:
    return int(awsproxy.fetch_counts(proxy_port)["requests"].get(ACTION, 0))


def measure(workdir: Path) -> dict[str, Any]:
    """A local stack of its own (moto behind the counting proxy, redis-server), one console;
    the requests per second with each number of STREAMS."""
    import subprocess
    import sys

    moto = devstack.moto_server(log_path=workdir / "console-moto.log").start()
    redis = devstack.redis_server(log_path=workdir / "console-redis.log").start()
    proxy = awsproxy.service(devstack.free_port(), moto.port, workdir / "console-proxy.log",
                             count=True)
    console = None
    try:
        proxy.start()
        users, port = workdir / "console-users", devstack.free_port()
        env = devstack.stack_env(moto.port, redis.port, WORKERS_CONSOLE_USERS=str(users),
                                 WORKERS_CONSOLE_PORT=str(port),
                                 WORKERS_CONSOLE_REFRESH=str(REFRESH_SECONDS),
                                 WORKERS_QUEUE_PREFIX="bench-console-")
        subprocess.run([sys.executable, "-m", "workers", "queues", "create"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        token = subprocess.run([sys.executable, "-m", "workers", "console", "token", "bench",
                                "--role", "viewer"], env=env, check=True, text=True,
                               capture_output=True).stdout.strip()
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"
        console = devstack.Service("console", [sys.executable, "-m", "workers", "console"],
                                   port, workdir / "console.log", env=env).start()
        url = f"http://127.0.0.1:{port}"
        return {"refresh_s": REFRESH_SECONDS,
                "runs": [count_requests(url, token, proxy.port, n) for n in STREAMS]}
    finally:
        for service in (console, proxy, redis, moto):
            if service is not None:
                service.stop()
        redis.discard()


def lines(result: dict[str, Any]) -> list[str]:
    """The part's figures, a line per number of streams."""
    return [f"console: {run['streams']:>2} stream(s): {run['requests']} GetQueueAttributes in "
            f"{run['snapshots']} snapshots, {run['requests_per_s']:g} requests/s"
            for run in result["runs"]] + [
        "console: " + ("the same SQS requests whatever the streams" if len(
            {r["requests"] for r in result["runs"]}) == 1 else "NOT the same requests")]
