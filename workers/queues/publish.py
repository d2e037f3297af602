"""publish: send a scheduled post to its network exactly once, then start the rest.

The update's state machine (workers/domain/publishing/publications.py) decides what a delivery does:
post, resolve an earlier attempt whose outcome is unknown, wait for another holder, or only
chain what follows a post (post-sent, a delayed analytics, Pusher ``update-published``).
docs/publishing.rst, "Publishing exactly once", lists each crash point and what the next
delivery does.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from workers.adapters import networks, tracing
from workers.adapters.aws import AWS_ERRORS
from workers.adapters.networks.posting import (
    Created,
    Draft,
    Duplicate,
    OutcomeUnknown,
    Poster,
    RateLimited,
)
from workers.adapters.notify import Notifier
from workers.adapters.producer import Producer, SendError
from workers.adapters.redisconn import Client
from workers.core.errors import PermanentError, TransientError
from workers.core.events import Event, Publish
from workers.core.settings import Settings
from workers.domain.publishing.credentials import CredentialStore, RedisCredentials
from workers.domain.publishing.publications import Claim, Publication, Publications
from workers.domain.publishing.ratelimits import RateLimits
from workers.runtime.consumer import Handlers

# Every http(s) URL in a post's text; what ends a sentence around it is cut off (SPEC.md).
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""
# A copy that meets another holder's claim looks again this soon, not when its lease would
# end (60 s): the holder is usually done in well under a second, and a wait spends no receive.
CLAIM_RECHECK_SECONDS = 5
# A found post is this update's if created at or after its first attempt by Redis's clock,
# less this for the network's clock being behind Redis's (SPEC.md).
CLOCK_MARGIN_SECONDS = 60


class PublishUpdate:
    def __init__(self, publications: Publications, rate_limits: RateLimits,
                 credentials: CredentialStore, networks: Mapping[str, Poster],
                 producer: Producer, notifier: Notifier, *, analytics_delay: int):
        self.publications = publications
        self.rate_limits = rate_limits
        self.credentials = credentials
        self.networks = networks
        self.producer = producer  # chains post-sent and a delayed analytics
        self.notifier = notifier
        self.analytics_delay = analytics_delay

    def handle(self, event: Publish) -> dict[str, Any]:
        """Posts the update unless it is published; what follows a post is chain_batch's."""
        published = self.publications.get(event.update_id) or self._post(event)
        return {"service": published.service,
                "service_update_id": published.service_update_id}

    def chain_batch(self, events: Sequence[Event]) -> None:
        """For the batch's published updates not chained yet: post-sent and a delayed
        analytics, each in one batch call, then the chained marks, then Pusher. If any of it
        fails, the batch's messages come back, find their posts published, and chain
        (enqueuing twice is harmless: post-sent counts once, analytics overwrites)."""
        updates = {e.update_id: e for e in events if isinstance(e, Publish)}
        todo = self.publications.unchained(list(updates))
        if not todo:
            return
        try:
            self._chain(updates, todo)
        except (SendError, *AWS_ERRORS) as exc:  # published all the same: the next one chains
            raise TransientError(f"chaining after the posts: {exc}") from None
        self.publications.mark_chained(list(todo))
        for update_id, published in todo.items():
            event = updates[update_id]
            self.notifier.update_published(event.profile_id, update_id, published.service,
                                           published.service_update_id)

    def _chain(self, updates: dict[str, Publish], todo: dict[str, Publication]) -> None:
        sent = [_post_sent(updates[u], p) for u, p in todo.items()]
        fetched = [u for u, p in todo.items() if p.service_update_id]
        fetch = [_analytics(updates[u], todo[u]) for u in fetched]
        # With tracing on, each is sent in its publish message's trace.
        self.producer.send_many("post-sent", sent,
                                parents=tracing.parents_of(updates[u] for u in todo))
        if fetch:
            self.producer.send_many("analytics", fetch, delay_seconds=self.analytics_delay,
                                    parents=tracing.parents_of(updates[u] for u in fetched))

    def _post(self, event: Publish) -> Publication:
        self.rate_limits.check(event.service, event.profile_id)
        claim = self.publications.claim(event.update_id)
        if claim.done:  # another delivery published it since we looked (done follows the record)
            published = self.publications.get(event.update_id)
            if published is None:  # its record deleted by hand: never post without a claim
                raise PermanentError(f"update {event.update_id} is marked published, but "
                                     f"published:{event.update_id} is gone")
            return published
        if claim.wait:
            raise TransientError("another daemon is publishing this update",
                                 retry_after=min(claim.wait, CLAIM_RECHECK_SECONDS),
                                 deferred=True)
        token = self.credentials.token(event.profile_id, event.service)
        created = self._attempt_held(event, claim, token)
        published = self.publications.record(event.update_id, event.service, created.post_id)
        if created.exhausted_for is not None:  # that call spent the window: the next must wait
            self.rate_limits.block(event.service, event.profile_id,
                                   seconds=created.exhausted_for)
        return published

    def _attempt_held(self, event: Publish, claim: Claim, token: str) -> Created:
        """The attempt under the claim's lease; the claim released when nothing was posted
        (or the outcome is unknown: whoever comes next resolves it first)."""
        draft = Draft(event.text, event.link, event.target)
        try:
            with self.publications.holding(event.update_id, claim):
                return _attempt(self.networks[event.service], token, draft, claim)
        except RateLimited as exc:  # refused before anything was created
            self.rate_limits.block(event.service, event.profile_id, seconds=exc.retry_after)
            self.publications.release(event.update_id, claim, tried=claim.tried)
            raise
        except OutcomeUnknown:  # it may exist: whoever comes next resolves it first
            self.publications.release(event.update_id, claim, tried=True)
            raise
        except (PermanentError, TransientError):  # refused, or a lookup failed: nothing posted
            self.publications.release(event.update_id, claim, tried=claim.tried)
            raise


