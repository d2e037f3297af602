"""The social networks' APIs behind one interface (``SocialAPI.engagement``), and the access
tokens they need (``CredentialStore``)."""

from __future__ import annotations

from typing import Any

import requests

from workers.peers import httpclient
from workers.settings import Settings
from workers.social.base import Engagement, SocialAPI
from workers.social.credentials import CredentialStore, RedisCredentials
from workers.social.facebook import Facebook
from workers.social.linkedin import LinkedIn
from workers.social.twitter import Twitter


def apis(settings: Settings, session: requests.Session | None = None,
         **options: Any) -> dict[str, SocialAPI]:
    """One adapter per service of ``events.SERVICES``, sharing one connection pool."""
    session = session or httpclient.session()
    return {
        "twitter": Twitter(settings.twitter_api_url, session, **options),
        "facebook": Facebook(settings.facebook_api_url, session,
                             version=settings.facebook_api_version, **options),
        "linkedin": LinkedIn(settings.linkedin_api_url, session,
                             version=settings.linkedin_api_version, **options),
    }


__all__ = ["CredentialStore", "Engagement", "RedisCredentials", "SocialAPI", "apis"]
