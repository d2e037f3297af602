"""Start-up of ``workers run QUEUE``: wire the queue's handlers to a consumer, refuse a Redis
that may evict, then run the daemon until a warm stop (as workers/readapi/serve.py is the read
API's, and workers/console/serve.py the console's)."""

from __future__ import annotations

from functools import cache

from workers.adapters import redisconn
from workers.core.settings import Settings
from workers.queues import handlers
from workers.runtime.consumer import Consumer
from workers.runtime.daemon import Daemon


def serve(queue: str, settings: Settings, concurrency: int) -> int:
    """Runs until SIGTERM or SIGINT; the exit code. EvictionPolicyError when Redis may evict,
    at start or once a Redis away at start answers."""
    redis = cache(lambda: redisconn.connect(settings.redis_url))  # made at first use
    consumer = Consumer(queue, settings, handlers=handlers(queue, settings, redis),
                        concurrency=concurrency)
    # Before the first receive: a Redis that may evict would count redeliveries twice. One
    # that is away now is checked once it answers, and stops the daemon then if it may evict.
    watch = None
    if not redisconn.refuse_eviction(redis, consumer.log):
        watch = redisconn.EvictionWatch(redis, consumer.log, consumer.shutdown.request).start()
    code = Daemon(consumer).run()
    if watch is not None:
        watch.cancel()
        if watch.refused is not None:
            raise watch.refused
    return code
