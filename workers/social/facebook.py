"""Facebook Graph API: ``GET /{version}/{post-id}?fields=shares,reactions...,comments...``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from workers.settings import DEFAULT_FACEBOOK_API_VERSION
from workers.social.base import SocialAPI, dig

# Totals only: ``limit(0)`` asks for no reaction or comment objects, just their summaries.
FIELDS = "shares,reactions.limit(0).summary(total_count),comments.limit(0).summary(total_count)"
# Graph error codes that mean "later" whatever the HTTP status (400 or 403, not 429):
# unknown/service errors and the application, user and page rate limits.
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613})


class Facebook(SocialAPI):
    service = "facebook"

    def __init__(self, base_url: str, *args: Any, version: str = DEFAULT_FACEBOOK_API_VERSION,
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
