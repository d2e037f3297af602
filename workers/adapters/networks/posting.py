"""Creating a post on a network, and what its answer means for "exactly once".

Each network's adapter (twitter.py, facebook.py, linkedin.py) says how to create a post
(``create``), how to recognise its answer to duplicate content (``duplicate``), and how to find
a post of ours among the author's recent ones (``find``, None where the network offers no
lookup): only a post the network says was created since the update's first attempt began,
since an older one of the same text is the author's own (a recurring "evergreen" post). This
module sorts every answer into what the publish handler must tell apart:

* the post's id: created (a 2xx without it is an unknown outcome);
* ``Duplicate``: the network already holds this content (maybe naming the existing post);
* ``RateLimited``: refused before anything was created, come back after ``retry_after``;
* ``OutcomeUnknown``: a timeout, a dropped connection or a 5xx: the post may exist;
* ``PermanentError``: refused (bad token, unknown page, invalid text), nothing created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from workers.adapters.networks.base import SocialAPI
from workers.core.errors import PermanentError, TransientError

# When a network says "too many" without saying until when.
DEFAULT_RATE_LIMIT_SECONDS = 60.0
# How a post's text is compared with the author's recent posts: whitespace runs are one space.
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Draft:
    """What one publish event asks a network to post."""

    text: str
    link: str | None = None
    target: str | None = None  # Facebook's page id, LinkedIn's author URN


@dataclass(frozen=True)
class Created:
    post_id: str
    # Seconds (by the network's clock) until the network takes calls of this token again
    # (its window ran out with this one), or None.
    exhausted_for: float | None = None


class Duplicate(Exception):
    """The network refused the post as duplicate content; ``existing_id`` when it names it."""

    def __init__(self, reason: str, existing_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.existing_id = existing_id


class RateLimited(TransientError):
    """Refused for the rate limit: nothing was created. ``retry_after``: seconds until the
    window resets, by the network's own clock (its ``Date``), never the worker's."""

    def __init__(self, reason: str, retry_after: float):
        super().__init__(reason, retry_after=retry_after, deferred=True)


class OutcomeUnknown(TransientError):
    """The post may or may not exist: resolve from the network before posting again."""


class Poster(SocialAPI):
    """A network's adapter that can also post; see the module's docstring."""

    def create(self, token: str, draft: Draft) -> Created:
        try:
            response = self.send_create(token, draft)
        except TransientError as exc:  # timed out or dropped: it may have been created
            raise OutcomeUnknown(exc.reason) from None
        self.raise_for_answer(response, "a new post", token, creating=True)
        try:
            post_id = self.created_id(response)
        except ValueError:  # a 2xx whose body is not JSON
            post_id = None
        if not post_id:  # it says created, not which post: resolve it as any unknown outcome
            raise OutcomeUnknown(f"{self.service} api answered {response.status_code} "
                                 "to a new post without its id")
        return Created(post_id, self.exhausted_for(response))

    def find(self, token: str, draft: Draft, since: float) -> str | None:
        """The id of the author's recent post with ``draft``'s content that the network says
        was created at or after ``since`` (Unix seconds); None if none is there or the
        network offers no way to look."""
        return None

    # -- what each network says -------------------------------------------------------------

    def send_create(self, token: str, draft: Draft) -> requests.Response:
        raise NotImplementedError

    def created_id(self, response: requests.Response) -> str | None:
        """The new post's id in a 2xx answer; None (or ValueError) when it names none."""
        raise NotImplementedError

    def duplicate(self, response: requests.Response, body: Any) -> Duplicate | None:
        """The answer as duplicate content, or None when it is another error."""
        return None

    def rate_limited(self, response: requests.Response, body: Any) -> bool:
        return response.status_code == 429

    def exhausted_for(self, response: requests.Response) -> float | None:
        """Seconds until the window resets when this answer spent it, else None."""
        return None

    # -- sorting answers --------------------------------------------------------------------

    def raise_for_answer(self, response: requests.Response, what: str, token: str,
                         creating: bool = False) -> None:
        """Nothing for a 2xx; else the exception its answer means (see the module)."""
        if 200 <= response.status_code < 300:
            return
        body = json_or_none(response)
        reason = self._reason(response, what, token)
        duplicate = self.duplicate(response, body)
        if duplicate is not None:
            raise duplicate
        if self.rate_limited(response, body):
            raise RateLimited(reason, self.retry_after(response) or DEFAULT_RATE_LIMIT_SECONDS)
        if self.is_transient(response):
            raise (OutcomeUnknown if creating else TransientError)(reason)
        raise PermanentError(reason)

    def get_json(self, path: str, token: str, what: str, **params: Any) -> Any:
        """A lookup's answer as JSON; its failures as for any call (a lookup creates nothing)."""
        response = self.call("GET", path, token, params=params)
        self.raise_for_answer(response, what, token)
        body = json_or_none(response)
        if body is None:
            raise TransientError(f"{self.service} api answered {what} with no JSON")
        return body


def json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def same_text(a: str, b: str) -> bool:
    return _SPACES.sub(" ", a).strip() == _SPACES.sub(" ", b).strip()


def created_since(stamp: Any, since: float) -> bool:
    """Whether a network's creation time (ISO 8601: X's ``2026-12-04T10:00:00.000Z``, Graph's
    ``2026-12-04T10:00:00+0000``) is at or after ``since``; False when it says none."""
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:
        return False
    return when.tzinfo is not None and when.timestamp() >= since


__all__ = ["Created", "Draft", "Duplicate", "OutcomeUnknown", "Poster", "RateLimited",
           "created_since", "same_text"]
