"""What each way of running the counters' Redis in production costs per message.

One client counts post-sent messages (2 links each, as ``LinkCounter.record`` does for a
daemon) in batches of 10, one after another, against a redis-server of its own on loopback,
set up as README.rst's "Running the counters' Redis in production" lists: no persistence, AOF
with ``appendfsync everysec``, AOF with ``appendfsync always``, and the last with a replica and
``WORKERS_REDIS_WAIT_REPLICAS=1`` (one ``redisconn.wait_for_replicas`` per batch, as the
post-sent step issues it). For each: the median wall time of a batch over 10, in ms per
message, and the extra over no persistence. Loopback and one disk: a remote replica adds its
round trip to every WAIT.

    .venv/bin/python bench/redisprod.py [--batches 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import procstat
import redis

from workers import devstack, redisconn
from workers.links import LinkCounter
from workers.settings import REDIS_WAIT_TIMEOUT_MS

BATCH = 10  # messages a receive brings, and so a WAIT covers
LINKS_PER_MESSAGE = 2
SETUPS: dict[str, tuple[str, ...]] = {
    "no persistence": (),
    "AOF everysec": ("--appendonly", "yes", "--appendfsync", "everysec"),
    "AOF always": ("--appendonly", "yes", "--appendfsync", "always"),
    "replica, WAIT 1 a batch": (),
    "AOF always + replica, WAIT 1 a batch": ("--appendonly", "yes", "--appendfsync", "always"),
}


def batch_seconds(client: redis.Redis, batches: int, wait: bool,
                  seed: int) -> tuple[list[float], list[float]]:
    """Each batch's seconds in all, and those of its WAIT alone."""
    counter = LinkCounter(client)
    times, waits = [], []
    for b in range(batches):
        started = time.perf_counter()
        for m in range(BATCH):
            update = f"u{seed}-{b}-{m}"
            counter.record(update, [f"site{(b * BATCH + m + i) % 5000}.example/post"
                                    for i in range(LINKS_PER_MESSAGE)])
        counted = time.perf_counter()
        if wait:
            acknowledged = redisconn.wait_for_replicas(client, 1, REDIS_WAIT_TIMEOUT_MS)
            if acknowledged != 1:
                raise RuntimeError("the replica did not acknowledge a batch")
        done = time.perf_counter()
        times.append(done - started)
        waits.append(done - counted if wait else 0.0)
    return times, waits


def measure(name: str, batches: int) -> tuple[float, float]:
    """Median ms per message under setup ``name``, in all and in WAIT."""
    primary = devstack.redis_server(extra=SETUPS[name]).start()
    procstat.remember(primary.proc.pid)
    replica = None
    try:
        if "replica" in name:
            replica = devstack.redis_replica(primary.port).start()
            procstat.remember(replica.proc.pid)
            probe = redis.Redis(port=replica.port)
            while probe.info("replication").get("master_link_status") != "up":
                time.sleep(0.05)
        client = redisconn.connect(f"redis://127.0.0.1:{primary.port}/0")
        batch_seconds(client, 20, replica is not None, seed=0)  # warm: script loaded
        times, waits = batch_seconds(client, batches, replica is not None, seed=1)
        return (statistics.median(times) / BATCH * 1000,
                statistics.median(waits) / BATCH * 1000)
    finally:
        for service in (replica, primary):
            if service is not None:
                service.discard()


def run(batches: int) -> dict[str, Any]:
    """Per setup: ms per message in all, the extra over no persistence, and WAIT's share."""
    measured = {name: measure(name, batches) for name in SETUPS}
    base = measured["no persistence"][0]
    return {name: {"ms_per_message": ms, "extra_ms": ms - base, "wait_ms": wait_ms}
            for name, (ms, wait_ms) in measured.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=300, help="batches of 10 per setup")
    args = parser.parse_args()
    print("\n".join(lines(run(args.batches))))


def lines(results: dict[str, Any]) -> list[str]:
    out = [f"{'setup':40} {'ms/message':>11} {'extra':>8} {'of it WAIT':>11}"]
    for name, r in results.items():
        out.append(f"{name:40} {r['ms_per_message']:11.3f} {r['extra_ms']:+8.3f} "
                   f"{r['wait_ms']:11.3f}")
    return out


if __name__ == "__main__":
    main()
