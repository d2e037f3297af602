"""Link-count reads from a second process while a daemon drains: what an API asking for a
post's link counts waits under load.

    REDIS_URL=... python bench/readlatency.py KEYS.json

Reads ``KEYS_PER_READ`` normalized links at a time through ``LinkCounter.counts`` (what
`workers links count` does), ``READS_PER_SECOND`` times a second, until SIGTERM; then prints
one JSON object: reads, p50 and p99 in milliseconds.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from pathlib import Path

from workers.adapters.redisconn import connect
from workers.core.settings import Settings
from workers.domain.links.counter import LinkCounter

KEYS_PER_READ = 5
# Paced, not flat out: the reader must not take the cores the daemon it measures needs.
READS_PER_SECOND = 200


class Stop(Exception):
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise Stop


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def main() -> None:
    keys = json.loads(Path(sys.argv[1]).read_text())
    settings = Settings.from_env()
    counter = LinkCounter(connect(settings.redis_url), buckets=settings.link_buckets)
    rng = random.Random(7)
    latencies: list[float] = []
    signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            batch = rng.sample(keys, min(KEYS_PER_READ, len(keys)))
            started = time.perf_counter()
            counter.counts(batch)
            latencies.append(time.perf_counter() - started)
            time.sleep(max(0.0, 1 / READS_PER_SECOND - latencies[-1]))
    except Stop:
        pass
    latencies.sort()
    print(json.dumps({"reads": len(latencies), "keys_per_read": KEYS_PER_READ,
                      "reads_per_s_target": READS_PER_SECOND,
                      "p50_ms": percentile(latencies, 0.50) * 1000,
                      "p99_ms": percentile(latencies, 0.99) * 1000,
                      "max_ms": (latencies[-1] if latencies else 0.0) * 1000}))


if __name__ == "__main__":
    main()
