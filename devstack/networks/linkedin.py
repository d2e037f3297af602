"""LinkedIn's REST API: POST /rest/posts, GET /rest/socialActions/{urn}, each with its
``LinkedIn-Version`` header; past its limit, 429 with ``Retry-After``."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from devstack.httpfake import Reply, Request
from devstack.networks import Account, Post, Standin, json_body, standin

VERSION = re.compile(r"^\d{6}(\.\d{2})?$")


@standin
class LinkedIn(Standin):
    service = "linkedin"
    default_limit = 1000

    @classmethod
    def sample_account(cls) -> Account:
        return Account("linkedin", "dev-linkedin-token",
                       authors=("urn:li:person:devstack", "urn:li:organization:1000001"))

    @classmethod
    def sample_target(cls, account: Account) -> str | None:
        return account.authors[0]

    def routes(self, path: str) -> bool:
        return path.startswith("/rest/")

    def answer(self, request: Request) -> Reply:
        networks = self.networks
        account = networks.account("linkedin", request)
        if account is None:
            return 401, {}, {"status": 401, "serviceErrorCode": 65600,
                             "code": "INVALID_ACCESS_TOKEN",
                             "message": networks.refusal("linkedin", request,
                                                         "Invalid access token")}
        version = request.header("LinkedIn-Version")
        if not version:
            return 400, {}, {"status": 400, "code": "VERSION_MISSING", "message":
                             "A version must be present. Please specify a version by adding "
                             "the LinkedIn-Version header."}
        if not VERSION.match(version):
            return 426, {}, {"status": 426, "code": "NONEXISTENT_VERSION",
                             "message": f"Requested version {version} is not active"}
        _, remaining, reset = networks.window("linkedin", account.token)
        if remaining < 0:
            return self.rate_limited(reset - int(networks.clock()))
        if request.method == "POST" and request.path == "/rest/posts":
            if request.header("X-Restli-Protocol-Version") != "2.0.0":
                return 400, {}, {"status": 400, "message": "X-Restli-Protocol-Version 2.0.0 "
                                                           "is required by this resource"}
            return networks.create("linkedin", request, lambda: self._share(request, account))
        if request.method == "GET" and request.path.startswith("/rest/socialActions/"):
            return self._social_actions(unquote(request.path[len("/rest/socialActions/"):]))
        return 404, {}, {"status": 404, "message": "No virtual resource found"}

    def new_post(self, author: str, text: str, link: str | None, when: float) -> Post:
        return Post("linkedin", f"urn:li:share:{7400000000000000000 + self.networks.next_number()}",
                    author, text, link, when)

    def server_error(self) -> Reply:
        return 500, {}, {"message": "Internal Server Error", "status": 500}

    def rate_limited(self, seconds: int, limit: int = 0) -> Reply:
        return 429, {"Retry-After": str(seconds)}, {
            "status": 429, "serviceErrorCode": 101, "code": "TOO_MANY_REQUESTS",
            "message": "Resource level throttle APPLICATION DAY limit for calls to this resource "
                       "is reached."}

    def without_id(self, reply: Reply) -> Reply:
        return reply[0], {k: v for k, v in reply[1].items() if k != "x-restli-id"}, None

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message, "serviceErrorCode": 65600, "status": status}

    # -- the routes -------------------------------------------------------------------------

    def _share(self, request: Request, account: Account) -> Reply:
        body = json_body(request.body)
        body = body if isinstance(body, dict) else {}
        for name in ("author", "commentary", "visibility", "distribution", "lifecycleState"):
            if name not in body:
                return 422, {}, {"status": 422, "message": f"ERROR :: /{name} :: field is "
                                 "required but not found and has no default value"}
        author, commentary = str(body["author"]), str(body["commentary"])
        if author not in account.authors:
            return 403, {}, {"status": 403, "serviceErrorCode": 100, "code": "ACCESS_DENIED",
                             "message": "Not enough permissions to access: "
                                        "partnerApiPostsExternal.CREATE.20240101"}
        same = self.networks.duplicate("linkedin", author, commentary,
                                       lambda p: p.text == commentary)
        if same is not None:
            return 422, {}, {"message": f"Content is a duplicate of {same.id}", "status": 422,
                             "code": "DUPLICATE_POST", "serviceErrorCode": 0}
        source = ((body.get("content") or {}).get("article") or {}).get("source")
        post = self.new_post(author, commentary, source, self.networks.clock())
        self.networks.store(post)
        return 201, {"x-restli-id": post.id}, None

    def _social_actions(self, urn: str) -> Reply:
        counts = self.networks.engagement.get(("linkedin", urn))
        if counts is None:
            return 404, {}, {"status": 404, "serviceErrorCode": 0,
                             "message": f"post {urn} not found"}
        return 200, {}, {
            "commentsSummary": {"selectedComments": [],
                                "totalFirstLevelComments": counts.get("comments", 0),
                                "aggregatedTotalComments": counts.get("comments", 0)},
            "likesSummary": {"selectedLikes": [], "likedByCurrentUser": False,
                             "aggregatedTotalLikes": counts.get("likes", 0),
                             "totalLikes": counts.get("likes", 0)},
            "target": urn, "$URN": "urn:li:activity:6610000000000000000"}
