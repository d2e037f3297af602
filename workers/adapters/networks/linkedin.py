"""LinkedIn (versioned REST API): ``GET /rest/socialActions/{share or ugcPost URN}``
(engagement) and ``POST /rest/posts`` (publish). LinkedIn offers no lookup of an author's
recent posts by content: a repeated post is found through its answer, 422 DUPLICATE_POST,
whose message names the existing post's URN."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import requests

from workers.adapters.networks.base import dig, network
from workers.adapters.networks.posting import Draft, Duplicate, Poster
from workers.core.errors import PermanentError
from workers.core.events import Target

API_URL = "https://api.linkedin.com"
# LinkedIn retires a version a year after it (the LinkedIn-Version header): bump this (or set
# WORKERS_LINKEDIN_API_VERSION) before it does.
API_VERSION = "202510"
_URN = re.compile(r"urn:li:(?:share|ugcPost):[0-9]+")


@network("linkedin", url=API_URL, target=Target("the author URN, urn:li:person:... or "
                                                "urn:li:organization:...", prefix="urn:li:"),
         options={"version": API_VERSION})
class LinkedIn(Poster):
    def __init__(self, base_url: str, *args: Any, version: str = API_VERSION,
                 **kwargs: Any):
        super().__init__(base_url, *args, **kwargs)
        self.version = version

    def request(self, post_id: str) -> tuple[str, dict[str, str], dict[str, str]]:
        return f"/rest/socialActions/{quote(urn(post_id), safe='')}", {}, self._versioned()

    def parse(self, body: dict[str, Any], post_id: str) -> dict[str, Any]:
        comments = dig(body, "commentsSummary", "aggregatedTotalComments")
        if comments is None:
            comments = dig(body, "commentsSummary", "totalFirstLevelComments")
        return {"likes": dig(body, "likesSummary", "totalLikes"), "comments": comments}

    # -- publishing -------------------------------------------------------------------------

    def send_create(self, token: str, draft: Draft) -> requests.Response:
        if not draft.target:
            raise PermanentError("linkedin needs the author URN to post as (target)")
        post: dict[str, Any] = {
            "author": draft.target, "commentary": draft.text, "visibility": "PUBLIC",
            "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [],
                             "thirdPartyDistributionChannels": []},
            "lifecycleState": "PUBLISHED", "isReshareDisabledByAuthor": False}
        if draft.link:
            post["content"] = {"article": {"source": draft.link}}
        return self.call("POST", "/rest/posts", token, json=post, headers=self._versioned())

    def created_id(self, response: requests.Response) -> str | None:
        return response.headers.get("x-restli-id", "").strip() or None

    def duplicate(self, response: requests.Response, body: Any) -> Duplicate | None:
        message = self.error_message(body)
        if response.status_code == 422 and "DUPLICATE_POST" in (str(dig(body, "code")) + message):
            found = _URN.search(message)
            return Duplicate(f"linkedin api 422: {message}", found.group(0) if found else None)
        return None

    def _versioned(self) -> dict[str, str]:
        return {"LinkedIn-Version": self.version, "X-Restli-Protocol-Version": "2.0.0"}


def urn(post_id: str) -> str:
    """The post's URN: as given (``urn:li:share:1``, ``urn:li:ugcPost:2``), or a share's id."""
    return post_id if post_id.startswith("urn:li:") else f"urn:li:share:{post_id}"
