"""Each update's publication in Redis: the state machine that posts it exactly once.

Two hashes per update (docs/publishing.rst, "Publishing exactly once", walks through every
crash point):

* ``publishing:{update_id}``: the attempts, a claim (``workers.adapters.claims``). ``owner``
  and ``lease_until`` (Redis's clock, ms) while one handler holds the update, renewed while its
  call to the network runs; ``tried`` = 1 once a create call may have reached the network, so
  the next holder resolves that attempt before posting; ``first_at`` (Redis's clock, ms) when
  the update was first claimed, kept for every later attempt and replay: a post found by the
  lookup is this update's only if created since; ``state`` = ``done`` once published,
  ``chained`` = 1 once post-sent and analytics were enqueued. Kept 30 days.
* ``published:{update_id}`` (SPEC.md): ``service``, ``service_update_id``, ``published_at``;
  written once (``Claims.write_once``), the first record winning, never expiring.

Both are written by single-key scripts, so they work on Redis Cluster without a shared slot;
the order they run in (the attempt is claimed, then the post recorded, then the attempt marked
done) makes every interleaving safe: a holder that finds ``done`` reads ``published``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Sequence

from workers.adapters.claims import Claims
from workers.adapters.redisconn import Client
from workers.core.settings import DEFAULT_PUBLISH_LEASE

# How long an attempt's state outlives its last change: a replay from the DLQ within this
# still knows the update was tried (published:{update_id} never expires).
ATTEMPT_TTL_SECONDS = 30 * 86400


@dataclass(frozen=True)
class Publication:
    service: str
    service_update_id: str
    published_at: int


@dataclass(frozen=True)
class Claim:
    """What claiming an update found: ``done`` (published already), ``wait`` seconds (another
    holder's lease), or ours, with ``tried`` when an earlier attempt's outcome is unknown.
    ``first_attempt_at``: when the update was first claimed (Unix seconds, Redis's clock)."""

    owner: str
    done: bool = False
    wait: float = 0.0
    tried: bool = False
    first_attempt_at: float = 0.0


class Publications:
    def __init__(self, client: Client, lease_seconds: float = DEFAULT_PUBLISH_LEASE):
        self.client = client
        self.claims = Claims(client, lease_seconds, ATTEMPT_TTL_SECONDS, name="publish-leases")

    def get(self, update_id: str) -> Publication | None:
        return _publication(self.client.hgetall(published_key(update_id)))

    def unchained(self, update_ids: Sequence[str]) -> dict[str, Publication]:
        """Of ``update_ids``, those published but not yet chained, with their publication:
        one round trip (a pipeline) for a whole batch."""
        pipe = self.client.pipeline(transaction=False)
        for update_id in update_ids:
            pipe.hgetall(published_key(update_id))
            pipe.hget(attempt_key(update_id), "chained")
        answers = pipe.execute()
        found = {}
        for update_id, fields, chained in zip(update_ids, answers[::2], answers[1::2],
                                              strict=True):
            published = _publication(fields)
            if published is not None and not chained:
                found[update_id] = published
        return found

    def claim(self, update_id: str) -> Claim:
        found = self.claims.claim(attempt_key(update_id))
        return Claim(found.owner, done=found.done, wait=found.wait,
                     tried=found.ours and found.tried, first_attempt_at=found.first_at)

    def holding(self, update_id: str, claim: Claim) -> AbstractContextManager[None]:
        """Keeps ``claim``'s lease from running out while the block runs (its calls to the
        network): a second delivery waits for it however slow the network is."""
        return self.claims.holding(attempt_key(update_id), claim.owner)

    def release(self, update_id: str, claim: Claim, tried: bool) -> None:
        """Lets go of ``claim``; ``tried`` says whether a create call may have reached the
        network meanwhile (it stays set once set: only a known refusal restores it)."""
        self.claims.release(attempt_key(update_id), claim.owner, tried)

    def record(self, update_id: str, service: str, service_update_id: str) -> Publication:
        """Records the post, unless one was recorded first (then returns that one), and marks
        the attempt done (its lease let go: a delivery that looks now finds it published)."""
        fields = {"service": service, "service_update_id": service_update_id}
        published = _publication(self.claims.write_once(published_key(update_id), fields,
                                                        stamp="published_at"))
        assert published is not None  # write_once always leaves a record
        self.claims.done(attempt_key(update_id))
        return published

    def mark_chained(self, update_ids: Sequence[str]) -> None:
        """What follows these updates' posts is enqueued: one round trip for all of them."""
        pipe = self.client.pipeline(transaction=False)
        for update_id in update_ids:  # plain commands: a cluster's pipelines take no scripts
            pipe.hset(attempt_key(update_id), "chained", 1)
            pipe.expire(attempt_key(update_id), ATTEMPT_TTL_SECONDS)
        pipe.execute()


def attempt_key(update_id: str) -> str:
    return f"publishing:{update_id}"


def published_key(update_id: str) -> str:
    return f"published:{update_id}"


def _publication(fields: dict) -> Publication | None:
    if not fields:
        return None
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                          else v) for k, v in fields.items()}
    return Publication(text.get("service", ""), text.get("service_update_id", ""),
                       int(text.get("published_at") or 0))


__all__ = ["Claim", "Publication", "Publications", "attempt_key", "published_key"]
