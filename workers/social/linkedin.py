"""LinkedIn (versioned REST API): ``GET /rest/socialActions/{share or ugcPost URN}``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from workers.settings import DEFAULT_LINKEDIN_API_VERSION
from workers.social.base import SocialAPI, dig


class LinkedIn(SocialAPI):
    service = "linkedin"

    def __init__(self, base_url: str, *args: Any, version: str = DEFAULT_LINKEDIN_API_VERSION,
                 **kwargs: Any):
        super().__init__(base_url, *args, **kwargs)
        self.version = version

    def request(self, post_id: str) -> tuple[str, dict[str, str], dict[str, str]]:
        return f"/rest/socialActions/{quote(urn(post_id), safe='')}", {}, {
            "LinkedIn-Version": self.version, "X-Restli-Protocol-Version": "2.0.0"}

    def parse(self, body: dict[str, Any], post_id: str) -> dict[str, Any]:
        comments = dig(body, "commentsSummary", "aggregatedTotalComments")
        if comments is None:
            comments = dig(body, "commentsSummary", "totalFirstLevelComments")
        return {"likes": dig(body, "likesSummary", "totalLikes"), "comments": comments}


def urn(post_id: str) -> str:
    """The post's URN: as given (``urn:li:share:1``, ``urn:li:ugcPost:2``), or a share's id."""
    return post_id if post_id.startswith("urn:li:") else f"urn:li:share:{post_id}"
