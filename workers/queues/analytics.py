"""analytics: fetch a post's engagement from its network, store it in Redis, tell Pusher."""

from __future__ import annotations

import time
from typing import Any, Mapping

from workers.adapters import networks
from workers.adapters.networks.base import SocialAPI
from workers.adapters.notify import Notifier
from workers.adapters.redisconn import Client
from workers.core.events import Analytics
from workers.core.settings import Settings
from workers.domain.publishing.credentials import CredentialStore, RedisCredentials
from workers.domain.publishing.engagement import EngagementStore
from workers.runtime.consumer import Handlers


class FetchEngagement:
    def __init__(self, credentials: CredentialStore, networks: Mapping[str, SocialAPI],
                 engagement: EngagementStore, notifier: Notifier):
        self.credentials = credentials
        self.networks = networks
        self.engagement = engagement
        self.notifier = notifier

    def handle(self, event: Analytics) -> dict[str, Any]:
        token = self.credentials.token(event.profile_id, event.service)
        counts = self.networks[event.service].engagement(event.service_update_id, token)
        fetched_at = int(time.time())
        fields: dict[str, str | int] = {
            **counts, "service": event.service, "service_update_id": event.service_update_id,
            "profile_id": event.profile_id}
        stored = self.engagement.store(event.update_id, fields, fetched_at)
        if stored:  # a newer fetch already told the browser
            self.notifier.analytics_updated(event.profile_id, event.update_id, event.service,
                                            counts, fetched_at)
        return {"service": event.service, "stored": stored, **counts}


def build(settings: Settings, redis: Client) -> Handlers:
    fetch = FetchEngagement(RedisCredentials(redis), networks.apis(settings),
                            EngagementStore(redis), Notifier.from_settings(settings))
    return Handlers(fetch.handle)
