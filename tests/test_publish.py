"""publish: exactly one post per update on each network's stand-in, whatever fails, and the
pipeline it starts (post-sent, a delayed analytics, Pusher). The consumer step by step, against
moto's server, a real redis-server and the stand-ins of X, Facebook and LinkedIn."""

from __future__ import annotations

import json
import time

import pytest

import devstack
from devstack.networks import Account, Networks
from fakes import FakePusher
from helpers import drain, log_events, process_all, queue_depth, send, wait_until
from workers.adapters import networks as social
from workers.adapters.notify import Notifier
from workers.adapters.producer import Producer
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.domain.links.counter import LinkCounter
from workers.domain.publishing.credentials import RedisCredentials
from workers.domain.publishing.publications import Publications
from workers.domain.publishing.ratelimits import RateLimits
from workers.queues import consumer_of, handlers
from workers.queues.publish import PublishUpdate, post_urls
from workers.runtime.consumer import Consumer, Handlers

TOKENS = {"twitter": "x-token-SECRET-9f8e", "facebook": "fb-token-SECRET-7d6c",
          "linkedin": "li-token-SECRET-5b4a"}
PAGE, AUTHOR = "104000000000001", "urn:li:organization:2414183"
ACCOUNTS = [Account("twitter", TOKENS["twitter"], user_id="2244994945", username="buffer"),
            Account("facebook", TOKENS["facebook"], pages=(PAGE,)),
            Account("linkedin", TOKENS["linkedin"], authors=(AUTHOR,))]
TARGETS = {"twitter": None, "facebook": PAGE, "linkedin": AUTHOR}
SERVICES = list(TOKENS)
# What a network saw of an update resolved after an unknown outcome: X and Facebook one create
# (the retry found the post); LinkedIn, which offers no lookup, a second refused as duplicate.
RESOLVED = {"twitter": ["created"], "facebook": ["created"], "linkedin": ["created", "duplicate"]}


def outcomes(networks: Networks, service: str) -> list[str]:
    return [c["outcome"] for c in networks.creates(service)]


@pytest.fixture
def networks():
    # Every network echoes a refused token: it must reach no reason and no log line.
    with Networks(accounts=ACCOUNTS, echo_token=frozenset(TOKENS)) as fake:
        yield fake


@pytest.fixture
def pusher():
    fake = FakePusher().start()
    yield fake
    fake.stop()


class Stack:
    """A publish consumer whose networks are the stand-ins; tokens in Redis."""

    def __init__(self, settings, networks, sqs, queues, prefix, redis_client):
        self.networks, self.sqs, self.redis = networks, sqs, redis_client
        self.url = {q: queues[prefix + q] for q in ("publish", "post-sent", "analytics")}
        self.dlq = queues[prefix + "publish-dlq"]
        for service, token in TOKENS.items():
            redis_client.hset("creds:p1", service, token)
        self.settings = settings.model_copy(update={
            "analytics_delay": 0, "publish_lease": 60,
            "network_options": {f"{s}_api_url": networks.url for s in SERVICES}})
        self.handler = PublishUpdate(
            Publications(redis_client, self.settings.publish_lease), RateLimits(redis_client),
            RedisCredentials(redis_client),
            # Timeouts short enough for a test of one; the behaviour is the same at 10 s.
            social.apis(self.settings, timeout=1.0), Producer(self.settings),
            Notifier.from_settings(self.settings), analytics_delay=self.settings.analytics_delay)
        self.consumer = Consumer("publish", self.settings, concurrency=1,
                                 handlers=Handlers(self.handler.handle,
                                                   before_ack=(self.handler.chain_batch,)))

    def send(self, service: str, update_id: str = "u1", **fields) -> dict:
        event = {"update_id": update_id, "profile_id": "p1", "service": service,
                 "text": f"Our launch post for {update_id} https://buffer.com/launch.",
                 **({"target": TARGETS[service]} if TARGETS[service] else {}), **fields}
        self.sqs.send_message(QueueUrl=self.url["publish"], MessageBody=json.dumps(event))
        return event

    def step(self):
        return self.consumer.process_batch(wait_seconds=1)

    def until_settled(self, timeout: float = 60):
        """Batches until the publish queue (in flight included) is empty."""
        def settled():
            self.consumer.process_batch(wait_seconds=1)
            return queue_depth(self.sqs, self.url["publish"]) == 0
        wait_until(settled, timeout=timeout, interval=0)

    def come_back_now(self):
        """What SQS does after the visibility timeout, without waiting it out."""
        self.consumer.backoff = type(self.consumer.backoff)(0)

    def published(self, update_id: str = "u1") -> dict[str, str]:
        return {k.decode(): v.decode()
                for k, v in self.redis.hgetall(f"published:{update_id}").items()}


