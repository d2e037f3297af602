"""What handlers need from the outside world, made once per process, lazily."""

from __future__ import annotations

from functools import cached_property

import redis

from workers import archive, links, sqs
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

    @cached_property
    def archive(self) -> archive.Archive | None:
        """The S3 link archive, or None when WORKERS_ARCHIVE_BUCKET is unset."""
        if not self.settings.archive_bucket:
            return None
        return archive.Archive(sqs.client(self.settings, "s3"), self.settings.archive_bucket)
