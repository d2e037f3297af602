"""Every action on the console (login, failed login, logout, replay, purge, cancel, scale):
time, user, action, target, result. A JSON log line, and a Redis list newest first, kept to the
latest AUDIT_KEEP, so the audit log survives a restart and every console shows the same."""

from __future__ import annotations

import json
import time
from typing import Any

from workers.adapters.redisconn import Client
from workers.runtime import logs

KEY = "console:audit"
# Months of a small team's actions; a few MB at most.
AUDIT_KEEP = 10_000


class Audit:
    def __init__(self, client: Client, key: str = KEY):
        self.client = client
        self.key = key
        self.log = logs.get(program="console")

    def record(self, user: str, action: str, target: str, result: str,
               **detail: Any) -> dict[str, Any]:
        entry = {"time": round(time.time(), 3), "user": user, "action": action,
                 "target": target, "result": result, **detail}
        self.log.info("console.audit", **entry)
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(self.key, json.dumps(entry))
        pipe.ltrim(self.key, 0, AUDIT_KEEP - 1)
        pipe.execute()
        return entry

    def latest(self, limit: int = 100) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.client.lrange(self.key, 0, limit - 1)]
