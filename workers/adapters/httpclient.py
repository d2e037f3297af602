"""One shape of ``requests.Session`` for every HTTP peer of a daemon (Pusher, social APIs)."""

from __future__ import annotations

import http.cookiejar
import re

import requests
from requests.adapters import HTTPAdapter

from workers.core.text import redact, truncate

# Handler threads share one session per peer; a pool smaller than the busiest daemon's
# concurrency (20 by default) would open and discard a connection per call past it.
POOL_SIZE = 32
# Query strings may carry signatures (Pusher); an error message we log never needs them.
_QUERY = re.compile(r"\?[^\s'\")]*")
# An error's text in a log line or a DLQ reason: enough to diagnose, never a response dump.
MAX_ERROR_TEXT = 200


def session(pool_size: int = POOL_SIZE) -> requests.Session:
    """A session safe to share between handler threads: pooled, and keeping no cookies (a
    cookie one profile's call received must never ride along with another profile's call)."""
    s = requests.Session()
    s.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


def describe(exc: BaseException, *secrets: str | None) -> str:
    """``Type: message``, short, with query strings and the given secrets blanked out (in
    any escaping: requests shows a header it refused as its repr)."""
    text = redact(f"{type(exc).__name__}: {exc}", *secrets)
    return truncate(_QUERY.sub("?…", text), MAX_ERROR_TEXT)
