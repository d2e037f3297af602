"""analytics: each network's adapter against fake APIs serving the real response shapes, the
consumer step by step (429, 401/404, 5xx, timeouts), and a real `workers run analytics`."""

from __future__ import annotations

import email.utils
import json
import time
from types import SimpleNamespace

import pytest

import devstack
from devstack.networks import Account, Networks
from fakes import FakePusher
from helpers import drain, log_events, queue_depth, wait_until
from workers.adapters import networks as social
from workers.adapters.httpclient import MAX_ERROR_TEXT
from workers.adapters.networks.base import parse_retry_after
from workers.adapters.networks.twitter import Twitter
from workers.adapters.notify import Notifier
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.core.errors import PermanentError, TransientError
from workers.core.settings import Settings
from workers.domain.publishing.credentials import RedisCredentials
from workers.domain.publishing.engagement import EngagementStore
from workers.queues.analytics import FetchEngagement
from workers.runtime.consumer import Consumer, Handlers

TOKENS = {"twitter": "tw-token-SECRET-1a2b", "facebook": "fb-token-SECRET-3c4d",
          "linkedin": "li-token-SECRET-5e6f"}
ACCOUNTS = [Account("twitter", TOKENS["twitter"], user_id="2244994945", username="XDevelopers"),
            Account("facebook", TOKENS["facebook"], pages=("104",)),
            Account("linkedin", TOKENS["linkedin"], authors=("urn:li:organization:2414183",))]
POSTS = {
    ("twitter", "1460323737035677698"): {"likes": 12, "comments": 3, "shares": 4, "quotes": 1,
                                         "bookmarks": 2, "impressions": 900},
    ("facebook", "104_205"): {"likes": 7, "comments": 2, "shares": 5},
    ("linkedin", "urn:li:share:6844785523593134080"): {"likes": 9, "comments": 4},
}
EXPECTED = {
    "twitter": {"likes": 12, "comments": 3, "shares": 4, "quotes": 1, "bookmarks": 2,
                "impressions": 900},
    "facebook": {"likes": 7, "comments": 2, "shares": 5},
    "linkedin": {"likes": 9, "comments": 4},
}
# Each network's refusal of a token: its status and its words.
REFUSED = {"twitter": "401: Unauthorized",
           "facebook": "400: Invalid OAuth access token - Cannot parse access token",
           "linkedin": "401: Invalid access token"}
POST_IDS = {"twitter": "1460323737035677698", "facebook": "104_205",
            "linkedin": "6844785523593134080"}  # a bare share id: the adapter makes the URN


@pytest.fixture
def fake_api():
    # Every network echoes a refused token here: none may reach a reason or a log line.
    fake = Networks(accounts=ACCOUNTS, engagement=dict(POSTS), echo_token=frozenset(TOKENS))
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_pusher():
    fake = FakePusher().start()
    yield fake
    fake.stop()


def api_env(fake: Networks) -> dict[str, str]:
    return {f"WORKERS_{service.upper()}_API_URL": fake.url for service in TOKENS}


def apis(fake: Networks, **options) -> dict[str, social.SocialAPI]:
    return social.apis(Settings().model_copy(update={
        "network_options": {f"{name}_api_url": fake.url
                            for name in ("twitter", "facebook", "linkedin")}}), **options)


# -- the adapters ------------------------------------------------------------------------------

@pytest.mark.parametrize("service", list(TOKENS))
def test_each_network_s_answer_becomes_the_common_metrics(fake_api, service):
    engagement = apis(fake_api)[service].engagement(POST_IDS[service], TOKENS[service])
    assert engagement == EXPECTED[service]


def test_each_network_is_asked_the_documented_way(fake_api):
    built = apis(fake_api)
    for service in ("twitter", "facebook", "linkedin"):
        built[service].engagement(POST_IDS[service], TOKENS[service])
    twitter, facebook, linkedin = fake_api.requests
    assert twitter.path == "/2/tweets/1460323737035677698"
    assert twitter.query == [("tweet.fields", "public_metrics")]
    assert facebook.path == "/v25.0/104_205"
    assert dict(facebook.query)["fields"].split(",")[0] == "shares"
    assert "reactions.limit(0).summary(total_count)" in dict(facebook.query)["fields"]
    assert linkedin.path == "/rest/socialActions/urn%3Ali%3Ashare%3A6844785523593134080"
    assert linkedin.header("LinkedIn-Version") == "202510"
    assert linkedin.header("X-Restli-Protocol-Version") == "2.0.0"
    for request, token in zip(fake_api.requests, TOKENS.values(), strict=True):
        assert request.header("Authorization") == f"Bearer {token}"
        assert token not in request.path + json.dumps(request.query)  # never in a URL


