"""publish: send a scheduled post to its network exactly once, then start the rest.

The update's state machine (workers/social/publications.py) decides what a delivery does:
post, resolve an earlier attempt whose outcome is unknown, wait for another holder, or only
chain what follows a post (post-sent, a delayed analytics, Pusher ``update-published``).
README.rst, "Publishing exactly once", lists each crash point and what the next delivery does.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Sequence

from pydantic import model_validator

from workers.peers.aws import AWS_ERRORS
from workers.peers.redisconn import REDIS_ERRORS
from workers.producer import SendError
from workers.queues import before_ack, queue
from workers.runtime import tracing
from workers.runtime.deps import Deps
from workers.runtime.errors import PermanentError, TransientError
from workers.runtime.events import Event, Id
from workers.social.posting import (
    Created,
    Draft,
    Duplicate,
    OutcomeUnknown,
    Poster,
    RateLimited,
)
from workers.social.publications import Claim, Publication

# Every http(s) URL in a post's text; what ends a sentence around it is cut off (SPEC.md).
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""
# Each network's longest text; longer is refused by the network anyway (a permanent error).
MAX_TEXT_CHARS = 63_206  # Facebook's; X counts 280 its own way, LinkedIn 3,000


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
                             retry_after=claim.wait, deferred=True)
    token = deps.credentials.token(event.profile_id, event.service)
    poster = deps.social[event.service]
    draft = Draft(event.text, event.link, event.target)
    try:
        created = _attempt(poster, token, draft, claim)
    except RateLimited as exc:  # refused before anything was created
        deps.rate_limits.block(event.service, event.profile_id, until=exc.until,
                               seconds=exc.retry_after)
        deps.publications.release(event.update_id, claim, tried=claim.tried)
        raise
    except OutcomeUnknown:  # it may exist: whoever comes next resolves it first
        deps.publications.release(event.update_id, claim, tried=True)
        raise
    except (PermanentError, TransientError):  # refused, or a lookup failed: nothing posted
        deps.publications.release(event.update_id, claim, tried=claim.tried)
        raise
    published = deps.publications.record(event.update_id, event.service, created.post_id)
    if created.exhausted_until is not None:  # that call spent the window: the next must wait
        deps.rate_limits.block(event.service, event.profile_id, until=created.exhausted_until)
    return published


def _attempt(poster: Poster, token: str, draft: Draft, claim: Claim) -> Created:
    """The post: found (an earlier attempt created it) or created now."""
    if claim.tried:
        found = poster.find(token, draft)
        if found:
            return Created(found)
    try:
        return poster.create(token, draft)
    except Duplicate as dup:
        if not claim.tried:  # the author posted this text themselves: not ours to claim
            raise PermanentError(f"{dup.reason} (a first attempt: posted by someone "
                                 "else)") from None
        # Our earlier attempt created it; the answer may not say which post that is. Past the
        # author's recent posts it stays unknown: published all the same (its links count;
        # its engagement cannot be fetched without the id).
        return Created(dup.existing_id or poster.find(token, draft) or "")


def post_urls(text: str, link: str | None) -> list[str]:
    """``link`` and every http(s) URL of ``text``, each once, in order, with trailing
    punctuation cut off (SPEC.md)."""
    found = ([link] if link else []) + [m.group(0).rstrip(_TRAILING) for m in _URL.finditer(text)]
    return list(dict.fromkeys(url for url in found if url))
