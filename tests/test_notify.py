"""Pusher, best effort: the Notifier against a fake Pusher that checks signatures, and a real
`workers run post-sent` daemon notifying it (or failing to, and counting anyway)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

import devstack
from fakes import FakePusher
from helpers import log_events, queue_depth, wait_until
from workers.adapters.notify import Notifier
from workers.core.settings import Settings
from workers.domain.links.counter import LinkCounter


@pytest.fixture
def fake_pusher():
    fake = FakePusher().start()
    yield fake
    fake.stop()


def pusher_settings(fake: FakePusher, **changes) -> Settings:
    return Settings.from_env(fake.env()).model_copy(update=changes)


def failures(event: str) -> float:
    value = REGISTRY.get_sample_value("workers_pusher_failures_total", {"event": event})
    return value or 0.0


# -- the Notifier --------------------------------------------------------------------------------

def test_without_pusher_settings_nothing_is_sent():
    notifier = Notifier.from_settings(Settings())
    assert not notifier.enabled
    assert notifier.trigger("private-profile-p1", "update-sent", {"update_id": "u1"}) is False


def test_a_trigger_reaches_pusher_signed_with_the_app_secret(fake_pusher):
    notifier = Notifier.from_settings(pusher_settings(fake_pusher))
    assert notifier.trigger("private-profile-p1", "update-sent", {"update_id": "u1"})
    assert fake_pusher.rejected == []
    assert fake_pusher.events == [{"name": "update-sent", "channels": ["private-profile-p1"],
                                   "data": {"update_id": "u1"}}]


def test_a_wrong_secret_is_refused_logged_and_counted_but_never_shown(fake_pusher):
    notifier = Notifier.from_settings(pusher_settings(fake_pusher, pusher_secret="not-the-secret"))
    before = failures("update-sent")
    with capture_logs() as logs:
        assert notifier.trigger("private-profile-p1", "update-sent", {}) is False
    assert fake_pusher.rejected == ["Invalid signature"]
    [failed] = [e for e in logs if e["event"] == "pusher.failed"]
    assert failed["channel"] == "private-profile-p1" and "PusherBadAuth" in failed["error"]
    assert "not-the-secret" not in json.dumps(logs)
    assert failures("update-sent") == before + 1


@pytest.mark.parametrize("outage", ["answers 500", "not listening", "hangs"])
def test_a_pusher_outage_is_logged_and_counted_never_raised(fake_pusher, outage):
    settings = pusher_settings(fake_pusher)
    if outage == "answers 500":
        fake_pusher.fail(500)
    elif outage == "not listening":
        settings = settings.model_copy(update={"pusher_port": devstack.free_port()})
    else:
        fake_pusher.hanging = True
    notifier = Notifier.from_settings(settings, timeout=0.3)
    before = failures("analytics-updated")
    with capture_logs() as logs:
        assert notifier.analytics_updated("p1", "u1", "twitter", {"likes": 1}, 1) is False
    assert [e["event"] for e in logs] == ["pusher.failed"]
    assert fake_pusher.secret not in json.dumps(logs)
    assert failures("analytics-updated") == before + 1


def test_a_non_numeric_app_id_turns_pusher_off_with_a_log_line(fake_pusher):
    with capture_logs() as logs:
        notifier = Notifier.from_settings(pusher_settings(fake_pusher, pusher_app_id="abc"))
    assert not notifier.enabled
    assert [e["event"] for e in logs] == ["pusher.misconfigured"]
    assert fake_pusher.secret not in json.dumps(logs)


def test_a_post_with_many_links_notifies_their_count_within_pushers_size_limit(fake_pusher):
    urls = [f"example.com/{i:04d}/" + "x" * 90 for i in range(500)]
    assert Notifier.from_settings(pusher_settings(fake_pusher)).update_sent("p1", "u1", urls)
    [event] = fake_pusher.events
    assert event["data"]["url_count"] == 500
    assert 0 < len(event["data"]["urls"]) < 500
    assert event["data"]["urls"] == urls[:len(event["data"]["urls"])]


# -- a real post-sent daemon -------------------------------------------------------------------

@pytest.fixture
def daemon(daemons):
    return lambda environment: daemons("post-sent", "--concurrency", "2",
                                       environment=environment)


def post(update_id: str, *urls: str) -> str:
    return json.dumps({"update_id": update_id, "profile_id": "p1", "created_at": 1480431305,
                       "urls": list(urls)})


def test_post_sent_notifies_pusher_with_a_valid_signature(daemon, env, sqs, queues, prefix,
                                                         fake_pusher):
    daemon({**env, **fake_pusher.env()})
    source = queues[prefix + "post-sent"]
    sqs.send_message(QueueUrl=source, MessageBody=post("u1", "https://www.Buffer.com/#top",
                                                       "http://a.com/x?utm_source=t"))
    sqs.send_message(QueueUrl=source, MessageBody=post("u2"))  # no URL: still notifies
    wait_until(lambda: len(fake_pusher.events) == 2, timeout=30)
    assert fake_pusher.rejected == []
    by_update = {e["data"]["update_id"]: e for e in fake_pusher.events}
    assert by_update["u1"] == {"name": "update-sent", "channels": ["private-profile-p1"],
                               "data": {"update_id": "u1", "urls": ["buffer.com", "a.com/x"],
                                        "url_count": 2}}
    assert by_update["u2"]["data"] == {"update_id": "u2", "urls": [], "url_count": 0}
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=10)


@pytest.mark.parametrize("outage", ["answers 500", "not listening"])
def test_a_pusher_outage_neither_fails_nor_stops_counting(daemon, env, sqs, queues, prefix,
                                                          redis_client, fake_pusher, outage):
    pusher_env = fake_pusher.env()
    if outage == "answers 500":
        fake_pusher.fail(500, times=100)
    else:
        pusher_env["PUSHER_PORT"] = str(devstack.free_port())
    proc = daemon({**env, **pusher_env})
    source = queues[prefix + "post-sent"]
    sqs.send_message(QueueUrl=source, MessageBody=post("u1", "https://buffer.com"))
    wait_until(lambda: LinkCounter(redis_client).counts(["buffer.com"]) == [1], timeout=30)
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=10)  # handled, deleted
    events = log_events(proc.log_path)
    failed = [e for e in events if e["event"] == "pusher.failed"]
    assert failed and failed[0]["channel"] == "private-profile-p1"
    handled = [e for e in events if e["event"] == "message.handled"]
    assert [e["outcome"] for e in handled] == ["succeeded"]
    assert fake_pusher.secret not in proc.log_path.read_text()
    assert fake_pusher.events == []
