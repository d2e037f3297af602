"""The stand-ins of X, Facebook and LinkedIn (devstack.networks): what the publish queue
relies on, in the networks' own shapes: posting, duplicate answers, recent posts, rate limits,
the faults of "exactly once" tests, and the control API of a stand-in in its own process."""

from __future__ import annotations

import email.utils
import json
import threading
import time
import urllib.error

import pytest
import requests

import devstack
from devstack.networks import (
    DUPLICATE_WINDOW_SECONDS,
    RATE_WINDOW_SECONDS,
    Account,
    Control,
    Networks,
)
from devstack.networks.twitter import tco
from helpers import wait_until

X_TOKEN, FB_TOKEN, LI_TOKEN = "x-token-SECRET", "fb-token-SECRET", "li-token-SECRET"
ACCOUNTS = [
    Account("twitter", X_TOKEN, user_id="2244994945", username="XDevelopers", name="Developers"),
    Account("twitter", "x-other-token", user_id="783214", username="X"),
    Account("facebook", FB_TOKEN, pages=("104",)),
    Account("facebook", "fb-other-token", pages=("205",)),
    Account("linkedin", LI_TOKEN, authors=("urn:li:person:abc", "urn:li:organization:42")),
]
LINKEDIN_HEADERS = {"LinkedIn-Version": "202510", "X-Restli-Protocol-Version": "2.0.0"}


