"""Twitter/X API v2: ``GET /2/tweets/{id}?tweet.fields=public_metrics``."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import requests

from workers.runtime.errors import PermanentError
from workers.social.base import SocialAPI, dig, parse_retry_after


class Twitter(SocialAPI):
    service = "twitter"

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

    def retry_after(self, response: requests.Response) -> float | None:
        # X says when its 15-minute window resets (Unix seconds), seldom Retry-After.
        given = parse_retry_after(response.headers.get("Retry-After"))
        reset = response.headers.get("x-rate-limit-reset", "")
        if given is None and reset.isdigit():
            return max(1.0, int(reset) - time.time())
        return given
