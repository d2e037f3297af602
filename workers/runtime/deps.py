"""What handlers need from the outside world, made once per process, lazily."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from workers.adapters import aws, mail, notify, redisconn
from workers.adapters import networks as social
from workers.adapters.producer import Producer
from workers.core.settings import Settings
from workers.domain.links import archive
from workers.domain.links import counter as links
from workers.domain.publishing import engagement
from workers.domain.publishing.publications import Publications
from workers.domain.publishing.ratelimits import RateLimits
from workers.domain.sending import sent


class Deps:
    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def redis(self) -> redisconn.Client:
        return redisconn.connect(self.settings.redis_url)

    @cached_property
    def links(self) -> links.LinkCounter:
        return links.LinkCounter(self.redis, buckets=self.settings.link_buckets,
                                 replicas=self.settings.redis_wait_replicas)

    @cached_property
    def notifier(self) -> notify.Notifier:
        """Pusher, best effort; a no-op when PUSHER_* is unset."""
        return notify.Notifier.from_settings(self.settings)

    @cached_property
    def credentials(self) -> social.CredentialStore:
        return social.RedisCredentials(self.redis)

    @cached_property
    def social(self) -> dict[str, social.Poster]:
        """The social networks' APIs by service name."""
        return social.apis(self.settings)

    @cached_property
    def publications(self) -> Publications:
        """Each update's publication: the state machine that posts it exactly once."""
        return Publications(self.redis, self.settings.publish_lease)

    @cached_property
    def rate_limits(self) -> RateLimits:
        """The networks' rate limits, shared by the fleet."""
        return RateLimits(self.redis)

    @cached_property
    def producer(self) -> Producer:
        """Enqueues what follows a handler's work (publish chains post-sent and analytics)."""
        return Producer(self.settings)

    @cached_property
    def engagement(self) -> engagement.EngagementStore:
        return engagement.EngagementStore(self.redis)

    @cached_property
    def archive(self) -> archive.Archive | None:
        """The S3 link archive, or None when WORKERS_ARCHIVE_BUCKET is unset."""
        if not self.settings.archive_bucket:
            return None
        return archive.Archive(aws.client(self.settings, "s3"), self.settings.archive_bucket)

    @cached_property
    def sent_marks(self) -> sent.SentMarks:
        """Marks of the emails and pushes sent, so none is sent twice by a redelivery."""
        return sent.SentMarks(self.redis)

    # SNS and SES without botocore's retries: a retry after a timeout the service had already
    # accepted sends the message twice. A failed send is transient for us instead, released
    # and retried through SQS, with the sent mark checked first.
    @cached_property
    def sns(self) -> Any:
        """Amazon SNS, for mobile push."""
        return aws.client(self.settings, "sns", attempts=1)

    @cached_property
    def ses(self) -> Any:
        return aws.client(self.settings, "ses", attempts=1)

    @cached_property
    def mailer(self) -> mail.Mailer:
        """SES, or SMTP when WORKERS_EMAIL_BACKEND=smtp."""
        if self.settings.email_backend == "smtp":
            return mail.SMTPMailer.from_settings(self.settings)
        return mail.SESMailer(self.ses)