def test_a_facebook_post_nobody_shared_counts_zero_shares(fake_api):
    fake_api.engagement[("facebook", "1_2")] = {"likes": 1, "comments": 0}
    assert apis(fake_api)["facebook"].engagement("1_2", TOKENS["facebook"]) == {
        "likes": 1, "comments": 0, "shares": 0}


@pytest.mark.parametrize("service", list(TOKENS))
def test_a_refused_token_is_permanent_with_the_status_and_never_the_token(fake_api, service):
    with pytest.raises(PermanentError) as raised:
        apis(fake_api)[service].engagement(POST_IDS[service], "revoked-token-SECRET")
    assert f"{service} api {REFUSED[service]} ***" == raised.value.reason.replace(
        f" for post {POST_IDS[service]}", "")
    assert "revoked-token-SECRET" not in str(raised.value)


@pytest.mark.parametrize("service", list(TOKENS))
def test_an_unknown_post_is_permanent(fake_api, service):
    with pytest.raises(PermanentError) as raised:
        apis(fake_api)[service].engagement("999", TOKENS[service])
    assert "999" in raised.value.reason
    assert {"twitter": "Could not find tweet", "facebook": "400", "linkedin": "404"}[service] \
        in raised.value.reason


@pytest.mark.parametrize("service", list(TOKENS))
def test_429_comes_back_after_retry_after(fake_api, service):
    fake_api.fail(429, {"Retry-After": "7"})
    with pytest.raises(TransientError) as raised:
        apis(fake_api)[service].engagement(POST_IDS[service], TOKENS[service])
    assert raised.value.retry_after == 7
    assert f"{service} api 429" in raised.value.reason


def test_429_with_an_http_date_waits_until_that_date(fake_api):
    fake_api.fail(429, {"Retry-After": email.utils.formatdate(time.time() + 120, usegmt=True)})
    with pytest.raises(TransientError) as raised:
        apis(fake_api)["facebook"].engagement(POST_IDS["facebook"], TOKENS["facebook"])
    assert 100 < raised.value.retry_after <= 120


def test_a_twitter_429_without_retry_after_waits_for_the_rate_limit_reset(fake_api):
    fake_api.fail(429, {"x-rate-limit-reset": str(int(time.time()) + 300)})
    with pytest.raises(TransientError) as raised:
        apis(fake_api)["twitter"].engagement(POST_IDS["twitter"], TOKENS["twitter"])
    assert 280 < raised.value.retry_after <= 300


def test_a_facebook_rate_limit_code_is_transient_whatever_its_status(fake_api):
    fake_api.fail(403, message="(#4) Application request limit reached")
    fake_api.error_body = lambda request, status, message: {"error": {
        "message": message, "type": "OAuthException", "code": 4, "fbtrace_id": "x"}}
    with pytest.raises(TransientError) as raised:
        apis(fake_api)["facebook"].engagement(POST_IDS["facebook"], TOKENS["facebook"])
    assert "Application request limit reached" in raised.value.reason


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_transient(fake_api, status):
    fake_api.fail(status)
    with pytest.raises(TransientError) as raised:
        apis(fake_api)["linkedin"].engagement(POST_IDS["linkedin"], TOKENS["linkedin"])
    assert raised.value.retry_after is None and str(status) in raised.value.reason


def test_a_hanging_api_times_out_as_transient(fake_api):
    fake_api.hanging = True
    with pytest.raises(TransientError, match="twitter api timed out"):
        apis(fake_api, timeout=0.3)["twitter"].engagement(POST_IDS["twitter"], TOKENS["twitter"])


def test_an_api_not_listening_is_transient():
    api = Twitter(f"http://127.0.0.1:{devstack.free_port()}")
    with pytest.raises(TransientError, match="twitter api unreachable"):
        api.engagement("1", "tok-SECRET")


def test_retry_after_reads_seconds_and_http_dates():
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


# -- credentials and the store -----------------------------------------------------------------

def test_a_token_comes_from_the_profile_s_credentials(redis_client):
    redis_client.hset("creds:p1", "twitter", "tok")
    assert RedisCredentials(redis_client).token("p1", "twitter") == "tok"


def test_a_profile_without_a_token_is_permanent(redis_client):
    redis_client.hset("creds:p1", "twitter", "tok")
    with pytest.raises(PermanentError, match="no linkedin access token for profile p1"):
        RedisCredentials(redis_client).token("p1", "linkedin")


