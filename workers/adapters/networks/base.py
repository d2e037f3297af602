"""One interface over the social networks' APIs: a post's engagement, as one dict of counts.

Each network is a small subclass saying where to ask (``request``) and how to read the answer
(``parse``); this class does the HTTP call and turns every failure into the runtime's two kinds:
429, 5xx, timeouts and connection errors are transient, the rest of 4xx permanent.

Each network's module registers its subclass with ``@network(name, ...)``: events may then name
it as their ``service`` and ``workers.adapters.networks.apis`` builds it from the settings it names.
"""

from __future__ import annotations

import email.utils
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import requests

from workers.adapters import httpclient
from workers.core.errors import PermanentError, TransientError
from workers.core.events import Target, register_service
from workers.core.text import redact as text_redact

# Connect: just over TCP's 3 s SYN retransmit, as requests advises. Read: a busy post's counts
# take the Graph API a few seconds at worst; past that the peer is in trouble, and the message
# is better retried later than holding a handler thread (the heartbeat keeps it hidden meanwhile).
CONNECT_TIMEOUT_SECONDS = 3.05
READ_TIMEOUT_SECONDS = 10
# Every network reports these (0 when it says nothing); some add more (shares, impressions...).
COMMON_METRICS = ("likes", "comments")

Engagement = dict[str, int]


class SocialAPI(ABC):
    service: ClassVar[str]

    def __init__(self, base_url: str, session: requests.Session | None = None,
                 timeout: float | tuple[float, float] = (CONNECT_TIMEOUT_SECONDS,
                                                         READ_TIMEOUT_SECONDS)):
        self.base_url = base_url.rstrip("/")
        self.session = session or httpclient.session()
        self.timeout = timeout

    def engagement(self, post_id: str, token: str) -> Engagement:
        """The post's counts; TransientError or PermanentError (never with the token) else."""
        response = self._get(post_id, token)
        try:
            body = response.json()
        except ValueError:  # a 200 that is not JSON: a proxy or an outage page, not the API
            raise TransientError(f"{self.service} api answered {response.status_code} "
                                 "with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise TransientError(f"{self.service} api answered JSON that is not an object")
        try:
            return normalize(self.parse(body, post_id))
        except PermanentError as exc:  # a 200 saying why (X's "errors"), in the API's words
            raise PermanentError(redact(exc.reason, token)) from None

    # -- what each network says -------------------------------------------------------------

    @abstractmethod
    def request(self, post_id: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """Path (under the base URL), query parameters and extra headers of the call."""

    @abstractmethod
    def parse(self, body: dict[str, Any], post_id: str) -> dict[str, Any]:
        """The counts in a 2xx answer, by our names; PermanentError if it says the post is gone."""

    def error_message(self, body: Any) -> str:
        """The API's own short explanation of an error answer."""
        if isinstance(body, dict):
            for key in ("message", "detail", "title", "error_description", "error"):
                if isinstance(body.get(key), str):
                    return body[key]
        return ""

    def is_transient(self, response: requests.Response) -> bool:
        return response.status_code in (408, 429) or response.status_code >= 500

    def retry_after(self, response: requests.Response) -> float | None:
        # An HTTP date in Retry-After is the network's: counted from its own Date.
        return parse_retry_after(response.headers.get("Retry-After"), network_now(response))

    # -- the call ---------------------------------------------------------------------------

    def _get(self, post_id: str, token: str) -> requests.Response:
        path, params, headers = self.request(post_id)
        response = self.call("GET", path, token, params=params, headers=headers)
        if 200 <= response.status_code < 300:
            return response
        reason = self._reason(response, f"post {post_id}", token)
        if response.status_code == 429:
            raise TransientError(reason, retry_after=self.retry_after(response))
        if self.is_transient(response):
            raise TransientError(reason)
        raise PermanentError(reason)

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        """One request with the token in its Authorization header only; a timeout or a
        connection error is a TransientError whose reason never holds the token."""
        headers = {"Accept": "application/json", **kwargs.pop("headers", {}),
                   "Authorization": f"Bearer {token}"}
        try:
            return self.session.request(method, self.base_url + path, headers=headers,
                                        timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.Timeout:
            raise TransientError(f"{self.service} api timed out") from None
        except requests.exceptions.InvalidHeader as exc:  # refused before sending: nothing sent
            raise PermanentError(f"{self.service} api not called: "
                                 f"{httpclient.describe(exc, token)}") from None
        except requests.RequestException as exc:
            raise TransientError(f"{self.service} api unreachable: "
                                 f"{httpclient.describe(exc, token)}") from None

    def _reason(self, response: requests.Response, what: str, token: str) -> str:
        try:
            message = self.error_message(response.json())
        except ValueError:
            message = ""
        message = " ".join((message or response.reason or "").split())
        message = redact(message, token)[: httpclient.MAX_ERROR_TEXT]
        return f"{self.service} api {response.status_code} for {what}: {message}"


@dataclass(frozen=True)
class Network:
    """A registered network: its adapter, its API's base URL and its other options (each
    overridden by its WORKERS_<NAME>_API_<OPTION>), with their defaults."""

    name: str
    adapter: type[SocialAPI]
    url: str  # the public API host (WORKERS_<NAME>_API_URL: a proxy's or a stand-in's)
    # Constructor keyword -> its default, for what else it is built with (an API version).
    options: Mapping[str, str] = field(default_factory=dict)


# Every network, by name, as its module registered it.
NETWORKS: dict[str, Network] = {}
API = TypeVar("API", bound="SocialAPI")


def network(name: str, *, url: str, target: Target | None = None,
            options: Mapping[str, str] | None = None) -> Callable[[type[API]], type[API]]:
    """Registers the decorated adapter as network ``name``. ``url``: its API's base URL;
    ``target``: what a publish event must say of where to post (None: the token's owner
    posts); ``options``: constructor keyword to default, for anything else it is built with.
    Settings reads WORKERS_<NAME>_API_URL and WORKERS_<NAME>_API_<OPTION> over them."""
    def register(adapter: type[API]) -> type[API]:
        register_service(name, target)
        adapter.service = name
        NETWORKS[name] = Network(name, adapter, url, dict(options or {}))
        return adapter
    return register


def redact(text: str, token: str) -> str:
    """``text`` with the access token masked: an API may echo what it was given."""
    return text_redact(text, token)


def normalize(counts: Mapping[str, Any]) -> Engagement:
    """Whole, non-negative counts; the common metrics always present, missing ones dropped."""
    engagement = {name: 0 for name in COMMON_METRICS}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        engagement[name] = max(0, int(value))
    return engagement


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def network_now(response: requests.Response) -> float:
    """The network's clock when it answered (its ``Date``), else ours: a reset the network
    gives in its own Unix seconds is counted down from its own now."""
    date = response.headers.get("Date")
    try:
        when = email.utils.parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        when = None
    return when.timestamp() if when is not None and when.tzinfo is not None else time.time()


def dig(body: Any, *path: str) -> Any:
    """body[path[0]][path[1]]...; None where any step is missing."""
    for key in path:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body