@pytest.fixture
def stack(settings, networks, sqs, queues, prefix, redis_client):
    return Stack(settings, networks, sqs, queues, prefix, redis_client)


# -- the happy path, and the pipeline it starts -------------------------------------------------

@pytest.mark.parametrize("service", SERVICES)
def test_a_post_goes_out_once_and_starts_the_pipeline(stack, service, pusher, redis_client):
    stack.handler.notifier = Notifier.from_settings(stack.settings.model_copy(update={
        "pusher_app_id": pusher.app_id, "pusher_key": pusher.key,
        "pusher_secret": pusher.secret, "pusher_host": "127.0.0.1", "pusher_port": pusher.port,
        "pusher_ssl": False}))
    stack.send(service)
    assert stack.step().succeeded == 1
    [post] = stack.networks.posts(service)
    assert post["text"].startswith("Our launch post for u1")
    published = stack.published()
    assert published["service"] == service
    assert published["service_update_id"] == post["id"]
    assert abs(int(published["published_at"]) - int(redis_client.time()[0])) <= 5
    [sent] = [json.loads(m["Body"]) for m in drain(stack.sqs, stack.url["post-sent"])]
    assert sent == {"update_id": "u1", "profile_id": "p1", "service": service,
                    "created_at": int(published["published_at"]),
                    "urls": ["https://buffer.com/launch"]}
    [analytics] = [json.loads(m["Body"]) for m in drain(stack.sqs, stack.url["analytics"])]
    assert analytics == {"update_id": "u1", "profile_id": "p1", "service": service,
                         "service_update_id": post["id"]}
    assert pusher.events == [{
        "name": "update-published", "channels": ["private-profile-p1"],
        "data": {"update_id": "u1", "service": service, "service_update_id": post["id"]}}]


def test_analytics_waits_its_delay(stack):
    stack.handler.analytics_delay = 900
    stack.send("twitter")
    assert stack.step().succeeded == 1
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=stack.url["analytics"], AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert attributes["ApproximateNumberOfMessages"] == "0"


def test_the_same_update_enqueued_twice_goes_out_once(stack):
    stack.send("twitter")
    stack.send("twitter")
    stack.until_settled()
    assert len(stack.networks.posts("twitter")) == 1
    assert stack.networks.create_requests("twitter") == 1  # the second never asked
    assert queue_depth(stack.sqs, stack.dlq) == 0


def test_a_post_whose_chaining_failed_is_chained_by_the_next_delivery_not_posted_again(
        stack, capsys):
    away = stack.settings.model_copy(update={"endpoint_url": f"http://127.0.0.1:{devstack.free_port()}"})
    working, stack.handler.producer = stack.handler.producer, Producer(away)  # SQS away
    stack.send("facebook")
    assert stack.step().retried == 1
    said = capsys.readouterr().out
    assert "chaining after the post" in said and "handler.crashed" not in said  # expected
    assert stack.published()["service"] == "facebook"
    stack.handler.producer = working  # SQS is back
    stack.come_back_now()
    stack.until_settled()
    assert len(stack.networks.posts("facebook")) == 1
    assert len(drain(stack.sqs, stack.url["post-sent"])) == 1
    assert queue_depth(stack.sqs, stack.dlq) == 0