def test_storing_the_same_fetch_twice_leaves_the_same_state(redis_client):
    store = EngagementStore(redis_client)
    fields = {"likes": 3, "comments": 1, "service": "twitter"}
    assert store.store("u1", fields, fetched_at=1000)
    first = store.get("u1")
    assert store.store("u1", fields, fetched_at=1000)
    assert store.get("u1") == first == {"likes": "3", "comments": "1", "service": "twitter",
                                        "fetched_at": "1000"}


def test_an_older_fetch_never_overwrites_a_newer_one(redis_client):
    store = EngagementStore(redis_client)
    assert store.store("u1", {"likes": 5, "shares": 1}, fetched_at=2000)
    assert not store.store("u1", {"likes": 3}, fetched_at=1000)  # a late redelivery
    assert store.store("u1", {"likes": 6}, fetched_at=3000)  # replaces, fields and all
    assert store.get("u1") == {"likes": "6", "fetched_at": "3000"}


# -- the consumer, one step at a time ----------------------------------------------------------

def event(service: str, update_id: str = "u1", post_id: str | None = None) -> str:
    return json.dumps({"update_id": update_id, "profile_id": "p1", "service": service,
                       "service_update_id": post_id or POST_IDS[service]})


@pytest.fixture
def stack(settings, fake_api, redis_client, sqs, queues, prefix):
    """A consumer of the analytics queue whose networks are the fake; tokens in Redis."""
    for service, token in TOKENS.items():
        redis_client.hset("creds:p1", service, token)
    settings = settings.model_copy(
        update={"network_options": {f"{s}_api_url": fake_api.url for s in TOKENS}})
    fetch = FetchEngagement(RedisCredentials(redis_client), apis(fake_api, timeout=0.5),
                            EngagementStore(redis_client), Notifier.from_settings(settings))
    consumer = Consumer("analytics", settings, handlers=Handlers(fetch.handle), concurrency=1)
    visibility: list[tuple[str, int]] = []
    change = consumer.sqs.change_visibility
    consumer.sqs.change_visibility = lambda pairs: (
        visibility.extend((m.id, t) for m, t in pairs), change(pairs))[1]
    source, dlq = queues[prefix + "analytics"], queues[prefix + "analytics-dlq"]

    def send(body: str) -> str:
        return sqs.send_message(QueueUrl=source, MessageBody=body)["MessageId"]

    return SimpleNamespace(consumer=consumer, send=send, source=source, dlq=dlq,
                           visibility=visibility)


def test_a_fetched_post_is_stored_and_the_message_deleted(stack, sqs, redis_client):
    stack.send(event("facebook"))
    result = stack.consumer.process_batch(wait_seconds=1)
    assert result.succeeded == 1
    stored = EngagementStore(redis_client).get("u1")
    assert {k: stored[k] for k in ("likes", "comments", "shares", "service")} == {
        "likes": "7", "comments": "2", "shares": "5", "service": "facebook"}
    assert abs(int(stored["fetched_at"]) - time.time()) < 60
    assert queue_depth(sqs, stack.source) == 0


def test_429_leaves_the_message_hidden_for_retry_after(stack, sqs, fake_api):
    fake_api.fail(429, {"Retry-After": "7"})
    message_id = stack.send(event("twitter"))
    result = stack.consumer.process_batch(wait_seconds=1)
    assert result.retried == 1
    assert (message_id, 7) in stack.visibility
    assert queue_depth(sqs, stack.source) == 1  # not deleted
    assert stack.consumer.process_batch(wait_seconds=0).received == 0  # hidden meanwhile


@pytest.mark.parametrize("trouble", ["500", "hangs"])
def test_5xx_and_timeouts_are_retried(stack, sqs, fake_api, redis_client, trouble):
    if trouble == "500":
        fake_api.fail(500)
    else:
        fake_api.hanging = True
    stack.send(event("linkedin"))
    assert stack.consumer.process_batch(wait_seconds=1).retried == 1
    assert queue_depth(sqs, stack.source) == 1
    fake_api.hanging = False
    # back after the first backoff (the 2 s visibility timeout of the test settings)
    again = wait_until(lambda: (got := stack.consumer.process_batch(wait_seconds=1)).received
                       and got, timeout=15)
    assert again.succeeded == 1
    assert EngagementStore(redis_client).get("u1")["likes"] == "9"


