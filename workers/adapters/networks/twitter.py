"""Twitter/X API v2: ``GET /2/tweets/{id}?tweet.fields=public_metrics`` (engagement),
``POST /2/tweets`` (publish), and the author's recent tweets to find one of ours again."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from workers.adapters.networks.base import dig, network, network_now, parse_retry_after
from workers.adapters.networks.posting import Draft, Duplicate, Poster, created_since, same_text
from workers.core.errors import PermanentError, TransientError

# X's answer to a text its author posted already (403), the only sign it gives.
DUPLICATE_TEXT = "duplicate content"
# The most recent tweets one lookup reads (X's maximum per page).
RECENT_TWEETS = 100


@network("twitter", url="https://api.twitter.com")
class Twitter(Poster):
    def request(self, post_id: str) -> tuple[str, dict[str, str], dict[str, str]]:
        return f"/2/tweets/{quote(post_id, safe='')}", {"tweet.fields": "public_metrics"}, {}

    def parse(self, body: dict[str, Any], post_id: str) -> dict[str, Any]:
        if not isinstance(body.get("data"), dict):
            # v2 answers 200 with only "errors" for a deleted or unknown tweet.
            message = self.error_message(body) or "no data"
            raise PermanentError(f"twitter api for post {post_id}: {message}")
        metrics = dig(body, "data", "public_metrics") or {}
        return {
            "likes": metrics.get("like_count"),
            "comments": metrics.get("reply_count"),
            "shares": metrics.get("retweet_count"),
            "quotes": metrics.get("quote_count"),
            "bookmarks": metrics.get("bookmark_count"),
            "impressions": metrics.get("impression_count"),
        }

    def error_message(self, body: Any) -> str:
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            return str(first.get("detail") or first.get("title") or first.get("message") or "")
        return super().error_message(body)

    # -- publishing -------------------------------------------------------------------------

    def send_create(self, token: str, draft: Draft) -> requests.Response:
        return self.call("POST", "/2/tweets", token, json={"text": compose(draft)})

    def created_id(self, response: requests.Response) -> str | None:
        post_id = dig(response.json(), "data", "id")
        return post_id if isinstance(post_id, str) else None

    def duplicate(self, response: requests.Response, body: Any) -> Duplicate | None:
        if response.status_code == 403 and DUPLICATE_TEXT in self.error_message(body).lower():
            return Duplicate(f"twitter api 403: {self.error_message(body)}")
        return None

    def exhausted_for(self, response: requests.Response) -> float | None:
        if response.headers.get("x-rate-limit-remaining", "").strip() == "0":
            return self.reset_in(response)
        return None

    def reset_in(self, response: requests.Response) -> float | None:
        """Seconds until ``x-rate-limit-reset`` (X's Unix seconds) by X's own clock."""
        reset = response.headers.get("x-rate-limit-reset", "").strip()
        return max(1.0, float(reset) - network_now(response)) if reset.isdigit() else None

    def find(self, token: str, draft: Draft, since: float) -> str | None:
        me = dig(self.get_json("/2/users/me", token, "the author"), "data", "id")
        if not isinstance(me, str) or not me:
            raise TransientError("twitter api answered /2/users/me without an id")
        body = self.get_json(f"/2/users/{quote(me, safe='')}/tweets", token, "recent tweets",
                             max_results=RECENT_TWEETS, **{"tweet.fields": "entities,created_at"})
        wanted = compose(draft)
        for tweet in body.get("data") or []:
            if (isinstance(tweet, dict) and same_text(expanded(tweet), wanted)
                    and created_since(tweet.get("created_at"), since)):
                return str(tweet.get("id"))
        return None

    def retry_after(self, response: requests.Response) -> float | None:
        # X says when its 15-minute window resets (Unix seconds), seldom Retry-After.
        given = parse_retry_after(response.headers.get("Retry-After"), network_now(response))
        return self.reset_in(response) if given is None else given


def compose(draft: Draft) -> str:
    """The tweet's text: the event's text, and its link after it unless the text holds it."""
    if draft.link and draft.link not in draft.text:
        return f"{draft.text} {draft.link}"
    return draft.text


def expanded(tweet: dict[str, Any]) -> str:
    """A tweet's text with each t.co link replaced by the URL it stands for, as posted."""
    text = str(tweet.get("text") or "")
    for entity in dig(tweet, "entities", "urls") or []:
        if isinstance(entity, dict) and entity.get("url") and entity.get("expanded_url"):
            text = text.replace(str(entity["url"]), str(entity["expanded_url"]))
    return text
