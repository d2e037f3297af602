"""Adding a network is one module: an adapter registered with ``@network`` is built by
``apis()`` and may be named as events' ``service``, no other file touched; and every network
has its stand-in (docs/networks.rst)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from devstack import networks as standins
from workers.adapters import networks as social
from workers.adapters.networks.base import NETWORKS, network
from workers.adapters.networks.posting import Poster
from workers.core import events
from workers.core.events import InvalidEvent, Target, validate
from workers.core.settings import Settings

ANALYTICS = {"update_id": "u1", "profile_id": "p1", "service_update_id": "9"}
PUBLISH = {"update_id": "u1", "profile_id": "p1", "text": "Hello"}


@pytest.fixture
def registries() -> Iterator[None]:
    """The registries as they are, put back after the test: its network leaves no trace."""
    services, networks = dict(events.SERVICES), dict(NETWORKS)
    yield
    events.SERVICES.clear()
    events.SERVICES.update(services)
    NETWORKS.clear()
    NETWORKS.update(networks)


def test_a_registered_network_is_built_by_apis_and_named_by_events(registries):
    # Given a network's module: its adapter, registered with its API's URL, where it posts and
    # its options (nothing else of the package is touched: no settings field, no schema)
    @network("mastodon", url="https://mastodon.social",
             target=Target("the instance URL", prefix="https://"),
             options={"visibility": "public"})
    class Mastodon(Poster):
        def __init__(self, base_url: str, *args: Any, visibility: str = "", **kwargs: Any):
            super().__init__(base_url, *args, **kwargs)
            self.visibility = visibility

        def request(self, post_id: str) -> tuple[str, dict[str, str], dict[str, str]]:
            return f"/api/v1/statuses/{post_id}", {}, {}

        def parse(self, body: dict[str, Any], post_id: str) -> dict[str, Any]:
            return {"likes": body.get("favourites_count"), "comments": body.get("replies_count")}

    # and an environment pointing it at a stand-in, with one option of its own
    settings = Settings.from_env({"WORKERS_MASTODON_API_URL": "http://mastodon.test",
                                  "WORKERS_MASTODON_API_VISIBILITY": "unlisted"})

    # When the adapters are built, and events name it
    built = social.apis(settings)
    analytics = validate("analytics", {**ANALYTICS, "service": "mastodon"})

    # Then it is among them, built from the settings it named, beside every other network
    assert isinstance(built["mastodon"], Mastodon) and built["mastodon"].service == "mastodon"
    assert built["mastodon"].base_url == "http://mastodon.test"
    assert built["mastodon"].visibility == "unlisted"
    assert {"twitter", "facebook", "linkedin"} < set(built)
    # ... and without those variables, what its module declares
    default = social.apis(Settings.from_env({}))["mastodon"]
    assert (default.base_url, default.visibility) == ("https://mastodon.social", "public")
    # ... an event may name it, and a publish event needs the target its registration says
    assert analytics.service == "mastodon"  # type: ignore[attr-defined]
    with pytest.raises(InvalidEvent, match=r"target \(the instance URL\) is required for "
                                           "mastodon"):
        validate("publish", {**PUBLISH, "service": "mastodon", "target": "mastodon.test"})
    validate("publish", {**PUBLISH, "service": "mastodon", "target": "https://mastodon.test"})


def test_an_unregistered_service_is_an_invalid_event_naming_the_known_ones():
    with pytest.raises(InvalidEvent) as raised:
        validate("publish", {**PUBLISH, "service": "myspace"})
    assert raised.value.reason == ("invalid publish event: service: unknown service 'myspace' "
                                   "(known: facebook, linkedin, twitter)")


def test_the_registered_networks_are_what_events_accept():
    assert set(events.SERVICES) == set(NETWORKS) == {"twitter", "facebook", "linkedin"}


def test_every_network_has_its_public_api_and_its_standin():
    for name, registered in NETWORKS.items():
        assert registered.url.startswith("https://"), name
    assert set(standins.SERVICES) == set(NETWORKS)  # make run and the tests post to each
    assert set(standins.api_env("http://x")) == {f"WORKERS_{n.upper()}_API_URL" for n in NETWORKS}
    assert {a.service for a in standins.sample_accounts()} == set(NETWORKS)
