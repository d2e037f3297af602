"""The queues and their event schemas, in one place, and where a message body becomes a
validated event.

``DECLARED`` is every queue: its name, its event's schema, its default processes and its
metrics port block. ``workers.QUEUES`` and the settings read it; conf/supervisord.conf declares
each queue's processes (a test holds the two together); each queue's handler is its module in
workers/queues/. A new queue: its schema and its line here, its handler module there.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from workers.core.errors import PermanentError
from workers.core.message import Message

# Identifiers are strings (the API's ids are Mongo-style hex), never blank.
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"\S")]
Text = Annotated[str, StringConstraints(max_length=100_000)]
# A post never names thousands of links; a bound keeps one event's work bounded.
MAX_URLS_PER_EVENT = 1000


@dataclass(frozen=True)
class Target:
    """What a publish event's ``target`` must be on a network that posts where it is told."""

    what: str  # said in the refusal: "target (WHAT) is required for NETWORK"
    prefix: str = ""  # a non-empty target that starts with this


# The social networks an event may name as its ``service``, each with its publish target's rule
# (None: it posts as its token's owner). Each network's adapter module registers itself
# (``@network``, workers/adapters/networks/base.py), so a new network changes no schema here;
# core imports no adapter: whatever decodes these events has imported the networks (the
# producer, and the analytics and publish queues' modules, import workers.adapters.networks).
SERVICES: dict[str, Target | None] = {}


def register_service(name: str, target: Target | None = None) -> None:
    """Lets events name ``name`` as their ``service`` (a network's adapter module calls it)."""
    if name != name.lower() or not name.isidentifier():
        raise ValueError(f"a service is a lowercase identifier, not {name!r}")
    SERVICES[name] = target


def _registered(name: str) -> str:
    if not SERVICES:  # a program bug, not a bad event: never dead-letter on it
        raise RuntimeError(
            "no social network is registered: import workers.adapters.networks first")
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r} (known: {', '.join(sorted(SERVICES))})")
    return name


# A registered network's name.
Service = Annotated[str, AfterValidator(_registered)]

# Each network's longest text; longer is refused by the network anyway (a permanent error).
MAX_TEXT_CHARS = 63_206  # Facebook's; X counts 280 its own way, LinkedIn 3,000


class InvalidEvent(PermanentError):
    """The body is JSON but not a valid event for its queue."""


class Event(BaseModel):
    # Unknown fields are ignored (SPEC.md); events never change once decoded.
    model_config = ConfigDict(extra="ignore", frozen=True)
    # The digest of the body this event was decoded from (``decode`` sets it): what stays the
    # same over redeliveries and DLQ replays, unlike the SQS message id.
    _body_digest: str | None = PrivateAttr(default=None)

    @property
    def body_digest(self) -> str:
        """The digest of the message body; of the event's own JSON when built in code."""
        return self._body_digest or digest(self.model_dump_json(exclude_none=True))