@pytest.mark.parametrize("case, reason", [
    ("revoked token", "twitter api 401 for post 1460323737035677698: Unauthorized ***"),
    ("unknown post", "facebook api 400 for post 404_404: " + (
        "Unsupported get request. Object with ID '404_404' does not exist, cannot be loaded due "
        "to missing permissions, or does not support this operation. Please read the Graph API "
        "documentation at https://developers.facebook.com/docs/graph-api")[:MAX_ERROR_TEXT]),
    ("no token", "no linkedin access token for profile p1"),
])
def test_401_404_and_a_missing_token_go_to_the_dlq_with_their_reason(stack, sqs, redis_client,
                                                                     case, reason):
    if case == "revoked token":
        redis_client.hset("creds:p1", "twitter", "revoked-SECRET-token")
        body = event("twitter")
    elif case == "unknown post":
        body = event("facebook", post_id="404_404")
    else:
        redis_client.hdel("creds:p1", "linkedin")
        body = event("linkedin")
    stack.send(body)
    result = stack.consumer.process_batch(wait_seconds=1)
    assert result.dead_lettered == 1
    [dead] = drain(sqs, stack.dlq)
    assert dead["Body"] == body
    assert dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"] == reason
    assert queue_depth(sqs, stack.source) == 0
    assert not redis_client.exists("analytics:u1")


# -- a real daemon -----------------------------------------------------------------------------

@pytest.fixture
def daemon(daemons, env, fake_api, fake_pusher, redis_client):
    for service, token in TOKENS.items():
        redis_client.hset("creds:p1", service, token)
    environment = {**env, **api_env(fake_api), **fake_pusher.env()}
    return lambda: daemons("analytics", "--concurrency", "2", environment=environment)


@pytest.mark.parametrize("service", list(TOKENS))
def test_a_daemon_stores_each_network_s_metrics_and_tells_pusher(daemon, sqs, queues, prefix,
                                                                 redis_client, fake_pusher,
                                                                 service):
    source = queues[prefix + "analytics"]
    proc = daemon()
    sqs.send_message(QueueUrl=source, MessageBody=event(service, update_id=f"u-{service}"))
    store = EngagementStore(redis_client)
    stored = wait_until(lambda: store.get(f"u-{service}"), timeout=30)
    fetched_at = int(stored.pop("fetched_at"))
    assert abs(fetched_at - time.time()) < 60
    assert stored == {**{k: str(v) for k, v in EXPECTED[service].items()}, "service": service,
                      "service_update_id": POST_IDS[service], "profile_id": "p1"}
    wait_until(lambda: fake_pusher.events, timeout=10)
    assert fake_pusher.rejected == []
    assert fake_pusher.events == [{
        "name": "analytics-updated", "channels": ["private-profile-p1"],
        "data": {"update_id": f"u-{service}", "service": service,
                 "metrics": EXPECTED[service], "fetched_at": fetched_at}}]
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=10)
    assert TOKENS[service] not in proc.log_path.read_text()


def test_a_daemon_dead_letters_a_revoked_token_without_ever_logging_it(daemon, sqs, queues,
                                                                       prefix, redis_client):
    redis_client.hset("creds:p1", "linkedin", "revoked-SECRET-token")
    proc = daemon()
    sqs.send_message(QueueUrl=queues[prefix + "analytics"], MessageBody=event("linkedin"))
    dlq = queues[prefix + "analytics-dlq"]
    wait_until(lambda: queue_depth(sqs, dlq) == 1, timeout=30)
    [dead] = drain(sqs, dlq)
    reason = dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"]
    assert reason.startswith("linkedin api 401 for post 6844785523593134080")
    wait_until(lambda: any(e["event"] == "message.dead_lettered"
                           for e in log_events(proc.log_path)), timeout=10)
    assert "revoked-SECRET-token" not in reason + proc.log_path.read_text()
    assert not redis_client.exists("analytics:u1")


def test_a_handler_slower_than_the_visibility_timeout_runs_once_across_two_daemons(
        daemon, sqs, queues, prefix, redis_client, fake_api, settings):
    # Given two daemons, and a network whose API takes three visibility timeouts to answer
    fake_api.delay = 3 * settings.visibility_timeout
    first, second = daemon(), daemon()
    source = queues[prefix + "analytics"]
    # When one event arrives
    sqs.send_message(QueueUrl=source, MessageBody=event("twitter"))
    # Then it is handled once: the heartbeat keeps it hidden from the other daemon meanwhile
    wait_until(lambda: EngagementStore(redis_client).get("u1"), timeout=60)
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=30)
    assert len(fake_api.requests) == 1, [r.path for r in fake_api.requests]
    handled = [e for proc in (first, second) for e in log_events(proc.log_path)
               if e["event"] == "message.handled"]
    assert [e["outcome"] for e in handled] == ["succeeded"]
    assert handled[0]["receive_count"] == 1