def test_post_sent_gets_the_link_and_every_url_of_the_text_once():
    assert post_urls("New: https://a.example/x, and (https://b.example/y). See https://a.example/x!",
                     "https://c.example/") == [
        "https://c.example/", "https://a.example/x", "https://b.example/y"]
    assert post_urls("no links here", None) == []


# -- unknown outcomes: resolved from the network, never posted twice ---------------------------

@pytest.mark.parametrize("service", SERVICES)
def test_an_error_after_the_network_created_the_post_is_resolved_not_reposted(stack, service):
    stack.networks.fault(service, "error_after_create")
    stack.send(service)
    first = stack.step()
    assert first.retried == 1 and not stack.published()
    assert stack.networks.created(service) == 1  # it went out, though the answer said 5xx
    stack.come_back_now()
    stack.until_settled()
    [post] = stack.networks.posts(service)
    assert stack.published()["service_update_id"] == post["id"]
    assert outcomes(stack.networks, service) == RESOLVED[service]  # never created again
    assert queue_depth(stack.sqs, stack.dlq) == 0
    # and the post's link counts once, through the post-sent it chained
    assert process_all(consumer_of("post-sent", stack.settings)).succeeded >= 1
    assert LinkCounter(stack.redis).counts(["buffer.com/launch"]) == [1]


@pytest.mark.parametrize("service", SERVICES)
def test_a_timeout_after_the_network_created_the_post_is_resolved_not_reposted(stack, service):
    stack.networks.fault(service, "timeout_after_create")
    stack.send(service)
    assert stack.step().retried == 1
    stack.come_back_now()
    stack.until_settled()
    [post] = stack.networks.posts(service)
    assert stack.published()["service_update_id"] == post["id"]
    assert outcomes(stack.networks, service) == RESOLVED[service]


@pytest.mark.parametrize("service", SERVICES)
def test_a_2xx_without_the_posts_id_is_resolved_not_reposted(stack, service):
    stack.networks.fault(service, "no_id_after_create")  # created; the answer names nothing
    stack.send(service)
    assert stack.step().retried == 1  # an unknown outcome: neither published nor dead
    assert not stack.published()
    stack.come_back_now()
    stack.until_settled()
    [post] = stack.networks.posts(service)
    assert stack.published()["service_update_id"] == post["id"]
    assert outcomes(stack.networks, service) == RESOLVED[service]
    assert queue_depth(stack.sqs, stack.dlq) == 0


@pytest.mark.parametrize("service", SERVICES)
def test_an_error_before_anything_was_created_posts_on_the_next_delivery(stack, service):
    stack.networks.fault(service, "error_before_create")
    stack.send(service)
    assert stack.step().retried == 1
    assert stack.networks.created(service) == 0
    stack.come_back_now()
    stack.until_settled()
    assert len(stack.networks.posts(service)) == 1
    assert stack.published()["service"] == service


# -- recurring ("evergreen") posts: the author's earlier post of the same text is not ours -------

WEEK = 7 * 86400
AUTHORS = {"twitter": "2244994945", "facebook": PAGE}


@pytest.mark.parametrize("service", ["twitter", "facebook"])
def test_a_recurring_post_whose_create_failed_before_creating_goes_out_again(stack, service):
    # Given last week's post of the same text (past the network's duplicate window)
    text = "Happy Friday! https://buffer.com/weekly"
    old = stack.networks.seed(service, AUTHORS[service], text,
                              created_at=stack.networks.clock() - WEEK)
    # When this week's create gets a 5xx before the network created anything
    stack.networks.fault(service, "error_before_create")
    stack.send(service, "friday", text=text)
    assert stack.step().retried == 1
    stack.come_back_now()
    stack.until_settled()
    # Then the retry posts it, and records this week's post, not last week's
    new = [p["id"] for p in stack.networks.posts(service) if p["id"] != old]
    assert len(new) == 1
    assert stack.published("friday")["service_update_id"] == new[0]
    assert queue_depth(stack.sqs, stack.dlq) == 0