class PostSent(Event):
    update_id: Id
    profile_id: Id
    created_at: float | None = None
    # A URL that is not a string (null, a number, an object) is an invalid URL like any other:
    # the handler skips and counts it, and the event's valid URLs still count (SPEC.md). So
    # the schema takes any JSON value here, and ``urls`` needs only to be a bounded list.
    url: Any = None
    urls: list[Any] = Field(default_factory=list, max_length=MAX_URLS_PER_EVENT)
    service: str | None = None

    @field_validator("created_at", mode="before")
    @classmethod
    def _unix_seconds(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("must be Unix seconds, as a number or a numeric string")
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError("must be Unix seconds, as a number or a numeric string") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("must be a non-negative finite number of seconds")
        return seconds

    @property
    def all_urls(self) -> list[Any]:
        """``url`` and ``urls`` together, in order, as given (not yet normalized, nor checked
        to be strings)."""
        return ([self.url] if self.url is not None else []) + list(self.urls)


class Analytics(Event):
    update_id: Id
    profile_id: Id
    service: Service
    service_update_id: Id


class Push(Event):
    # The API's name for this one send (a request id): a second event with the same key is
    # not sent again (workers.domain.sending.sent). Without it, the body's digest stands for it.
    idempotency_key: Id | None = None
    user_id: Id
    target_arn: Annotated[str, StringConstraints(pattern=r"^arn:")]
    title: Text
    body: Text
    data: dict[str, Any] | None = None


class Email(Event):
    idempotency_key: Id | None = None  # as Push's
    to: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
    subject: Text | None = None
    text: Text | None = None
    html: Text | None = None
    template: Id | None = None
    params: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _content(self) -> "Email":
        if self.template is None and self.subject is None:
            raise ValueError("needs a subject with text or html, or a template with params")
        if self.template is None and self.text is None and self.html is None:
            raise ValueError("needs text or html (or a template)")
        return self


class Publish(Event):
    update_id: Id
    profile_id: Id
    service: Service
    text: str
    link: str | None = None
    target: str | None = None

    @model_validator(mode="after")
    def _needs_target(self) -> "Publish":
        if not self.text.strip():
            raise ValueError("text must not be empty")
        if len(self.text) > MAX_TEXT_CHARS:
            raise ValueError(f"text is longer than {MAX_TEXT_CHARS} characters")
        needed = SERVICES[self.service]  # the network's own rule, from its registration
        if needed and not (self.target and self.target.startswith(needed.prefix)):
            raise ValueError(f"target ({needed.what}) is required for {self.service}")
        return self


@dataclass(frozen=True)
class Queue:
    name: str
    schema: type[Event]
    # Daemons until `workers scale` says otherwise (WORKERS_<QUEUE>_PROCS).
    procs: int
    # Its metrics ports are base + 100 × port_block + process number: a number of its own,
    # never reused, so that adding or removing a queue moves no other queue's ports.
    port_block: int


# In the order of their port blocks (the order of ``workers.QUEUES``).
DECLARED = (
    # The busy queue: two processes to start with, counting on Redis.
    Queue("post-sent", PostSent, procs=2, port_block=0),
    # Waits on the networks' APIs (and their rate limits): one process of 20 handlers.
    Queue("analytics", Analytics, procs=1, port_block=1),
    # Waits on SNS, not on Redis: one process of 20 handlers to start with.
    Queue("push", Push, procs=1, port_block=2),
    # Waits on SES or an SMTP relay: one process of 20 handlers to start with.
    Queue("email", Email, procs=1, port_block=3),
    # Waits on the networks (seconds per post at worst): one process of 20 handlers.
    Queue("publish", Publish, procs=1, port_block=4),
)
QUEUES = tuple(q.name for q in DECLARED)
_BY_NAME = {q.name: q for q in DECLARED}


def declaration(name: str) -> Queue:
    """The declaration of queue ``name``; LookupError when there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise LookupError(f"no queue {name!r}") from None


def validate(queue: str | Queue, data: Any) -> Event:
    """A validated event of ``queue``'s schema, or InvalidEvent saying what is wrong. Given
    the queue's declaration, its name is not looked up again."""
    declared = queue if isinstance(queue, Queue) else declaration(queue)
    try:
        return declared.schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {declared.name} event: {_describe(exc)}") from None


def decode(queue: str, message: Message) -> Event:
    """The message's validated event; MessageDecodeError or InvalidEvent saying why not."""
    try:  # pydantic parsing the JSON itself: the quick way, for the bodies that are valid
        event = declaration(queue).schema.model_validate_json(message.body)
    except ValidationError:  # json.loads and model_validate then say what is wrong, as ever
        event = validate(queue, message.json())
    event._body_digest = digest(message.body)
    return event


def digest(body: str) -> str:
    return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()


def _describe(exc: ValidationError, limit: int = 3) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = [_one_error(e) for e in errors[:limit]]
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def _one_error(error: Any) -> str:
    """``field: what is wrong``, or only what is wrong for the event as a whole. Our own
    validators' words stand as written: pydantic's "Value error, " before them says nothing
    to the person who sent the event."""
    reason = error["msg"]
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        reason = str(error["ctx"]["error"])
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {reason}" if where else reason
