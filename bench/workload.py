"""The post-sent events a throughput run consumes, and the counts they must leave in Redis.

Each event has its own update_id and names 1-3 links from a shared pool, written the ways
real posts write them (scheme, ``www.``, case, ``utm_*`` tags, fragments), sometimes twice in
one post: normalization and per-post dedup are part of the measured work, and the expected
counts are known without asking the code under test.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field

from workers.domain.links.urls import normalize_url

WORDS = ("growth", "social", "media", "tips", "strategy", "brand", "engagement", "content",
         "calendar", "twitter", "analytics", "launch", "story", "guide", "remote", "team")
# Enough links that counters spread over many hashes, few enough that most count several times.
DEFAULT_POOL = 1000


@dataclass
class Workload:
    bodies: list[str]
    expected: Counter[str] = field(default_factory=Counter)  # normalized key -> count

    @property
    def pairs(self) -> int:
        """Distinct (update_id, key) pairs: what the counters must add up to."""
        return sum(self.expected.values())

    @property
    def keys(self) -> list[str]:
        return sorted(self.expected)


def pool_keys(size: int, rng: random.Random) -> list[str]:
    keys = []
    for i in range(size):
        host = f"{rng.choice(WORDS)}{i % 97}.example.com"
        slug = "-".join(rng.sample(WORDS, 3))
        query = f"?id={i}" if i % 5 == 0 else ""
        keys.append(f"{host}/blog/{slug}-{i}{query}")
    return keys


def spell(key: str, rng: random.Random) -> str:
    """One of the many URLs that normalize to ``key``."""
    host, _, rest = key.partition("/")
    host = ("www." if rng.random() < 0.3 else "") + (host.upper() if rng.random() < 0.1 else host)
    url = f"{rng.choice(('http', 'https'))}://{host}/{rest}"
    if rng.random() < 0.4:
        url += ("&" if "?" in url else "?") + "utm_source=buffer&utm_medium=social"
    if rng.random() < 0.2:
        url += "#comments"
    return url


def build(messages: int, run_id: str, pool_size: int = DEFAULT_POOL,
          seed: int = 1480431305) -> Workload:
    rng = random.Random(seed)
    pool = pool_keys(pool_size, rng)
    workload = Workload(bodies=[])
    for n in range(messages):
        keys = rng.sample(pool, rng.randint(1, 3))
        named = keys + keys[:1] if rng.random() < 0.1 else keys  # twice in one post: counts once
        urls = [spell(k, rng) for k in named]
        for url, key in zip(urls, named, strict=True):
            # A bench bug, not the daemon's: the spelled URL must normalize back to its key.
            assert normalize_url(url) == key, (url, key)
        event = {"update_id": f"{run_id}-{n:07d}", "profile_id": str(rng.randrange(10**6)),
                 "created_at": "1480431305", "service": "twitter"}
        if len(urls) == 1:
            event["url"] = urls[0]
        else:
            event["urls"] = urls
        workload.bodies.append(json.dumps(event, separators=(",", ":")))
        workload.expected.update(keys)
    return workload