@pytest.mark.parametrize("service", ["twitter", "facebook"])
def test_an_earlier_post_within_the_duplicate_window_is_never_recorded_as_ours(stack, service):
    # Given the author's own post of the same text an hour ago (the network refuses it again)
    text = "Happy Friday! https://buffer.com/weekly"
    stack.networks.seed(service, AUTHORS[service], text,
                        created_at=stack.networks.clock() - 3600)
    stack.networks.fault(service, "error_before_create")
    stack.send(service, "friday", text=text)
    # When every delivery meets the network's duplicate answer
    stack.come_back_now()
    stack.until_settled()
    # Then it is dead-lettered after its receives, never published as the old post
    assert not stack.published("friday")
    [dead] = drain(stack.sqs, stack.dlq)
    assert json.loads(dead["Body"])["update_id"] == "friday"
    assert stack.networks.created(service) == 1  # the author's own, alone


# -- rate limits: the whole fleet waits for the reset ------------------------------------------

def test_a_429_stops_every_call_for_that_profile_until_the_reset(stack, redis_client):
    stack.networks.fault("twitter", "rate_limited", seconds=4)
    stack.send("twitter", "u1")
    result = stack.step()
    assert result.retried == 1 and result.deferred == 1  # waiting its turn: no pause
    assert 0 < redis_client.pttl("ratelimit:twitter:p1") <= 5000
    asked = stack.networks.create_requests("twitter")
    other_daemon = Consumer("publish", stack.settings,
                            handlers=handlers("publish", stack.settings))
    stack.send("twitter", "u2")
    assert other_daemon.process_batch(wait_seconds=1).deferred == 1
    assert stack.networks.create_requests("twitter") == asked  # nobody asked X again
    # Both come back at the reset (their visibility was set to it), and go out then.
    stack.until_settled()
    assert len(stack.networks.posts("twitter")) == 2


def test_a_spent_window_reported_with_a_success_holds_the_next_call(stack, redis_client):
    stack.networks.limits["twitter"] = 1
    stack.send("twitter")
    assert stack.step().succeeded == 1  # x-rate-limit-remaining: 0 came with it
    assert redis_client.pttl("ratelimit:twitter:p1") > 0
    stack.send("twitter", "u2")
    assert stack.step().deferred == 1
    assert stack.networks.create_requests("twitter") == 1


def test_a_message_waiting_for_the_reset_comes_back_at_the_reset(stack, redis_client):
    stack.networks.fault("linkedin", "rate_limited", seconds=300)
    delays = []
    requeue = stack.consumer.sqs.requeue
    stack.consumer.sqs.requeue = lambda waits: (
        delays.extend(d for _, d in waits), requeue(waits))[1]
    stack.send("linkedin")
    stack.step()
    assert 295 <= delays[-1] <= 301
    depth = stack.sqs.get_queue_attributes(QueueUrl=stack.url["publish"], AttributeNames=[
        "ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessages"])["Attributes"]
    assert depth == {"ApproximateNumberOfMessagesDelayed": "1",
                     "ApproximateNumberOfMessages": "0"}


def test_a_message_rate_limited_for_more_windows_than_its_receives_is_never_dead_lettered(
        stack):
    windows = stack.settings.max_receives + 2  # the redrive policy's receives, and more
    stack.networks.fault("twitter", "rate_limited", count=windows, seconds=1)
    stack.send("twitter")
    stack.until_settled()
    [post] = stack.networks.posts("twitter")
    assert stack.published()["service_update_id"] == post["id"]
    assert stack.networks.create_requests("twitter") == windows + 1
    assert queue_depth(stack.sqs, stack.dlq) == 0


