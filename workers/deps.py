"""What handlers need from the outside world, made once per process, lazily."""

from __future__ import annotations

from functools import cached_property

import redis

from workers import links
from workers.settings import Settings


class Deps:
    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def redis(self) -> redis.Redis:
        return links.connect(self.settings.redis_url)

    @cached_property
    def links(self) -> links.LinkCounter:
        return links.LinkCounter(self.redis, buckets=self.settings.link_buckets)
