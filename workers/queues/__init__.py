"""The queues' handlers, one module per queue, and the one place a daemon's are wired.

Each module has a handler class whose constructor names what it touches (a counter, a poster,
a notifier...) and a ``build(settings, redis)`` that makes those from the settings and hands
the consumer its ``Handlers`` (workers.runtime.consumer). Handlers raise TransientError or
PermanentError (workers.core.errors); Redis being away is the consumer's to say, for all.
A queue's name, schema, processes and ports are declared in workers/core/events.py.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Callable

from workers.adapters import redisconn
from workers.adapters.redisconn import Client
from workers.core.settings import Settings
from workers.queues import analytics, email, post_sent, publish, push
from workers.runtime.consumer import Consumer, Handlers

Build = Callable[[Settings, Client], Handlers]
BUILDS: dict[str, Build] = {"post-sent": post_sent.build, "analytics": analytics.build,
                            "push": push.build, "email": email.build, "publish": publish.build}


def handlers(queue: str, settings: Settings,
             redis: Callable[[], Client] | None = None) -> Callable[[], Handlers]:
    """What builds ``queue``'s handlers at its consumer's first batch, with ``redis``'s
    client (REDIS_URL's, made then, by default)."""
    client = redis or cache(lambda: redisconn.connect(settings.redis_url))
    return lambda: BUILDS[queue](settings, client())


def consumer_of(queue: str, settings: Settings, **options: Any) -> Consumer:
    """A consumer of ``queue`` with its handlers wired (``options`` are Consumer's)."""
    return Consumer(queue, settings, handlers=handlers(queue, settings), **options)


__all__ = ["BUILDS", "consumer_of", "handlers"]