def test_a_message_that_waited_still_goes_to_the_dlq_after_its_receives_of_failing(stack):
    # Given a message that failed once (a 5xx), then waited out a rate limit: sent again,
    # its copy's receives counted by SQS from 0
    stack.networks.fault("twitter", "error_before_create")
    stack.networks.fault("twitter", "rate_limited", seconds=1)
    stack.send("twitter")
    assert stack.step().retried == 1
    stack.come_back_now()
    wait_until(lambda: stack.step().deferred, timeout=30)
    # When the network then fails every call
    stack.networks.fail(503, times=1000)
    stack.until_settled()
    # Then it is dead-lettered once its failed receives, the first copy's too, reach
    # WORKERS_MAX_RECEIVES: waiting spent none of them, and failing was not forgiven
    [dead] = drain(stack.sqs, stack.dlq)
    assert dead["MessageAttributes"]["workers.receive_count"]["StringValue"] == str(
        stack.settings.max_receives)
    assert not stack.published()


def test_a_rate_limit_is_waited_out_by_the_networks_clock_not_the_workers(
        settings, sqs, queues, prefix, redis_client):
    # Given X's clock two hours ahead of the worker's (and Redis's)
    with Networks(accounts=ACCOUNTS, clock=lambda: time.time() + 7200) as skewed:
        stack = Stack(settings, skewed, sqs, queues, prefix, redis_client)
        skewed.fault("twitter", "rate_limited", seconds=300)  # x-rate-limit-reset: X's + 300
        stack.send("twitter")
        assert stack.step().deferred == 1
    # Then the fleet waits the five minutes X means, not two hours more
    assert 295_000 <= redis_client.pttl("ratelimit:twitter:p1") <= 301_000


# -- refusals: the DLQ, with the network's reason, and nothing posted --------------------------

@pytest.mark.parametrize("service", SERVICES)
def test_a_bad_token_goes_to_the_dlq_with_the_networks_reason(stack, service, redis_client):
    redis_client.hset("creds:p1", service, "revoked-token-SECRET")
    stack.send(service)
    assert stack.step().dead_lettered == 1
    [dead] = drain(stack.sqs, stack.dlq)
    reason = dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"]
    assert f"{service} api 40" in reason
    assert "SECRET" not in reason
    assert stack.networks.created(service) == 0
    assert not stack.published()


# Each network's duplicate answer, in its words: X's 403, Graph's error 506, LinkedIn's 422.
DUPLICATE_WORDS = {"twitter": "duplicate content", "facebook": "506",
                   "linkedin": "is a duplicate of urn:li:share:"}


@pytest.mark.parametrize("service", SERVICES)
def test_text_the_author_posted_themselves_is_refused_not_taken_for_ours(stack, service):
    stack.send(service, "mine")
    stack.until_settled()
    stack.send(service, "u2", text="Our launch post for mine https://buffer.com/launch.")
    assert stack.step().dead_lettered == 1
    [dead] = drain(stack.sqs, stack.dlq)
    assert DUPLICATE_WORDS[service] in dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"]
    assert len(stack.networks.posts(service)) == 1
    assert not stack.published("u2")


@pytest.mark.parametrize("event", [
    {"service": "facebook", "target": None},  # no page to post to
    {"service": "linkedin", "target": "someone"},  # not an author URN
    {"service": "myspace"},
    {"service": "twitter", "text": "   "},
])
def test_an_event_no_network_could_take_is_dead_lettered_by_its_schema(stack, event):
    body = {"update_id": "u1", "profile_id": "p1", "text": "hello", **event}
    stack.sqs.send_message(QueueUrl=stack.url["publish"],
                           MessageBody=json.dumps({k: v for k, v in body.items() if v is not None}))
    assert stack.step().dead_lettered == 1
    assert sum(stack.networks.create_requests(s) for s in SERVICES) == 0


# -- a real daemon killed at the worst moment ---------------------------------------------------

