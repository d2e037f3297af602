"""publish: send a scheduled post to its network exactly once, then start the rest.

The update's state machine (workers/domain/publishing/publications.py) decides what a delivery does:
post, resolve an earlier attempt whose outcome is unknown, wait for another holder, or only
chain what follows a post (post-sent, a delayed analytics, Pusher ``update-published``).
README.rst, "Publishing exactly once", lists each crash point and what the next delivery does.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Sequence

from pydantic import model_validator

from workers.adapters import tracing
from workers.adapters.aws import AWS_ERRORS
from workers.adapters.networks.posting import (
    Created,
    Draft,
    Duplicate,
    OutcomeUnknown,
    Poster,
    RateLimited,
)
from workers.adapters.producer import SendError
from workers.adapters.redisconn import REDIS_ERRORS
from workers.core.errors import PermanentError, TransientError
from workers.core.events import Event, Id
from workers.domain.publishing.publications import Claim, Publication
from workers.queues import before_ack, queue
from workers.runtime.deps import Deps

# Every http(s) URL in a post's text; what ends a sentence around it is cut off (SPEC.md).
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""
# Each network's longest text; longer is refused by the network anyway (a permanent error).
MAX_TEXT_CHARS = 63_206  # Facebook's; X counts 280 its own way, LinkedIn 3,000
# A copy that meets another holder's claim looks again this soon, not when its lease would
# end (60 s): the holder is usually done in well under a second, and a wait spends no receive.
CLAIM_RECHECK_SECONDS = 5
# A found post is this update's if created at or after its first attempt by Redis's clock,
# less this for the network's clock being behind Redis's (SPEC.md).
CLOCK_MARGIN_SECONDS = 60


class Publish(Event):
    update_id: Id
    profile_id: Id
    service: Literal["twitter", "facebook", "linkedin"]
    text: str
    link: str | None = None
    target: str | None = None

    @model_validator(mode="after")
    def _needs_target(self) -> "Publish":
        if not self.text.strip():
            raise ValueError("text must not be empty")
        if len(self.text) > MAX_TEXT_CHARS:
            raise ValueError(f"text is longer than {MAX_TEXT_CHARS} characters")
        if self.service == "facebook" and not self.target:
            raise ValueError("target (the page id) is required for facebook")
        if self.service == "linkedin" and not (self.target or "").startswith("urn:li:"):
            raise ValueError("target (the author URN, urn:li:person:... or "
                             "urn:li:organization:...) is required for linkedin")
        return self


# Waits on the networks (seconds per post at worst): one process of 20 handlers to start.
@queue("publish", schema=Publish, procs=1, port_block=4)
def publish(event: Publish, deps: Deps) -> dict[str, Any]:
    """Posts the update unless it is published; what follows a post is chain_batch's."""
    try:
        published = deps.publications.get(event.update_id) or _post(event, deps)
    except REDIS_ERRORS as exc:
        raise TransientError(f"redis unavailable: {type(exc).__name__}: {exc}") from None
    return {"service": published.service, "service_update_id": published.service_update_id}


@before_ack("publish")
def chain_batch(deps: Deps, events: Sequence[Event]) -> None:
    """For the batch's published updates not chained yet: post-sent and a delayed analytics,
    each in one batch call, then the chained marks, then Pusher. If any of it fails, the
    batch's messages come back, find their posts published, and chain (enqueuing twice is
    harmless: post-sent counts once, analytics overwrites)."""
    updates = {e.update_id: e for e in events if isinstance(e, Publish)}
    try:
        todo = deps.publications.unchained(list(updates))
        if not todo:
            return
        sent = [_post_sent(updates[u], p) for u, p in todo.items()]
        fetched = [u for u, p in todo.items() if p.service_update_id]
        fetch = [_analytics(updates[u], todo[u]) for u in fetched]
        # With tracing on, each is sent in its publish message's trace.
        deps.producer.send_many("post-sent", sent,
                                parents=tracing.parents_of(updates[u] for u in todo))
        if fetch:
            deps.producer.send_many("analytics", fetch,
                                    delay_seconds=deps.settings.analytics_delay,
                                    parents=tracing.parents_of(updates[u] for u in fetched))
        deps.publications.mark_chained(list(todo))
    except REDIS_ERRORS as exc:
        raise TransientError(f"chaining after the posts: redis unavailable: "
                             f"{type(exc).__name__}: {exc}") from None
    except (SendError, *AWS_ERRORS) as exc:  # published all the same: the next delivery chains
        raise TransientError(f"chaining after the posts: {exc}") from None
    for update_id, published in todo.items():
        event = updates[update_id]
        deps.notifier.update_published(event.profile_id, update_id, published.service,
                                       published.service_update_id)


def _post_sent(event: Publish, published: Publication) -> dict[str, Any]:
    return {"update_id": event.update_id, "profile_id": event.profile_id,
            "service": published.service, "created_at": published.published_at,
            "urls": post_urls(event.text, event.link)}


def _analytics(event: Publish, published: Publication) -> dict[str, Any]:
    return {"update_id": event.update_id, "profile_id": event.profile_id,
            "service": published.service, "service_update_id": published.service_update_id}


def _post(event: Publish, deps: Deps) -> Publication:
    deps.rate_limits.check(event.service, event.profile_id)
    claim = deps.publications.claim(event.update_id)
    if claim.done:  # another delivery published it since we looked (done follows the record)
        published = deps.publications.get(event.update_id)
        if published is None:  # its record deleted by hand: never post without a claim
            raise PermanentError(f"update {event.update_id} is marked published, but "
                                 f"published:{event.update_id} is gone")
        return published
    if claim.wait:
        raise TransientError("another daemon is publishing this update",
                             retry_after=min(claim.wait, CLAIM_RECHECK_SECONDS), deferred=True)
    token = deps.credentials.token(event.profile_id, event.service)
    poster = deps.social[event.service]
    draft = Draft(event.text, event.link, event.target)
    try:
        with deps.publications.holding(event.update_id, claim):
            created = _attempt(poster, token, draft, claim)
    except RateLimited as exc:  # refused before anything was created
        deps.rate_limits.block(event.service, event.profile_id, seconds=exc.retry_after)
        deps.publications.release(event.update_id, claim, tried=claim.tried)
        raise
    except OutcomeUnknown:  # it may exist: whoever comes next resolves it first
        deps.publications.release(event.update_id, claim, tried=True)
        raise
    except (PermanentError, TransientError):  # refused, or a lookup failed: nothing posted
        deps.publications.release(event.update_id, claim, tried=claim.tried)
        raise
    published = deps.publications.record(event.update_id, event.service, created.post_id)
    if created.exhausted_for is not None:  # that call spent the window: the next must wait
        deps.rate_limits.block(event.service, event.profile_id, seconds=created.exhausted_for)
    return published


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