class Clock:
    """The stand-in's clock, moved by the test: a day passes without waiting for it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def networks(clock):
    with Networks(accounts=list(ACCOUNTS), clock=clock) as standin:
        yield standin


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tweet(networks: Networks, text: str, token: str = X_TOKEN, **kwargs) -> requests.Response:
    return requests.post(f"{networks.url}/2/tweets", json={"text": text}, headers=bearer(token),
                         **kwargs)


def facebook_post(networks: Networks, page: str = "104", token: str = FB_TOKEN,
                  **fields) -> requests.Response:
    return requests.post(f"{networks.url}/v25.0/{page}/feed", data=fields,
                         headers=bearer(token))


def share(networks: Networks, commentary: str, author: str = "urn:li:person:abc",
          headers: dict[str, str] = LINKEDIN_HEADERS, link: str | None = None,
          **kwargs) -> requests.Response:
    body = {"author": author, "commentary": commentary, "visibility": "PUBLIC",
            "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [],
                             "thirdPartyDistributionChannels": []},
            "lifecycleState": "PUBLISHED", "isReshareDisabledByAuthor": False}
    if link:
        body["content"] = {"article": {"source": link, "title": "A link"}}
    return requests.post(f"{networks.url}/rest/posts", json=body,
                         headers={**headers, **bearer(LI_TOKEN)}, **kwargs)


CREATE = {"twitter": lambda n, text: tweet(n, text),
          "facebook": lambda n, text: facebook_post(n, message=text),
          "linkedin": lambda n, text: share(n, text)}


# -- X ------------------------------------------------------------------------------------------

def test_a_tweet_is_created_with_every_url_shown_as_a_t_co_link(networks, clock):
    text = "Shipped it: https://buffer.com/blog?id=1, and http://example.com/x."
    response = tweet(networks, text)
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["edit_history_tweet_ids"] == [data["id"]]
    assert data["id"].isdigit() and len(data["id"]) == 19
    assert "buffer.com" not in data["text"] and "example.com" not in data["text"]
    assert data["text"].startswith("Shipped it: https://t.co/") and data["text"].endswith(".")
    assert data["text"].count("https://t.co/") == 2
    assert networks.posts("twitter") == [{"service": "twitter", "id": data["id"],
                                          "author": "2244994945", "text": text, "link": None,
                                          "created_at": clock.now}]
    assert networks.create_requests("twitter") == networks.created("twitter") == 1


def test_the_same_text_within_a_day_is_refused_as_duplicate_content(networks, clock):
    assert tweet(networks, "Hello https://buffer.com").status_code == 201
    again = tweet(networks, "Hello https://buffer.com")
    assert again.status_code == 403
    assert again.json() == {"detail": "You are not allowed to create a Tweet with duplicate "
                                      "content.", "type": "about:blank", "title": "Forbidden",
                            "status": 403}
    assert tweet(networks, "Hello https://buffer.com", token="x-other-token").status_code == 201
    clock.now += DUPLICATE_WINDOW_SECONDS + 1
    assert tweet(networks, "Hello https://buffer.com").status_code == 201
    assert networks.create_requests("twitter") == 4 and networks.created("twitter") == 3


def test_the_user_and_their_recent_tweets_give_back_each_url(networks):
    me = requests.get(f"{networks.url}/2/users/me", headers=bearer(X_TOKEN)).json()
    assert me == {"data": {"id": "2244994945", "name": "Developers", "username": "XDevelopers"}}
    timeline = f"{networks.url}/2/users/2244994945/tweets"
    params = {"max_results": "100", "tweet.fields": "entities,created_at"}
    empty = requests.get(timeline, params=params, headers=bearer(X_TOKEN)).json()
    assert empty == {"meta": {"result_count": 0}}
    first = tweet(networks, "Read https://buffer.com/a-long-path/that-goes-on?x=1 now").json()
    second = tweet(networks, "No link here").json()
    got = requests.get(timeline, params=params, headers=bearer(X_TOKEN)).json()
    assert [t["id"] for t in got["data"]] == [second["data"]["id"], first["data"]["id"]]
    assert got["meta"] == {"result_count": 2, "newest_id": second["data"]["id"],
                           "oldest_id": first["data"]["id"]}
    newest, oldest = got["data"]
    assert "entities" not in newest  # X leaves out what a tweet has none of
    assert oldest["text"] == first["data"]["text"]
    assert time.strptime(oldest["created_at"], "%Y-%m-%dT%H:%M:%S.000Z")
    [url] = oldest["entities"]["urls"]
    assert url["expanded_url"] == "https://buffer.com/a-long-path/that-goes-on?x=1"
    assert oldest["text"][url["start"]:url["end"]] == url["url"]
    assert url["display_url"].startswith("buffer.com/")


def test_a_timeline_asks_between_5_and_100_tweets(networks):
    response = requests.get(f"{networks.url}/2/users/2244994945/tweets",
                            params={"max_results": "3"}, headers=bearer(X_TOKEN))
    assert response.status_code == 400
    assert response.json()["title"] == "Invalid Request"


def test_x_says_its_rate_limit_on_every_answer_per_token_and_endpoint(networks, clock):
    networks.limits["twitter"] = 2
    answers = [tweet(networks, f"post {n}") for n in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert [a.headers["x-rate-limit-remaining"] for a in answers] == ["1", "0", "0"]
    assert {a.headers["x-rate-limit-limit"] for a in answers} == {"2"}
    reset = int(answers[-1].headers["x-rate-limit-reset"])
    assert clock.now < reset <= clock.now + RATE_WINDOW_SECONDS
    assert answers[-1].json() == {"title": "Too Many Requests", "detail": "Too Many Requests",
                                  "type": "about:blank", "status": 429}
    assert networks.created("twitter") == 2
    # another endpoint, another token: windows of their own
    me = requests.get(f"{networks.url}/2/users/me", headers=bearer(X_TOKEN))
    assert me.status_code == 200 and me.headers["x-rate-limit-remaining"] == "1"
    assert tweet(networks, "post 9", token="x-other-token").status_code == 201
    clock.now = reset
    assert tweet(networks, "post 3").status_code == 201


def test_tco_keeps_the_text_around_each_url():
    shown, urls = tco("a https://x.org/p, b http://y.org", "1")
    assert [u["expanded_url"] for u in urls] == ["https://x.org/p", "http://y.org"]
    assert shown == f"a {urls[0]['url']}, b {urls[1]['url']}"


# -- a refused token, on each network ---------------------------------------------------------

def test_each_network_refuses_a_wrong_token_in_its_own_words(networks):
    networks.echo_token = frozenset({"linkedin"})
    wrong = bearer("wrong-SECRET")
    x = requests.post(f"{networks.url}/2/tweets", json={"text": "hi"}, headers=wrong)
    assert (x.status_code, x.json()) == (401, {"title": "Unauthorized", "type": "about:blank",
                                               "status": 401, "detail": "Unauthorized"})
    fb = requests.post(f"{networks.url}/v19.0/104/feed", data={"message": "hi"}, headers=wrong)
    assert fb.status_code == 400
    assert fb.json()["error"] | {"fbtrace_id": ""} == {
        "message": "Invalid OAuth access token - Cannot parse access token",
        "type": "OAuthException", "code": 190, "fbtrace_id": ""}
    li = requests.post(f"{networks.url}/rest/posts", json={}, headers={**LINKEDIN_HEADERS,
                                                                        **wrong})
    assert (li.status_code, li.json()) == (401, {
        "status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN",
        "message": "Invalid access token wrong-SECRET"})  # the one that echoes it
    assert networks.created("twitter") + networks.created("facebook") == 0


# -- Facebook -----------------------------------------------------------------------------------

def test_a_page_post_takes_form_or_json_fields_and_shows_in_the_feed_newest_first(networks):
    first = facebook_post(networks, message="Hello", link="https://buffer.com")
    assert first.status_code == 200
    assert first.json()["id"].startswith("104_")
    assert "call_count" in json.loads(first.headers["x-app-usage"])
    second = requests.post(f"{networks.url}/v25.0/104/feed", json={"message": "Again"},
                           headers=bearer(FB_TOKEN))
    assert second.status_code == 200
    feed = requests.get(f"{networks.url}/v25.0/104/feed",
                        params={"fields": "id,message,link,created_time"},
                        headers=bearer(FB_TOKEN)).json()
    assert feed["paging"] == {}
    assert [(p["id"], p["message"], p.get("link")) for p in feed["data"]] == [
        (second.json()["id"], "Again", None), (first.json()["id"], "Hello", "https://buffer.com")]
    assert time.strptime(feed["data"][0]["created_time"], "%Y-%m-%dT%H:%M:%S+0000")
    assert [p["link"] for p in networks.posts("facebook")] == ["https://buffer.com", None]


def test_the_same_message_and_link_on_a_page_within_a_day_is_error_506(networks, clock):
    assert facebook_post(networks, message="Hi", link="https://a.example").status_code == 200
    again = facebook_post(networks, message="Hi", link="https://a.example")
    assert again.status_code == 400
    assert {k: again.json()["error"][k] for k in ("message", "code", "error_subcode")} == {
        "message": "(#506) Duplicate status message", "code": 506, "error_subcode": 1455006}
    assert facebook_post(networks, message="Hi", link="https://b.example").status_code == 200
    clock.now += DUPLICATE_WINDOW_SECONDS + 1
    assert facebook_post(networks, message="Hi", link="https://a.example").status_code == 200


@pytest.mark.parametrize("page, code", [("205", 200), ("999", 100)])
def test_a_page_the_token_may_not_post_to_is_refused(networks, page, code):
    response = facebook_post(networks, page=page, message="Hi")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert networks.create_requests("facebook") == 1 and networks.created("facebook") == 0


def test_graph_s_rate_limit_is_error_code_4_with_the_app_usage(networks):
    networks.limits["facebook"] = 1
    assert facebook_post(networks, message="one").status_code == 200
    refused = facebook_post(networks, message="two")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == 4
    assert json.loads(refused.headers["x-app-usage"])["call_count"] == 100
    assert networks.created("facebook") == 1


# -- LinkedIn -----------------------------------------------------------------------------------

def test_a_linkedin_post_answers_201_with_its_urn_in_x_restli_id(networks):
    response = share(networks, "Hello https://buffer.com", link="https://buffer.com")
    assert response.status_code == 201 and response.content == b""
    urn = response.headers["x-restli-id"]
    assert urn.startswith("urn:li:share:")
    [post] = networks.posts("linkedin")
    assert (post["id"], post["author"], post["link"]) == (urn, "urn:li:person:abc",
                                                          "https://buffer.com")
    actions = requests.get(f"{networks.url}/rest/socialActions/{requests.utils.quote(urn, '')}",
                           headers={**LINKEDIN_HEADERS, **bearer(LI_TOKEN)}).json()
    assert actions["likesSummary"]["totalLikes"] == 0  # engagement starts at 0


def test_the_same_commentary_by_the_same_author_names_the_existing_post(networks):
    urn = share(networks, "Same words").headers["x-restli-id"]
    again = share(networks, "Same words")
    assert again.status_code == 422
    body = again.json()
    assert (body["code"], body["status"]) == ("DUPLICATE_POST", 422)
    assert body["message"] == f"Content is a duplicate of {urn}"
    assert share(networks, "Same words", author="urn:li:organization:42").status_code == 201


def test_an_author_the_token_may_not_post_as_is_access_denied(networks):
    response = share(networks, "Hi", author="urn:li:organization:7")
    assert (response.status_code, response.json()["code"]) == (403, "ACCESS_DENIED")
    assert networks.created("linkedin") == 0


@pytest.mark.parametrize("headers, status, code", [
    ({"X-Restli-Protocol-Version": "2.0.0"}, 400, "VERSION_MISSING"),
    ({"LinkedIn-Version": "2025-10", "X-Restli-Protocol-Version": "2.0.0"}, 426,
     "NONEXISTENT_VERSION"),
    ({"LinkedIn-Version": "202510"}, 400, None),
])
def test_linkedin_wants_its_version_headers(networks, headers, status, code):
    response = share(networks, "Hi", headers=headers)
    assert response.status_code == status
    assert response.json().get("code") == code
    assert networks.created("linkedin") == 0


def test_linkedin_s_rate_limit_is_429_with_retry_after(networks, clock):
    networks.limits["linkedin"] = 1
    assert share(networks, "one").status_code == 201
    refused = share(networks, "two")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= RATE_WINDOW_SECONDS


# -- what a lookup must tell apart: when a post was made, and the duplicate window --------------

@pytest.mark.parametrize("service", ["twitter", "facebook", "linkedin"])
def test_identical_text_is_taken_again_once_the_duplicate_window_has_passed(networks, clock,
                                                                             service):
    networks.duplicate_window = 3 * 3600  # X's is some hours
    assert CREATE[service](networks, "Happy Friday!").status_code in (200, 201)
    clock.now += 2 * 3600
    assert CREATE[service](networks, "Happy Friday!").status_code in (400, 403, 422)
    clock.now += 3600 + 1
    assert CREATE[service](networks, "Happy Friday!").status_code in (200, 201)
    assert networks.created(service) == 2
    assert [c["outcome"] for c in networks.creates(service)] == [
        "created", "duplicate", "created"]


def test_a_post_seeded_in_the_past_shows_its_creation_time_and_ages_out_of_the_window(
        networks, clock):
    week_ago = clock.now - 7 * 86400
    old_tweet = networks.seed("twitter", "2244994945", "Happy Friday! https://buffer.com",
                              created_at=week_ago)
    old_post = networks.seed("facebook", "104", "Happy Friday!", created_at=week_ago)
    timeline = requests.get(f"{networks.url}/2/users/2244994945/tweets",
                            params={"max_results": "5", "tweet.fields": "entities,created_at"},
                            headers=bearer(X_TOKEN)).json()["data"]
    assert [(t["id"], t["created_at"]) for t in timeline] == [
        (old_tweet, time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(week_ago)))]
    assert timeline[0]["entities"]["urls"][0]["expanded_url"] == "https://buffer.com"
    feed = requests.get(f"{networks.url}/v25.0/104/feed", headers=bearer(FB_TOKEN),
                        params={"fields": "id,message,created_time"}).json()["data"]
    assert feed == [{"id": old_post, "message": "Happy Friday!", "created_time":
                     time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(week_ago))}]
    # a week on, the same text is no duplicate: both networks take it
    assert tweet(networks, "Happy Friday! https://buffer.com").status_code == 201
    assert facebook_post(networks, message="Happy Friday!").status_code == 200
    # seeded an hour ago, it is one
    networks.seed("twitter", "2244994945", "Recent", created_at=clock.now - 3600)
    assert tweet(networks, "Recent").status_code == 403


def test_every_answer_is_dated_by_the_network_s_clock(networks, clock):
    clock.now += 7200  # a network two hours ahead of this machine
    answer = tweet(networks, "Hi")
    date = email.utils.parsedate_to_datetime(answer.headers["Date"]).timestamp()
    assert date == int(clock.now)
    assert int(answer.headers["x-rate-limit-reset"]) - date <= RATE_WINDOW_SECONDS


# -- faults: what "exactly once" is tested against --------------------------------------------

@pytest.mark.parametrize("service, status", [("twitter", 503), ("facebook", 500),
                                             ("linkedin", 500)])
def test_error_after_create_creates_the_post_then_answers_5xx(networks, service, status):
    networks.fault(service, "error_after_create")
    response = CREATE[service](networks, "Once")
    assert response.status_code == status
    assert networks.created(service) == 1
    # the fault is spent: the retry meets the network's duplicate answer
    assert CREATE[service](networks, "Once").status_code in (400, 403, 422)
    assert networks.create_requests(service) == 2 and networks.created(service) == 1


@pytest.mark.parametrize("service", ["twitter", "facebook", "linkedin"])
def test_error_before_create_creates_nothing_for_count_requests(networks, service):
    networks.fault(service, "error_before_create", count=2)
    assert CREATE[service](networks, "Once").status_code >= 500
    assert CREATE[service](networks, "Once").status_code >= 500
    assert networks.created(service) == 0
    assert CREATE[service](networks, "Once").status_code in (200, 201)


def test_rate_limited_says_when_to_come_back_in_each_network_s_way(networks, clock):
    for service in ("twitter", "facebook", "linkedin"):
        networks.fault(service, "rate_limited", seconds=120)
    x, fb, li = (CREATE[s](networks, "Hi") for s in ("twitter", "facebook", "linkedin"))
    assert x.status_code == 429 and x.headers["x-rate-limit-remaining"] == "0"
    assert int(x.headers["x-rate-limit-reset"]) == int(clock.now) + 120
    assert fb.status_code == 400 and fb.json()["error"]["code"] == 4
    assert li.status_code == 429 and li.headers["Retry-After"] == "120"
    assert sum(networks.created(s) for s in ("twitter", "facebook", "linkedin")) == 0


def test_down_closes_the_connection_without_an_answer(networks):
    networks.fault("twitter", "down")
    with pytest.raises(requests.ConnectionError):
        tweet(networks, "Hi")
    assert networks.create_requests("twitter") == 1 and networks.created("twitter") == 0
    assert tweet(networks, "Hi").status_code == 201


@pytest.mark.parametrize("service", ["twitter", "facebook", "linkedin"])
def test_no_id_after_create_creates_the_post_and_answers_2xx_without_its_id(networks, service):
    networks.fault(service, "no_id_after_create")
    response = CREATE[service](networks, "Once")
    assert response.status_code in (200, 201)
    assert "x-restli-id" not in response.headers
    assert response.content == {"twitter": b'{"data": {}}', "facebook": b"{}",
                                "linkedin": b""}[service]
    assert networks.created(service) == 1


def test_hold_before_create_creates_only_once_released(networks):
    networks.fault("twitter", "hold_before_create")
    answers: list[requests.Response] = []
    holder = threading.Thread(target=lambda: answers.append(tweet(networks, "Slow")))
    holder.start()
    wait_until(lambda: networks.held == 1, timeout=5)
    assert networks.created("twitter") == 0 and networks.create_requests("twitter") == 1
    assert networks.release() == 1
    holder.join(5)
    assert [a.status_code for a in answers] == [201] and networks.created("twitter") == 1


def test_timeout_after_create_holds_the_answer_until_the_client_gives_up(networks):
    networks.fault("linkedin", "timeout_after_create")
    with pytest.raises(requests.Timeout):
        share(networks, "Slow", timeout=0.5)
    assert networks.created("linkedin") == 1
    wait_until(lambda: networks.held == 0, timeout=5)  # let go once the client left
    assert share(networks, "Slow").status_code == 422  # and the network remembers it


def test_hold_after_create_answers_only_once_released_and_blocks_nothing_else(networks):
    networks.fault("twitter", "hold_after_create")
    answers: list[requests.Response] = []
    holder = threading.Thread(target=lambda: answers.append(tweet(networks, "Held")))
    holder.start()
    wait_until(lambda: networks.held == 1, timeout=5)
    assert networks.created("twitter") == 1 and answers == []
    assert facebook_post(networks, message="meanwhile").status_code == 200
    assert tweet(networks, "Another").status_code == 201
    assert networks.release() == 1
    holder.join(5)
    assert [a.status_code for a in answers] == [201]


@pytest.mark.parametrize("service", ["twitter", "facebook", "linkedin"])
def test_the_same_post_sent_at_once_from_many_clients_is_created_once(networks, service):
    answers: list[int] = []
    senders = [threading.Thread(target=lambda: answers.append(
        CREATE[service](networks, "Raced").status_code)) for _ in range(8)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(10)
    assert sorted(answers)[0] in (200, 201) and sorted(answers)[1] in (400, 403, 422)
    assert networks.created(service) == 1 and networks.create_requests(service) == 8


def test_latency_slows_every_network_answer(networks):
    networks.latency_ms = 300
    started = time.monotonic()
    assert tweet(networks, "Hi").status_code == 201
    assert time.monotonic() - started >= 0.3


def test_a_scripted_failure_still_answers_in_the_network_s_shape(networks):
    networks.fail(503)
    response = facebook_post(networks, message="Hi")
    assert response.status_code == 503 and "error" in response.json()


# -- in its own process, as the local stack runs it -------------------------------------------

@pytest.fixture
def standin_process(tmp_path):
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"accounts": [
        {"service": "twitter", "token": X_TOKEN, "user_id": "2244994945",
         "username": "XDevelopers"},
        {"service": "facebook", "token": FB_TOKEN, "pages": ["104"]},
        {"service": "linkedin", "token": LI_TOKEN, "authors": ["urn:li:person:abc"]}]}))
    service = devstack.networks_server(accounts, log_path=tmp_path / "networks.log").start()
    yield service
    service.stop()


def test_the_control_api_drives_faults_and_shows_posts_out_of_process(standin_process):
    url = f"http://127.0.0.1:{standin_process.port}"
    control = Control(url)
    control.fault("twitter", "error_after_create")
    assert requests.post(f"{url}/2/tweets", json={"text": "Hi"},
                         headers=bearer(X_TOKEN)).status_code == 503
    [post] = control.posts("twitter")
    assert (post["text"], post["author"]) == ("Hi", "2244994945")
    control.fault("facebook", "hold_after_create")
    answers: list[requests.Response] = []
    holder = threading.Thread(target=lambda: answers.append(requests.post(
        f"{url}/v25.0/104/feed", data={"message": "Held"}, headers=bearer(FB_TOKEN))))
    holder.start()
    wait_until(lambda: control.stats()["held"] == 1, timeout=5)
    assert control.stats()["facebook"] == {"create_requests": 1, "created": 1}
    assert control.release() == 1
    holder.join(5)
    assert [a.status_code for a in answers] == [200]
    # seeded posts from the past, the duplicate window, and every create's outcome
    old = control.seed("twitter", "2244994945", "Weekly", created_at=time.time() - 3600)
    assert old in [p["id"] for p in control.posts("twitter")]
    assert requests.post(f"{url}/2/tweets", json={"text": "Weekly"},
                         headers=bearer(X_TOKEN)).status_code == 403
    control.set_duplicate_window(60)
    assert requests.post(f"{url}/2/tweets", json={"text": "Weekly"},
                         headers=bearer(X_TOKEN)).status_code == 201
    assert [c["outcome"] for c in control.creates("twitter")] == [
        "created", "duplicate", "created"]


def test_the_process_stops_on_sigterm(standin_process):
    standin_process.stop()
    assert standin_process.proc.returncode == 0


def test_control_refuses_an_unknown_fault(standin_process):
    with pytest.raises(urllib.error.HTTPError) as raised:
        Control(f"http://127.0.0.1:{standin_process.port}").fault("twitter", "explode")
    assert raised.value.code == 400
