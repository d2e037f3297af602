"""A point a minute per queue (visible, in flight, DLQ, handled), kept 72 hours in Redis, so a
queue's history survives a console's restart and every console shows the same.

One console writes each minute, however many run: the first to ``SET NX`` that minute's lock
takes the sample (from its shared snapshot) and writes the points; the others skip it.
"handled" is the messages handled in that minute, from the snapshot's rate.
"""

from __future__ import annotations

import json
import time
from typing import Any

from workers.adapters.redisconn import Client

KEEP_SECONDS = 72 * 60 * 60
MINUTE = 60


def key(queue: str) -> str:
    return f"console:history:{queue}"


class History:
    def __init__(self, client: Client):
        self.client = client

    def claim(self, minute: int) -> bool:
        """Whether this console writes ``minute``'s points (one console a minute)."""
        return bool(self.client.set(f"console:history-lock:{minute}", 1, nx=True,
                                    ex=2 * MINUTE))

    def record(self, minute: int, rows: list[dict[str, Any]]) -> None:
        t = minute * MINUTE
        pipe = self.client.pipeline(transaction=False)
        for row in rows:
            point = {"t": t, "visible": row["visible"], "in_flight": row["in_flight"],
                     "dlq": row["dlq"],
                     "handled": round((row["handled_per_s"] or 0) * MINUTE)}
            pipe.zremrangebyscore(key(row["queue"]), t, t)  # one point a minute
            pipe.zadd(key(row["queue"]), {json.dumps(point): t})
            pipe.zremrangebyscore(key(row["queue"]), "-inf", t - KEEP_SECONDS)
        pipe.execute()

    def points(self, queue: str, minutes: int, now: float | None = None) -> list[dict[str, Any]]:
        since = (now or time.time()) - minutes * MINUTE
        found: list[Any] = self.client.zrangebyscore(key(queue), since, "+inf")
        return [json.loads(raw) for raw in found]


def current_minute(now: float | None = None) -> int:
    return int((now or time.time()) // MINUTE)
