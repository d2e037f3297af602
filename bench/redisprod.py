"""What each way of running the counters' Redis in production costs per message.

One client counts post-sent messages (2 links each, through ``LinkCounter.record`` as a
daemon does) ten at a time, one after another, against a redis-server of its own on loopback,
set up as docs/redis.rst lists: no persistence, AOF
with ``appendfsync everysec`` or ``always``, a replica, and a replica each count waits for
(``WORKERS_REDIS_WAIT_REPLICAS=1``: a WAIT at the end of each message's counting pipeline).
For each: the median wall time of a batch over 10, in ms per message, and the extra over no
persistence; WAIT's own cost is the difference of the two replica rows. Loopback and one
disk: a remote replica adds its round trip to every WAIT.

    .venv/bin/python bench/redisprod.py [--batches 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import checkout_path  # noqa: F401  (first: devstack and tests/support on sys.path)

# isort: split
import procstat
import redis

import devstack
from workers.adapters import redisconn
from workers.domain.links.counter import LinkCounter

BATCH = 10  # messages a receive brings, and so a WAIT covers
LINKS_PER_MESSAGE = 2
# Each setup: redis-server's arguments, and the replicas a count waits for (0: no replica).
SETUPS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "no persistence": ((), None),
    "AOF everysec": (("--appendonly", "yes", "--appendfsync", "everysec"), None),
    "AOF always": (("--appendonly", "yes", "--appendfsync", "always"), None),
    "replica, no WAIT": ((), 0),
    "replica, WAIT 1": ((), 1),
    "AOF always + replica, WAIT 1": (("--appendonly", "yes", "--appendfsync", "always"), 1),
}


def batch_seconds(counter: LinkCounter, batches: int, seed: int) -> list[float]:
    """Each batch's seconds: ten messages counted one after another, as a daemon's lane does."""
    times = []
    for b in range(batches):
        started = time.perf_counter()
        for m in range(BATCH):
            counter.record(f"u{seed}-{b}-{m}", [f"site{(b * BATCH + m + i) % 5000}.example/post"
                                                for i in range(LINKS_PER_MESSAGE)])
        times.append(time.perf_counter() - started)
    return times


def measure(name: str, batches: int) -> float:
    """Median ms per message under setup ``name``."""
    extra, replicas = SETUPS[name]
    primary = devstack.redis_server(extra=extra).start()
    procstat.remember(primary.proc.pid)
    replica = None
    try:
        if replicas is not None:
            replica = devstack.redis_replica(primary.port).start()
            procstat.remember(replica.proc.pid)
            probe = redis.Redis(port=replica.port)
            while probe.info("replication").get("master_link_status") != "up":
                time.sleep(0.05)
        counter = LinkCounter(redisconn.connect(f"redis://127.0.0.1:{primary.port}/0"),
                              replicas=replicas or 0)
        batch_seconds(counter, 20, seed=0)  # warm: script loaded
        return statistics.median(batch_seconds(counter, batches, seed=1)) / BATCH * 1000
    finally:
        for service in (replica, primary):
            if service is not None:
                service.discard()


def run(batches: int) -> dict[str, Any]:
    """Per setup: ms per message, and the extra over no persistence."""
    measured = {name: measure(name, batches) for name in SETUPS}
    base = measured["no persistence"]
    return {name: {"ms_per_message": ms, "extra_ms": ms - base} for name, ms in measured.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=300, help="batches of 10 per setup")
    args = parser.parse_args()
    print("\n".join(lines(run(args.batches))))


def lines(results: dict[str, Any]) -> list[str]:
    out = [f"{'setup':32} {'ms/message':>11} {'extra':>8}"]
    for name, r in results.items():
        out.append(f"{name:32} {r['ms_per_message']:11.3f} {r['extra_ms']:+8.3f}")
    return out


if __name__ == "__main__":
    main()
