"""The Facebook Graph API: POST|GET /v{N}.{M}/{page-id}/feed, GET /v{N}.{M}/{post-id}.

Graph never answers 429: past its limit it says error code 4 ("Application request limit
reached") with HTTP 400 and ``x-app-usage`` at 100, and no time to come back (X gives
``x-rate-limit-reset``, LinkedIn ``Retry-After``).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote

from devstack.httpfake import Reply, Request
from devstack.networks import Account, Post, Standin, json_body, stamp, standin

PATH = re.compile(r"^/v\d+\.\d+/(?P<id>[^/]+)(?P<feed>/feed)?$")
FBTRACE = "AbCdEfGhIjK"


@standin
class Facebook(Standin):
    service = "facebook"
    default_limit = 4800

    @classmethod
    def sample_account(cls) -> Account:
        return Account("facebook", "dev-facebook-token", pages=("100000000000001",))

    @classmethod
    def sample_target(cls, account: Account) -> str | None:
        return account.pages[0]

    def routes(self, path: str) -> bool:
        return PATH.match(path) is not None

    def answer(self, request: Request) -> Reply:
        networks = self.networks
        account = networks.account("facebook", request)
        if account is None:
            if not request.header("Authorization"):
                return 400, {}, _error(2500, "An active access token must be used to "
                                             "query information about the current user.")
            return 400, {}, _error(190, networks.refusal(
                "facebook", request, "Invalid OAuth access token - Cannot parse access token"))
        limit, remaining, _ = networks.window("facebook", account.token)
        usage = {"x-app-usage": json.dumps({"call_count": round(100 * (limit - max(remaining, 0))
                                                                / max(limit, 1)),
                                            "total_cputime": 0, "total_time": 0})}
        if remaining < 0:
            return self.rate_limited(0)
        match = PATH.match(request.path)
        assert match is not None  # routes matched it
        object_id = unquote(match["id"])
        if match["feed"]:
            if request.method == "POST":
                return networks.create("facebook", request, lambda: self._feed_post(
                    request, object_id, account, usage))
            refused = self._page_refused(object_id, account, request.method)
            if refused is not None:
                return 400, usage, refused
            return 200, usage, self._feed(object_id, dict(request.query))
        if request.method != "GET":
            return 400, usage, _unsupported("post", object_id)
        return self._engagement(object_id, usage)

    def new_post(self, author: str, text: str, link: str | None, when: float) -> Post:
        return Post("facebook", f"{author}_{122100000000000000 + self.networks.next_number()}",
                    author, text, link, when)

    def server_error(self) -> Reply:
        return 500, {}, {"error": {
            "message": "An unexpected error has occurred. Please retry your request later.",
            "type": "OAuthException", "is_transient": True, "code": 2, "fbtrace_id": FBTRACE}}

    def rate_limited(self, seconds: int, limit: int = 0) -> Reply:
        # Graph says "later" with a code, never a 429 or a time.
        return 400, {"x-app-usage": json.dumps(
            {"call_count": 100, "total_cputime": 0, "total_time": 0})}, {"error": {
                "message": "(#4) Application request limit reached", "type": "OAuthException",
                "is_transient": True, "code": 4, "fbtrace_id": FBTRACE}}

    def without_id(self, reply: Reply) -> Reply:
        return reply[0], reply[1], {}

    def error_body(self, status: int, message: str) -> Any:
        return _error(190 if status == 401 else 100, message)

    # -- the routes -------------------------------------------------------------------------

    def _page_refused(self, page: str, account: Account, method: str) -> Any:
        if page in account.pages:
            return None
        if any(page in a.pages for a in self.networks.accounts if a.service == "facebook"):
            return _error(200, "(#200) If posting to a page, requires both "
                               "pages_read_engagement and pages_manage_posts permission")
        return _unsupported("post" if method == "POST" else "get", page)

    def _feed_post(self, request: Request, page: str, account: Account,
                   usage: dict[str, str]) -> Reply:
        refused = self._page_refused(page, account, request.method)
        if refused is not None:
            return 400, usage, refused
        form = _form(request)
        message, link = form.get("message") or "", form.get("link") or None
        if not message and not link:
            return 400, usage, _error(100, "(#100) Missing message or attachment")
        if self.networks.duplicate("facebook", page, message,
                                   lambda p: (p.text, p.link) == (message, link)):
            return 400, usage, _error(506, "(#506) Duplicate status message", subcode=1455006)
        post = self.new_post(page, message, link, self.networks.clock())
        self.networks.store(post)
        return 200, usage, {"id": post.id}

    def _feed(self, page: str, query: dict[str, str]) -> dict[str, Any]:
        wanted = (query.get("fields") or "id,message,created_time").split(",")
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else 25
        data = []
        for post in self.networks.recent("facebook", page)[:min(limit, 100)]:
            full = {"id": post.id, "message": post.text, "link": post.link,
                    "created_time": stamp(post.created_at, "%Y-%m-%dT%H:%M:%S+0000")}
            data.append({k: full[k] for k in wanted if full.get(k)})
        return {"data": data, "paging": {}}

    def _engagement(self, post_id: str, usage: dict[str, str]) -> Reply:
        counts = self.networks.engagement.get(("facebook", post_id))
        if counts is None:
            return 400, usage, _unsupported("get", post_id)
        body: dict[str, Any] = {
            "reactions": {"data": [], "summary": {"total_count": counts.get("likes", 0),
                                                  "viewer_reaction": "NONE"}},
            "comments": {"data": [], "summary": {"order": "ranked", "can_comment": True,
                                                 "total_count": counts.get("comments", 0)}},
            "id": post_id}
        if counts.get("shares"):  # Graph leaves "shares" out of a post nobody shared
            body["shares"] = {"count": counts["shares"]}
        return 200, usage, body


def _error(code: int, message: str, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = FBTRACE
    return {"error": error}


def _unsupported(verb: str, object_id: str) -> dict[str, Any]:
    return _error(100, f"Unsupported {verb} request. Object with ID '{object_id}' does "
                       "not exist, cannot be loaded due to missing permissions, or does "
                       "not support this operation. Please read the Graph API "
                       "documentation at https://developers.facebook.com/docs/graph-api",
                  subcode=33)


def _form(request: Request) -> dict[str, str]:
    """Graph takes its fields form-encoded or as JSON."""
    if "json" in (request.header("Content-Type") or ""):
        body = json_body(request.body)
        return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return dict(parse_qsl(request.body.decode(errors="replace"), keep_blank_values=True))
