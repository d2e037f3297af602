"""The social networks' APIs behind one interface (``SocialAPI.engagement``, and
``Poster.create`` / ``find`` for publishing), the access tokens they need
(``CredentialStore``), each update's publication (``Publications``) and the networks' rate
limits shared by the fleet (``RateLimits``)."""

from __future__ import annotations

from typing import Any

import requests

from workers.peers import httpclient
from workers.settings import Settings
from workers.social.base import Engagement, SocialAPI
from workers.social.credentials import CredentialStore, RedisCredentials
from workers.social.facebook import Facebook
from workers.social.linkedin import LinkedIn
from workers.social.posting import Poster
from workers.social.publications import Publications
from workers.social.ratelimits import RateLimits
from workers.social.twitter import Twitter


def apis(settings: Settings, session: requests.Session | None = None,
         **options: Any) -> dict[str, Poster]:
    """One adapter per service of ``events.SERVICES``, sharing one connection pool."""
    session = session or httpclient.session()
    return {
        "twitter": Twitter(settings.twitter_api_url, session, **options),
        "facebook": Facebook(settings.facebook_api_url, session,
                             version=settings.facebook_api_version, **options),
        "linkedin": LinkedIn(settings.linkedin_api_url, session,
                             version=settings.linkedin_api_version, **options),
    }


__all__ = ["CredentialStore", "Engagement", "Poster", "Publications", "RateLimits",
           "RedisCredentials", "SocialAPI", "apis"]
