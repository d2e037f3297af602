"""X (API v2): POST /2/tweets, GET /2/users/me, GET /2/users/{id}/tweets, GET /2/tweets/{id}.

Its rate limits are counted per token and endpoint, and told on every answer
(``x-rate-limit-*``); a link is shown as a t.co link (``tco``), as X does.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import unquote

from devstack.httpfake import Reply, Request
from devstack.networks import Account, Post, Standin, json_body, stamp, standin

# How X shows a link: every URL becomes a t.co link of this length.
TCO_PREFIX = "https://t.co/"
# A URL in a post: what X and the spec's link extraction take, trailing punctuation cut off.
URL = re.compile(r"https?://[^\s<>\"]+")
URL_TRAILING = ".,;:!?)]}'\""
# X's ids are snowflakes: milliseconds since this epoch, shifted past a sequence number.
TWITTER_EPOCH_MS = 1288834974657


@standin
class Twitter(Standin):
    service = "twitter"
    default_limit = 900

    @classmethod
    def sample_account(cls) -> Account:
        return Account("twitter", "dev-twitter-token", user_id="1500000000000000001",
                       username="devstack", name="Dev Stack")

    def routes(self, path: str) -> bool:
        return path.startswith("/2/")

    def answer(self, request: Request) -> Reply:
        networks = self.networks
        account = networks.account("twitter", request)
        if account is None:
            return 401, {}, {"title": "Unauthorized", "type": "about:blank", "status": 401,
                             "detail": networks.refusal("twitter", request, "Unauthorized")}
        path = request.path
        endpoint = re.sub(r"^/2/(tweets|users)/(?!me$)[^/]+", r"/2/\1/:id", path)
        limit, remaining, reset = networks.window("twitter", account.token, request.method,
                                                  endpoint)
        if remaining < 0:
            return self.rate_limited(reset - int(networks.clock()), limit)
        status, headers, body = self._answer(request, account, path)
        return status, {"x-rate-limit-limit": str(limit), "x-rate-limit-remaining":
                        str(remaining), "x-rate-limit-reset": str(reset), **headers}, body

    def new_post(self, author: str, text: str, link: str | None, when: float) -> Post:
        post_id = str(((int(when * 1000) - TWITTER_EPOCH_MS) << 22)
                      | (self.networks.next_number() & 0x3FFFFF))
        shown, urls = tco(text, post_id)
        return Post("twitter", post_id, author, text, link, when, shown, urls)

    def server_error(self) -> Reply:
        return 503, {}, {"title": "Service Unavailable", "detail": "Service Unavailable",
                         "type": "about:blank", "status": 503}

    def rate_limited(self, seconds: int, limit: int = 0) -> Reply:
        reset = int(self.networks.clock()) + seconds
        return 429, {"x-rate-limit-limit": str(limit or self.networks.limits.get("twitter", 0)),
                     "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}, {
            "title": "Too Many Requests", "detail": "Too Many Requests",
            "type": "about:blank", "status": 429}

    def without_id(self, reply: Reply) -> Reply:
        return reply[0], reply[1], {"data": {}}

    # -- the routes -------------------------------------------------------------------------

    def _answer(self, request: Request, account: Account, path: str) -> Reply:
        if request.method == "POST" and path == "/2/tweets":
            return self.networks.create("twitter", request,
                                        lambda: self._tweet(request, account))
        if request.method == "GET" and path == "/2/users/me":
            return 200, {}, {"data": {"id": account.user_id, "name": account.name
                                      or account.username, "username": account.username}}
        timeline = re.fullmatch(r"/2/users/([^/]+)/tweets", path)
        if request.method == "GET" and timeline:
            return self._timeline(unquote(timeline[1]), dict(request.query))
        if request.method == "GET" and path.startswith("/2/tweets/"):
            return self._engagement(unquote(path[len("/2/tweets/"):]))
        return 404, {}, {"title": "Not Found Error", "detail": "Not Found", "type":
                         "about:blank", "status": 404}

    def _tweet(self, request: Request, account: Account) -> Reply:
        body = json_body(request.body)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return 400, {}, _invalid("text", "The `text` field is required and must be "
                                             "a non-empty string")
        if self.networks.duplicate("twitter", account.user_id, text, lambda p: p.text == text):
            return 403, {}, {"detail": "You are not allowed to create a Tweet with duplicate "
                                       "content.", "type": "about:blank", "title": "Forbidden",
                             "status": 403}
        post = self.new_post(account.user_id, text, None, self.networks.clock())
        self.networks.store(post)
        return 201, {}, {"data": {"id": post.id, "text": post.shown,
                                  "edit_history_tweet_ids": [post.id]}}

    def _timeline(self, user_id: str, query: dict[str, str]) -> Reply:
        if not any(a.service == "twitter" and a.user_id == user_id
                   for a in self.networks.accounts):
            return 200, {}, {"errors": [{
                "value": user_id, "detail": f"Could not find user with id: [{user_id}].",
                "title": "Not Found Error", "resource_type": "user", "parameter": "id",
                "resource_id": user_id,
                "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
        given = query.get("max_results", "10")
        if not given.isdigit() or not 5 <= int(given) <= 100:
            return 400, {}, _invalid("max_results", f"The `max_results` query parameter "
                                                    f"value [{given}] is not between 5 and 100")
        wanted = set(query.get("tweet.fields", "").split(","))
        tweets = [_tweet_json(p, wanted)
                  for p in self.networks.recent("twitter", user_id)[:int(given)]]
        if not tweets:
            return 200, {}, {"meta": {"result_count": 0}}
        return 200, {}, {"data": tweets, "meta": {
            "result_count": len(tweets), "newest_id": tweets[0]["id"],
            "oldest_id": tweets[-1]["id"]}}

    def _engagement(self, tweet_id: str) -> Reply:
        counts = self.networks.engagement.get(("twitter", tweet_id))
        if counts is None:  # v2 answers 200 with only "errors" for an unknown tweet
            return 200, {}, {"errors": [{
                "value": tweet_id, "detail": f"Could not find tweet with id: [{tweet_id}].",
                "title": "Not Found Error", "resource_type": "tweet", "parameter": "id",
                "resource_id": tweet_id,
                "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
        post = self.networks.post("twitter", tweet_id)
        return 200, {}, {"data": {
            "id": tweet_id, "text": post.shown if post else "Shipped it https://t.co/x",
            "edit_history_tweet_ids": [tweet_id],
            "public_metrics": {"retweet_count": counts.get("shares", 0),
                               "reply_count": counts.get("comments", 0),
                               "like_count": counts.get("likes", 0),
                               "quote_count": counts.get("quotes", 0),
                               "bookmark_count": counts.get("bookmarks", 0),
                               "impression_count": counts.get("impressions", 0)}}}


def tco(text: str, post_id: str) -> tuple[str, list[dict[str, Any]]]:
    """``text`` as X shows it (each http(s) URL a t.co link) and its ``entities.urls``."""
    shown, urls, last = "", [], 0
    for n, match in enumerate(URL.finditer(text)):
        url = match[0].rstrip(URL_TRAILING)
        short = TCO_PREFIX + hashlib.sha1(f"{post_id}/{n}/{url}".encode()).hexdigest()[:10]
        shown += text[last:match.start()]
        display = url.split("://", 1)[1]
        urls.append({"start": len(shown), "end": len(shown) + len(short), "url": short,
                     "expanded_url": url,
                     "display_url": display if len(display) <= 23 else display[:22] + "…"})
        shown += short
        last = match.start() + len(url)
    return shown + text[last:], urls


def _tweet_json(post: Post, wanted: set[str]) -> dict[str, Any]:
    tweet: dict[str, Any] = {"id": post.id, "text": post.shown,
                             "edit_history_tweet_ids": [post.id]}
    if "created_at" in wanted:
        tweet["created_at"] = stamp(post.created_at, "%Y-%m-%dT%H:%M:%S.000Z")
    if "entities" in wanted and post.urls:  # X leaves out entities a tweet has none of
        tweet["entities"] = {"urls": post.urls}
    return tweet


def _invalid(parameter: str, message: str) -> dict[str, Any]:
    return {"errors": [{"parameters": {parameter: []}, "message": message}],
            "title": "Invalid Request", "detail": "One or more parameters to your request was "
                                                  "invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request"}
