"""The social networks' APIs behind one interface (``SocialAPI.engagement``, and
``Poster.create`` / ``find`` for publishing), the access tokens they need
(``CredentialStore``), each update's publication (``Publications``) and the networks' rate
limits shared by the fleet (``RateLimits``)."""

from __future__ import annotations

from typing import Any

import requests

from workers.adapters import httpclient
from workers.adapters.networks.base import Engagement, SocialAPI
from workers.adapters.networks.facebook import Facebook
from workers.adapters.networks.linkedin import LinkedIn
from workers.adapters.networks.posting import Poster
from workers.adapters.networks.twitter import Twitter
from workers.core.settings import Settings


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


__all__ = ["Engagement", "Poster", "SocialAPI", "apis"]
