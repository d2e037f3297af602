"""The social networks' APIs behind one interface (``SocialAPI.engagement``, and
``Poster.create`` / ``find`` for publishing), one adapter per network, built by ``apis``.

Each network is one module here (twitter.py, facebook.py, linkedin.py) whose adapter registers
itself (``@network``, base.py); importing this package imports every module of it, so every
network is registered wherever any of it is used. docs/networks.rst: adding a network.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import requests

from workers.adapters import httpclient
from workers.adapters.networks.base import NETWORKS, Engagement, SocialAPI
from workers.adapters.networks.posting import Poster
from workers.core.settings import Settings


def apis(settings: Settings, session: requests.Session | None = None,
         **options: Any) -> dict[str, Poster]:
    """One adapter per registered network, sharing one connection pool."""
    session = session or httpclient.session()
    built: dict[str, Poster] = {}
    for name, net in NETWORKS.items():
        given: dict[str, Any] = {keyword: settings.network_option(name, keyword, default)
                                 for keyword, default in net.options.items()}
        adapter = net.adapter(settings.network_option(name, "url", net.url), session, **given,
                              **options)
        if not isinstance(adapter, Poster):  # publish posts through every network
            raise TypeError(f"network {name}: {net.adapter.__name__} is not a Poster")
        built[name] = adapter
    return built


def _register_every_network() -> None:
    """Imports each module of this package: a network's registers its adapter."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_register_every_network()

__all__ = ["NETWORKS", "Engagement", "Poster", "SocialAPI", "apis"]
