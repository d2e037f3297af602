"""analytics: fetch a post's engagement from its network, store it in Redis, tell Pusher."""

from __future__ import annotations

import time
from typing import Any

from workers.adapters.redisconn import REDIS_ERRORS
from workers.core.errors import TransientError
from workers.core.events import Analytics
from workers.queues import queue
from workers.runtime.deps import Deps


# Waits on the networks' APIs (and their rate limits): one process of 20 handlers to start.
@queue("analytics", schema=Analytics, procs=1, port_block=1)
def analytics(event: Analytics, deps: Deps) -> dict[str, Any]:
    token = deps.credentials.token(event.profile_id, event.service)
    counts = deps.social[event.service].engagement(event.service_update_id, token)
    fetched_at = int(time.time())
    fields = {**counts, "service": event.service, "service_update_id": event.service_update_id,
              "profile_id": event.profile_id}
    try:
        stored = deps.engagement.store(event.update_id, fields, fetched_at)
    except REDIS_ERRORS as exc:
        raise TransientError(f"redis unavailable: {type(exc).__name__}: {exc}") from None
    if stored:  # a newer fetch already told the browser
        deps.notifier.analytics_updated(event.profile_id, event.update_id, event.service,
                                        counts, fetched_at)
    return {"service": event.service, "stored": stored, **counts}