def build(settings: Settings, redis: Client) -> Handlers:
    publish = PublishUpdate(Publications(redis, settings.publish_lease), RateLimits(redis),
                            RedisCredentials(redis), networks.apis(settings),
                            Producer(settings), Notifier.from_settings(settings),
                            analytics_delay=settings.analytics_delay)
    return Handlers(publish.handle, before_ack=(publish.chain_batch,))


def _post_sent(event: Publish, published: Publication) -> dict[str, Any]:
    return {"update_id": event.update_id, "profile_id": event.profile_id,
            "service": published.service, "created_at": published.published_at,
            "urls": post_urls(event.text, event.link)}


def _analytics(event: Publish, published: Publication) -> dict[str, Any]:
    return {"update_id": event.update_id, "profile_id": event.profile_id,
            "service": published.service, "service_update_id": published.service_update_id}


def _attempt(poster: Poster, token: str, draft: Draft, claim: Claim) -> Created:
    """The post: found (an earlier attempt created it) or created now. Only a post created
    since this update's first attempt began can be its own: an older one of the same text is
    the author's (a recurring post), and this update still goes out."""
    since = claim.first_attempt_at - CLOCK_MARGIN_SECONDS
    if claim.tried:
        found = poster.find(token, draft, since)
        if found:
            return Created(found)
    try:
        return poster.create(token, draft)
    except Duplicate as dup:
        if not claim.tried:  # the author posted this text themselves: not ours to claim
            raise PermanentError(f"{dup.reason} (a first attempt: posted by someone "
                                 "else)") from None
        if dup.existing_id:  # LinkedIn names the post; it offers no lookup to date it
            return Created(dup.existing_id)
        found = poster.find(token, draft, since)
        if found:
            return Created(found)
        # The network holds this text, but not as a post since our first attempt: the
        # author's own within the network's duplicate window, or ours not shown yet. Unknown
        # still: retried (resolved first), then the DLQ with this reason; never recorded as
        # published while nothing of ours went out.
        raise OutcomeUnknown(f"{dup.reason}; no post of this update's among the author's "
                             "recent ones since its first attempt") from None


def post_urls(text: str, link: str | None) -> list[str]:
    """``link`` and every http(s) URL of ``text``, each once, in order, with trailing
    punctuation cut off (SPEC.md)."""
    found = ([link] if link else []) + [m.group(0).rstrip(_TRAILING) for m in _URL.finditer(text)]
    return list(dict.fromkeys(url for url in found if url))