@pytest.mark.parametrize("service", SERVICES)
def test_a_daemon_killed_between_the_networks_post_and_its_answer_leaves_one_post(
        service, daemons, env, networks, sqs, queues, prefix, redis_client):
    for name, token in TOKENS.items():
        redis_client.hset("creds:p1", name, token)
    # A lease shorter than the visibility timeout (2 s): the redelivery finds it run out.
    environment = {**env, "WORKERS_PUBLISH_LEASE": "1", "WORKERS_ANALYTICS_DELAY": "0",
                   **{f"WORKERS_{s.upper()}_API_URL": networks.url for s in SERVICES}}
    networks.fault(service, "hold_after_create")  # created, then the answer waits
    first = daemons("publish", "--concurrency", "2", environment=environment)
    event = {"update_id": "k1", "profile_id": "p1", "service": service,
             "text": "Killed mid-call https://buffer.com/k1",
             **({"target": TARGETS[service]} if TARGETS[service] else {})}
    sqs.send_message(QueueUrl=queues[prefix + "publish"], MessageBody=json.dumps(event))
    wait_until(lambda: networks.held, timeout=30)
    assert networks.created(service) == 1
    first.kill()  # SIGKILL: no record of the post was written, the message was not deleted
    first.wait()
    networks.release()
    assert not redis_client.exists("published:k1")
    daemons("publish", environment=environment)
    wait_until(lambda: queue_depth(sqs, queues[prefix + "publish"]) == 0, timeout=90)
    [post] = networks.posts(service)
    assert redis_client.hget("published:k1", "service_update_id").decode() == post["id"]
    assert queue_depth(sqs, queues[prefix + "publish-dlq"]) == 0
    [sent] = [json.loads(m["Body"]) for m in drain(sqs, queues[prefix + "post-sent"])]
    assert sent["urls"] == ["https://buffer.com/k1"]


def test_a_create_slower_than_the_lease_is_never_made_twice_by_two_daemons(
        daemons, env, networks, sqs, queues, prefix, redis_client):
    for name, token in TOKENS.items():
        redis_client.hset("creds:p1", name, token)
    # A one-second lease, and a network that takes longer than that to create the post
    environment = {**env, "WORKERS_PUBLISH_LEASE": "1", "WORKERS_ANALYTICS_DELAY": "0",
                   **{f"WORKERS_{s.upper()}_API_URL": networks.url for s in SERVICES}}
    networks.fault("twitter", "hold_before_create")
    holders = [daemons("publish", "--concurrency", "1", environment=environment)
               for _ in range(2)]
    event = {"update_id": "slow1", "profile_id": "p1", "service": "twitter",
             "text": "Slow network https://buffer.com/slow"}
    send(sqs, queues[prefix + "publish"], event, event)  # one copy for each daemon
    wait_until(lambda: networks.held, timeout=30)

    def waits() -> int:
        return sum("another daemon is publishing" in str(e.get("reason"))
                   for d in holders for e in log_events(d.log_path))
    # When the other copy comes back again and again, long after a lease would have run out
    wait_until(lambda: networks.create_requests("twitter") > 1
               or waits() > int(env["WORKERS_MAX_RECEIVES"]), timeout=60)
    networks.release()
    wait_until(lambda: queue_depth(sqs, queues[prefix + "publish"]) == 0, timeout=60)
    # Then the update was created once, recorded, and nothing was dead-lettered for waiting
    assert networks.create_requests("twitter") == 1
    [post] = networks.posts("twitter")
    assert redis_client.hget("published:slow1", "service_update_id").decode() == post["id"]
    assert queue_depth(sqs, queues[prefix + "publish-dlq"]) == 0


@pytest.mark.parametrize("service,target,says", [
    ("facebook", "555000000000999", "facebook api 400"),  # a page this token cannot post to
    ("linkedin", "urn:li:organization:1", "linkedin api 403"),  # an author it cannot post as
])
def test_a_target_the_token_cannot_post_to_is_dead_lettered_with_the_networks_reason(
        stack, service, target, says):
    stack.send(service, target=target)
    assert stack.step().dead_lettered == 1
    [dead] = drain(stack.sqs, stack.dlq)
    assert says in dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"]
    assert stack.networks.created(service) == 0
    assert not stack.published()
