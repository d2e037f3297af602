"""Facebook Graph API: ``GET /{version}/{post-id}?fields=shares,reactions...`` (engagement),
``POST /{version}/{page-id}/feed`` (publish), and the page's feed to find one of ours again."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from workers.adapters.networks.base import dig, network
from workers.adapters.networks.posting import Draft, Duplicate, Poster, created_since, same_text
from workers.core.errors import PermanentError
from workers.core.events import Target

API_URL = "https://graph.facebook.com"
# The Graph API retires a version about two years after it: bump this (or set
# WORKERS_FACEBOOK_API_VERSION) before it does.
API_VERSION = "v25.0"
# Totals only: ``limit(0)`` asks for no reaction or comment objects, just their summaries.
FIELDS = "shares,reactions.limit(0).summary(total_count),comments.limit(0).summary(total_count)"
# Graph error codes that mean "later" whatever the HTTP status (400 or 403, not 429):
# unknown/service errors and the application, user and page rate limits.
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613})
# Of those, the rate limits (application, user, page, custom): nothing was done.
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
# "Duplicate status message": the page holds this post already.
DUPLICATE_CODE = 506
# The most recent posts of the page one lookup reads.
RECENT_POSTS = 100


@network("facebook", url=API_URL, target=Target("the page id"),
         options={"version": API_VERSION})
class Facebook(Poster):
    def __init__(self, base_url: str, *args: Any, version: str = API_VERSION,
                 **kwargs: Any):
        super().__init__(base_url, *args, **kwargs)
        self.version = version

    def request(self, post_id: str) -> tuple[str, dict[str, str], dict[str, str]]:
        return f"/{self.version}/{quote(post_id, safe='')}", {"fields": FIELDS}, {}

    def parse(self, body: dict[str, Any], post_id: str) -> dict[str, Any]:
        return {
            "likes": dig(body, "reactions", "summary", "total_count"),
            "comments": dig(body, "comments", "summary", "total_count"),
            # Graph leaves ``shares`` out of a post nobody shared.
            "shares": dig(body, "shares", "count") or 0,
        }

    def error_message(self, body: Any) -> str:
        message = dig(body, "error", "message")
        return message if isinstance(message, str) else super().error_message(body)

    def is_transient(self, response: requests.Response) -> bool:
        try:
            code = dig(response.json(), "error", "code")
        except ValueError:
            code = None
        return code in TRANSIENT_CODES or super().is_transient(response)

    # -- publishing -------------------------------------------------------------------------

    def send_create(self, token: str, draft: Draft) -> requests.Response:
        fields = {"message": draft.text, **({"link": draft.link} if draft.link else {})}
        return self.call("POST", f"{self._page(draft)}/feed", token, data=fields)

    def created_id(self, response: requests.Response) -> str | None:
        post_id = dig(response.json(), "id")
        return post_id if isinstance(post_id, str) else None

    def duplicate(self, response: requests.Response, body: Any) -> Duplicate | None:
        if dig(body, "error", "code") == DUPLICATE_CODE:
            return Duplicate(f"facebook api {response.status_code}: {self.error_message(body)}")
        return None

    def rate_limited(self, response: requests.Response, body: Any) -> bool:
        return (response.status_code == 429
                or dig(body, "error", "code") in RATE_LIMIT_CODES)

    def find(self, token: str, draft: Draft, since: float) -> str | None:
        body = self.get_json(f"{self._page(draft)}/feed", token, "the page's feed",
                             fields="id,message,link,created_time", limit=RECENT_POSTS)
        for post in body.get("data") or []:
            if (isinstance(post, dict) and same_text(str(post.get("message") or ""), draft.text)
                    and (not draft.link or post.get("link") in (None, draft.link))
                    and created_since(post.get("created_time"), since)):
                return str(post.get("id"))
        return None

    def _page(self, draft: Draft) -> str:
        if not draft.target:
            raise PermanentError("facebook needs the page id to post to (target)")
        return f"/{self.version}/{quote(draft.target, safe='')}"
