"""Settings, resolved once from the environment (12-factor) and passed down explicitly.

Every variable is declared once, as a field of ``Settings``: its name (``validation_alias``), its
type and bounds, its default (a named constant below, with why) and what it is for
(``description``). pydantic-settings reads them; a value we cannot use is a SettingsError of one
line that names the variable. docs/configuration.rst's table is generated from these fields
(bin/settings-table, or ``python -m workers.core.settings --rst``), and a test holds the two equal.
This module imports nothing else of workers."""

from __future__ import annotations

import functools
import itertools
import os
import re
import socket
import sys
import textwrap
from typing import Annotated, Any, Final, Literal, Mapping

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUseDefault
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# SQS caps WaitTimeSeconds at 20; the longest wait means the fewest empty receives (each is billed).
LONG_POLL_SECONDS = 20
# SQS caps a receive, and every batch call, at 10 entries.
SQS_BATCH_MAX = 10
# SQS's own default; the spec bounds how long a crashed daemon's messages wait by this.
DEFAULT_VISIBILITY_TIMEOUT = 30
# SQS never keeps a message invisible longer than 12 hours after its first receive.
MAX_VISIBILITY_SECONDS = 12 * 60 * 60
# A few receives before a message goes to its DLQ: enough to ride out a short outage.
DEFAULT_MAX_RECEIVES = 5
# The dead-letter queue keeps messages longest (14 days), since SQS keeps a message's
# original enqueue time when it moves it there.
DLQ_RETENTION_SECONDS = 14 * 24 * 60 * 60
# One lane (one receive of 10 at a time) per 10 handlers (and at least MIN_RECEIVES_IN_FLIGHT
# lanes): a receive stays in flight while the other lanes' handlers run.
DEFAULT_CONCURRENCY = 20
# Receives a daemon keeps going at least (lanes), once its concurrency holds a full receive:
# each lane waits on SQS twice a batch (the receive, then the delete), 10 to 20 ms each on
# real SQS, so two lanes leave a quick handler idle most of the time. Four hold 40 messages
# at most; a lane costs no CPU while it waits (measured: README, "Benchmark: make bench").
MIN_RECEIVES_IN_FLIGHT = 4
# The spec promises no double count for at least 30 days; a day of margin.
IDEMPOTENCY_TTL_SECONDS = 31 * 24 * 60 * 60
# 2**18 buckets keep ~100 counters per hash at ~26M URLs: small enough for Redis's compact
# listpack encoding (hash-max-listpack-entries, 128 by default), large enough that few
# buckets hold a lone counter at 1M URLs. Changing it needs a rebuild from the archive.
DEFAULT_LINK_BUCKETS = 2**18
# Replicas that must acknowledge a batch's counts (Redis WAIT) before its messages are deleted.
# Off by default: a lone Redis has none, and with AOF it already keeps what it acknowledged;
# with replicas and failover, a primary lost before its replicas copied a count loses that
# count while its message is gone, unless this is set (to 1 for the usual one replica).
DEFAULT_REDIS_WAIT_REPLICAS = 0
# How long a batch waits for them: a few round trips of a healthy replica, well past its
# usual lag; fewer acknowledgements by then make the batch a transient failure. Below the
# client's 5 s read timeout, which WAIT's block would otherwise trip.
REDIS_WAIT_TIMEOUT_MS = 2000
# Email goes through Amazon SES unless WORKERS_EMAIL_BACKEND says smtp: SES is what production
# runs, and it needs no server of ours.
DEFAULT_EMAIL_BACKEND: Final = "ses"
# A local relay (an MTA on the host) is the conventional default, as in most mail libraries.
DEFAULT_SMTP_HOST = "localhost"
# The message submission port (RFC 6409): where providers expect STARTTLS and a login.
DEFAULT_SMTP_PORT = 587
# STARTTLS on by default, so a password and the mail never cross the network in clear text.
DEFAULT_SMTP_STARTTLS = True
# A relay that has not answered in this long is down: the message is retried later, and the
# heartbeat keeps it invisible meanwhile.
SMTP_TIMEOUT_SECONDS = 30
# `workers dlq peek` hides what it shows only until it gives it back, at once; this bounds how
# long a killed peek keeps messages hidden.
PEEK_VISIBILITY_SECONDS = 30
# `workers dlq replay` hides each batch while it copies it (a send and a delete, each retried up
# to 3 times): a minute is ample, and a killed replay's last batch reappears after it.
REPLAY_VISIBILITY_SECONDS = 60
# `workers stats` advice: messages one daemon process handles per second. `make bench` measures
# about 250/s for post-sent with the default concurrency; handlers calling remote APIs (analytics,
# email) are slower, so the default errs low. Operators pass their own with --rate.
DEFAULT_PROCESS_RATE = 100.0
# ... and the time within which a backlog should be drained: a few minutes of delay is what users
# of a scheduler barely notice.
DEFAULT_DRAIN_TARGET_SECONDS = 300

# /metrics and /health listen on loopback unless told otherwise: they need no password, so
# exposing them (WORKERS_METRICS_HOST=0.0.0.0, for a Prometheus on another host) is a choice.
DEFAULT_METRICS_HOST = "127.0.0.1"

# push sends to one device (an SNS platform endpoint) unless WORKERS_PUSH_ALLOW_TOPICS says
# otherwise: a topic ARN in a message would broadcast to every subscriber of the topic (every
# device of an app, or an operations topic), which no per-user notification should do.
DEFAULT_PUSH_ALLOW_TOPICS = False

# `workers links serve` (SPEC, "The read API of link counts"): loopback unless told otherwise,
# so a local run never exposes it; production puts a load balancer or a CDN in front.
DEFAULT_LINKS_API_HOST = "127.0.0.1"
DEFAULT_LINKS_API_PORT = 8080
# How long a CDN or a browser may keep a count: 10 minutes, as the seed system's CDN did; a
# share button's count lagging that much is invisible to its readers, and the CDN then
# absorbs most reads.
DEFAULT_SHARES_MAX_AGE = 600

# links-api is `workers links serve`, its processes sharing the API's port (SO_REUSEPORT): one
# serves many times the seed's 700 requests/s burst; more are for a multi-core host. It is a
# supervisord program scaled like a queue's, but no queue.
LINKS_API_PROGRAM = "links-api"
LINKS_API_PROCS = 1

# `workers console` (SPEC, "The console"): loopback unless told otherwise, as the read API; it
# needs a users file (WORKERS_CONSOLE_USERS) and refuses to start without one. One snapshot of
# the queues every 2 s is live enough for a person and costs 10 GetQueueAttributes per
# interval, however many pages are open.
DEFAULT_CONSOLE_HOST = "127.0.0.1"
DEFAULT_CONSOLE_PORT = 8070
DEFAULT_CONSOLE_REFRESH = 2
# A published post's engagement is fetched this long after (SQS's DelaySeconds, at most 900):
# right away it is all zeros; a quarter of an hour in, its first reactions show.
DEFAULT_ANALYTICS_DELAY = 900
MAX_DELAY_SECONDS = 900
# How long one daemon holds an update while it posts it: longer than its calls can take (a
# lookup and a create, 13 s of HTTP timeouts each), short enough that the update of a daemon
# killed mid-call is taken over soon after its message comes back.
DEFAULT_PUBLISH_LEASE = 60


def default_run_dir() -> str:
    """Where supervisord keeps its socket, pid and logs, and `workers scale` its file
    (bin/supervisor-env has the same default): one directory per user, which workers.ops.rundir
    creates 0700 and refuses when another user could have planted it. Not $XDG_RUNTIME_DIR:
    a supervisord started by systemd and an operator's login shell would disagree on it.
    Production sets WORKERS_RUN_DIR=/run/workers (docs/operations.rst, Security)."""
    return f"/tmp/workers-{os.getuid()}"


def default_supervisor_conf() -> str:
    """conf/supervisord.conf beside the package (an install from the repository, as in
    production); bin/supervisor-env sets WORKERS_SUPERVISOR_CONF to the file it runs."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(top, "conf", "supervisord.conf")


# The password of a URL: after the scheme's "//" and an optional user, up to the last "@"
# before the host; or a ``password=`` query parameter (redis-py reads both).
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:]*:)[^/]*(?=@)")
_QUERY_PASSWORD = re.compile(r"(?<=[?&]password=)[^&]*")


def mask_url(url: str) -> str:
    """``url`` with its password, if any, as ``***``."""
    return _QUERY_PASSWORD.sub("***", _URL_PASSWORD.sub(r"\1***", url))


class SettingsError(ValueError):
    """An environment variable holds a value we cannot use."""


# How each kind of variable reads, beyond what pydantic does for a str or an int: an unset or
# empty variable takes its field's default (``env_ignore_empty``), a whole number out of its
# field's ``ge``/``le`` is refused.

# Flag: true/false, yes/no, on/off, 1/0; anything else is refused.
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# LenientFlag reads only these as false: anything else, even a typo, keeps it on, since it guards
# TLS (PUSHER_SSL, WORKERS_SMTP_STARTTLS) and a typo must not turn it off.
_OFF = ("0", "false", "no")


def _flag(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    if not word:  # blanks, as an empty variable: the default
        raise PydanticUseDefault()
    raise PydanticCustomError("flag", "must be true or false, not {value}", {"value": repr(word)})


def _lenient_flag(value: Any) -> Any:
    return value.lower() not in _OFF if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Flag = Annotated[bool, BeforeValidator(_flag)]
LenientFlag = Annotated[bool, BeforeValidator(_lenient_flag)]
# A port where 0, like unset, means none: the library's own.
OptionalPort = Annotated[int | None, AfterValidator(lambda port: port or None)]
# The email backends (workers/peers/mail.py), whatever the case they are written in.
EmailBackend = Annotated[Literal["ses", "smtp"], BeforeValidator(_lower)]
# A supervisord program's processes on one host: a hundred is past any host's cores.
MAX_PROCS = 99


class Settings(BaseSettings):
    """What a process needs to know of its environment. ``Settings.from_env()`` reads it;
    ``Settings(...)`` is the defaults with the values given (a test's, a bench's), read from no
    environment."""

    model_config = SettingsConfigDict(frozen=True, case_sensitive=True, env_ignore_empty=True,
                                      populate_by_name=True)

    # -- AWS and the queues -----------------------------------------------------------------
    region: str = Field(
        "us-east-1", validation_alias="AWS_DEFAULT_REGION",
        description="boto3's own variable: the region of the queues, the bucket, SES and SNS")
    endpoint_url: str | None = Field(
        None, validation_alias="AWS_ENDPOINT_URL",
        description="boto3's own variable; unset: real AWS; the local stack's is moto's server")
    queue_prefix: str = Field(
        "", validation_alias="WORKERS_QUEUE_PREFIX", description="prefix of every SQS queue name")
    max_receives: int = Field(
        DEFAULT_MAX_RECEIVES, ge=1, le=1000, validation_alias="WORKERS_MAX_RECEIVES",
        description="redrive ``maxReceiveCount``: receives before SQS dead-letters a message")
    visibility_timeout: int = Field(
        DEFAULT_VISIBILITY_TIMEOUT, ge=0, le=MAX_VISIBILITY_SECONDS,
        validation_alias="WORKERS_VISIBILITY_TIMEOUT",
        description="seconds a received message stays hidden (the heartbeat extends it while "
                    "its handler runs); the base of the backoff")
    wait_seconds: int = Field(
        LONG_POLL_SECONDS, ge=1, le=LONG_POLL_SECONDS, validation_alias="WORKERS_WAIT_SECONDS",
        description="the long poll; a warm stop waits it out, so lower means quicker stops "
                    "and more (cheap) empty receives")
    archive_bucket: str | None = Field(
        None, validation_alias="WORKERS_ARCHIVE_BUCKET",
        description="S3 bucket of the link archive; unset: no archive")

    # -- Redis --------------------------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias="REDIS_URL",
        description="counters and idempotency keys; ``redis+cluster://host:port`` names a Redis "
                    "Cluster, ``redis+sentinel://host:port[,host:port...]/service[/db]`` the "
                    "primary Sentinel names (``rediss+`` for TLS)")
    link_buckets: int = Field(
        DEFAULT_LINK_BUCKETS, ge=1, le=2**32, validation_alias="WORKERS_LINK_BUCKETS",
        description="counter hashes; changing it needs a rebuild from the archive")
    redis_wait_replicas: int = Field(
        DEFAULT_REDIS_WAIT_REPLICAS, ge=0, le=100, validation_alias="WORKERS_REDIS_WAIT_REPLICAS",
        description="replicas that must have a batch's counts (``WAIT``) before its messages "
                    "are deleted; 0: off")

    # -- a process's /metrics and /health ---------------------------------------------------
    metrics_port: int = Field(
        0, ge=0, le=65000, validation_alias="WORKERS_METRICS_PORT",
        description="base port of ``/metrics`` and ``/health``; 0: no endpoint")
    metrics_host: str = Field(
        DEFAULT_METRICS_HOST, validation_alias="WORKERS_METRICS_HOST",
        description="where they listen; ``0.0.0.0`` for a Prometheus on another host")
    process_num: int = Field(
        0, ge=0, le=99, validation_alias="WORKERS_PROCESS_NUM",
        description="the process's number among its program's (conf/supervisord.conf sets "
                    "it): its metrics port")

    # -- Pusher Channels (SPEC.md) ---------------------------------------------------------
    pusher_app_id: str | None = Field(
        None, validation_alias="PUSHER_APP_ID",
        description="Pusher Channels, with ``PUSHER_KEY`` and ``PUSHER_SECRET``; unset: Pusher off")
    pusher_key: str | None = Field(None, validation_alias="PUSHER_KEY", description="its key")
    pusher_secret: str | None = Field(
        None, validation_alias="PUSHER_SECRET", repr=False,
        description="its secret: never logged")
    pusher_cluster: str | None = Field(
        None, validation_alias="PUSHER_CLUSTER", description="Pusher's cluster")
    pusher_host: str | None = Field(
        None, validation_alias="PUSHER_HOST", description="or a host instead (a local fake)")
    pusher_port: OptionalPort = Field(
        None, ge=0, le=65535, validation_alias="PUSHER_PORT",
        description="and its port; 0: the library's")
    pusher_ssl: LenientFlag = Field(
        True, validation_alias="PUSHER_SSL",
        description="``false``, ``no`` or ``0``: plain HTTP to ``PUSHER_HOST``")

    # -- the social networks ----------------------------------------------------------------
    # Found by name in the environment (``from_env``), whatever the networks: each network's
    # adapter module declares its options and their defaults (``@network``), so adding a
    # network adds no field here. Keyed ``<network>_api_<option>``.
    network_options: dict[str, str] = Field(
        default_factory=dict, json_schema_extra={
            "variable": "WORKERS_<NETWORK>_API_<OPTION>",
            "shown": "the network's, in its adapter module (``@network``)"},
        description="a social network's API base URL (``WORKERS_TWITTER_API_URL``, for a proxy "
                    "or a stand-in) or another option its module declares "
                    "(``WORKERS_FACEBOOK_API_VERSION``, ``WORKERS_LINKEDIN_API_VERSION``)")

    # -- email and push -------------------------------------------------------------------
    email_backend: EmailBackend = Field(
        DEFAULT_EMAIL_BACKEND, validation_alias="WORKERS_EMAIL_BACKEND",
        description="``ses`` or ``smtp``")
    email_from: str | None = Field(
        None, validation_alias="WORKERS_EMAIL_FROM",
        description="the sender, a verified SES identity; unset: email waits for it")
    smtp_host: str = Field(
        DEFAULT_SMTP_HOST, validation_alias="WORKERS_SMTP_HOST",
        description="SMTP relay (backend ``smtp``)")
    smtp_port: int = Field(
        DEFAULT_SMTP_PORT, ge=1, le=65535, validation_alias="WORKERS_SMTP_PORT",
        description="its submission port")
    smtp_user: str | None = Field(
        None, validation_alias="WORKERS_SMTP_USER", description="its login; unset: none")
    smtp_password: str | None = Field(
        None, validation_alias="WORKERS_SMTP_PASSWORD", repr=False,
        description="its password: never logged")
    smtp_starttls: LenientFlag = Field(
        DEFAULT_SMTP_STARTTLS, validation_alias="WORKERS_SMTP_STARTTLS",
        description="refuse to send in clear text; only ``false``, ``no`` or ``0`` turn it off")
    push_allow_topics: Flag = Field(
        DEFAULT_PUSH_ALLOW_TOPICS, validation_alias="WORKERS_PUSH_ALLOW_TOPICS",
        description="``true``: push may also publish to SNS topic ARNs (a broadcast)")

    # -- supervisord, scaling and the fleet ---------------------------------------------------
    run_dir: str = Field(
        default_factory=default_run_dir, validation_alias="WORKERS_RUN_DIR",
        json_schema_extra={"shown": "``/tmp/workers-$UID``"},
        description="supervisord's socket, pid and logs (created 0700; ``/run/workers`` in "
                    "production)")
    scale_file: str | None = Field(
        None, validation_alias="WORKERS_SCALE_FILE",
        json_schema_extra={"shown": "``scale.json`` in the run dir"},
        description="the counts last read from Redis, used when it is away at start")
    host_name: str = Field(
        default_factory=socket.gethostname, validation_alias="WORKERS_HOST_NAME",
        json_schema_extra={"shown": "the hostname"},
        description="this host in the fleet's registry and its wanted counts")
    supervisor_conf: str = Field(
        default_factory=default_supervisor_conf, validation_alias="WORKERS_SUPERVISOR_CONF",
        json_schema_extra={"shown": "``conf/supervisord.conf``"},
        description="supervisord's file, whose program templates ``workers scale`` writes from")
    # Found by name in the environment (``from_env``), whatever the programs: knowing them
    # means loading every handler, which only `workers scale` needs.
    procs: dict[str, Annotated[int, Field(ge=0, le=MAX_PROCS)]] = Field(
        default_factory=dict, json_schema_extra={
            "variable": "WORKERS_<PROGRAM>_PROCS",
            "shown": "the queue's declaration (``procs=``); ``links-api``: 1"},
        description="processes of a program on this host until Redis has its counts (``workers "
                    "scale``), e.g. ``WORKERS_POST_SENT_PROCS``")

    # -- the read API and the console ---------------------------------------------------------
    links_api_host: str = Field(
        DEFAULT_LINKS_API_HOST, validation_alias="WORKERS_LINKS_API_HOST",
        description="the read API's address (loopback: a load balancer or a CDN in front)")
    links_api_port: int = Field(
        DEFAULT_LINKS_API_PORT, ge=0, le=65535, validation_alias="WORKERS_LINKS_API_PORT",
        description="its port, shared by every ``links serve`` process")
    shares_max_age: int = Field(
        DEFAULT_SHARES_MAX_AGE, ge=0, le=365 * 24 * 60 * 60,
        validation_alias="WORKERS_SHARES_MAX_AGE",
        description="seconds a count may be cached, its ``Cache-Control``")
    console_host: str = Field(
        DEFAULT_CONSOLE_HOST, validation_alias="WORKERS_CONSOLE_HOST",
        description="the console's address")
    console_port: int = Field(
        DEFAULT_CONSOLE_PORT, ge=0, le=65535, validation_alias="WORKERS_CONSOLE_PORT",
        description="its port")
    console_users: str | None = Field(
        None, validation_alias="WORKERS_CONSOLE_USERS",
        description="its users and API tokens, hashed (``workers console adduser``); unset: "
                    "the console refuses to start")
    console_refresh: int = Field(
        DEFAULT_CONSOLE_REFRESH, ge=1, le=60, validation_alias="WORKERS_CONSOLE_REFRESH",
        description="seconds between two snapshots of the queues (one per interval for every "
                    "open page)")

    # -- publishing -------------------------------------------------------------------------
    analytics_delay: int = Field(
        DEFAULT_ANALYTICS_DELAY, ge=0, le=MAX_DELAY_SECONDS,
        validation_alias="WORKERS_ANALYTICS_DELAY",
        description="seconds from a post going out to its first engagement fetch")
    publish_lease: int = Field(
        DEFAULT_PUBLISH_LEASE, ge=1, le=3600, validation_alias="WORKERS_PUBLISH_LEASE",
        description="seconds a daemon holds an update it is posting; past it, another may "
                    "resolve it")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the values given: ``from_env`` is where the environment is read.
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every variable of the fields (an unset or empty one takes its default), and the
        WORKERS_<PROGRAM>_PROCS and WORKERS_<NETWORK>_API_<OPTION> found; os.environ unless
        ``env`` is given."""
        env = os.environ if env is None else env
        try:
            return cls(**{**_Environment(cls, env)(), "procs": _procs(env),
                          "network_options": _network_options(env)})
        except ValidationError as error:
            raise SettingsError(_explain(error.errors()[0])) from None

    def __repr_args__(self) -> Any:
        # Settings get logged and shown in tracebacks: REDIS_URL may carry a password
        # (redis://:PASSWORD@host), so it shows masked; the other secrets (repr=False) not at all.
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "redis_url" else value

    def procs_for(self, program: str, default: int) -> int:
        """How many processes ``program`` runs until `workers scale` says otherwise: its
        WORKERS_<PROGRAM>_PROCS, else ``default`` (its declaration's, which the caller knows)."""
        return self.procs.get(program, default)

    def network_option(self, network: str, option: str, default: str) -> str:
        """``network``'s ``option`` (``url``, ``version``...): its WORKERS_<NETWORK>_API_<OPTION>,
        else ``default`` (what the network's module declares)."""
        return self.network_options.get(f"{network}_api_{option}", default)

    def queue_name(self, queue: str) -> str:
        """The SQS name of a logical queue."""
        return self.queue_prefix + queue

    def dlq_name(self, queue: str) -> str:
        return self.queue_name(queue) + "-dlq"

    @property
    def pusher_enabled(self) -> bool:
        return bool(self.pusher_app_id and self.pusher_key and self.pusher_secret)


class _Environment(EnvSettingsSource):
    """pydantic-settings' reading of the variables, from a mapping given (a test's, a child
    process's environment) rather than os.environ always."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]):
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Only the variables declared: with populate_by_name, pydantic-settings would read a
        # field's own name too (``max_receives``), which no one sets meaning it.
        return {name: value for name, value in self._env.items()
                if name in VARIABLES and (value != "" or not self.env_ignore_empty)}


# WORKERS_POST_SENT_PROCS; not WORKERS_POST_SENT_MAX_PROCS, the process slots of before,
# which an environment may still set.
_PROCS_VARIABLE = re.compile(r"WORKERS_([A-Z0-9_]+)_PROCS")


def _procs(env: Mapping[str, str]) -> dict[str, str]:
    """Every WORKERS_<PROGRAM>_PROCS set, by program name, for Settings to validate."""
    found = {}
    for name, value in env.items():
        match = _PROCS_VARIABLE.fullmatch(name)
        if match and not match[1].endswith("_MAX") and value != "":
            found[match[1].lower().replace("_", "-")] = value
    return found


# WORKERS_TWITTER_API_URL, WORKERS_FACEBOOK_API_VERSION; not a declared variable of the same
# shape (WORKERS_LINKS_API_HOST is the read API's).
_NETWORK_VARIABLE = re.compile(r"WORKERS_([A-Z0-9]+)_API_([A-Z0-9_]+)")


def _network_options(env: Mapping[str, str]) -> dict[str, str]:
    """Every WORKERS_<NETWORK>_API_<OPTION> set, keyed ``<network>_api_<option>``."""
    return {name[len("WORKERS_"):].lower(): value for name, value in env.items()
            if _NETWORK_VARIABLE.fullmatch(name) and name not in VARIABLES and value != ""}


def procs_variable(program: str) -> str:
    """WORKERS_POST_SENT_PROCS for post-sent."""
    return f"WORKERS_{program.upper().replace('-', '_')}_PROCS"


# -- one line for a value we cannot use ----------------------------------------------------

def _explain(error: Any) -> str:
    """``error`` (one of a ValidationError's) as "VARIABLE must be ..., not VALUE"."""
    loc, kind, value = error["loc"], error["type"], error["input"]
    name = procs_variable(str(loc[1])) if loc[0] == "procs" else _variable_of(str(loc[0]))
    if kind.startswith("int_"):
        return f"{name} must be a whole number, not {value!r}"
    if kind in ("greater_than_equal", "less_than_equal"):
        low, high = _bounds(str(loc[0]))
        return f"{name} must be between {low} and {high}, not {_number(value)}"
    if kind == "literal_error":
        choices = ", ".join(_constraints(str(loc[0]))["enum"])
        return f"{name} must be one of {choices}, not {value!r}"
    return f"{name} {error['msg']}" if kind == "flag" else f"{name}: {error['msg']}"


def _variable_of(key: str) -> str:
    """The variable of a field, named by its variable already or by its attribute."""
    field = Settings.model_fields.get(key)
    return str(field.validation_alias) if field and field.validation_alias else key


def _constraints(key: str) -> dict[str, Any]:
    """The JSON schema of the value of field ``key`` (named by its variable or its attribute):
    its own, its Optional's, or its dict's values'."""
    fields = _schema()["properties"]
    schema = fields.get(key) or fields[_variable_of(key)]
    schema = schema.get("additionalProperties") or schema
    return next((s for s in schema.get("anyOf", ()) if s.get("type") != "null"), schema)


@functools.cache
def _schema() -> dict[str, Any]:
    return Settings.model_json_schema()


def _bounds(key: str) -> tuple[int, int]:
    schema = _constraints(key)
    return schema["minimum"], schema["maximum"]


def _number(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


# Every variable Settings reads, with its field: WORKERS_<PROGRAM>_PROCS aside.
VARIABLES: dict[str, str] = {str(f.validation_alias): name
                             for name, f in Settings.model_fields.items() if f.validation_alias}


# -- docs/configuration.rst's table ----------------------------------------------------------

def rst_table(width: int = 100) -> str:
    """Every variable as an RST simple table (variable, default, meaning) ``width`` wide."""
    rows = [("variable", "default", "meaning")] + [
        (f"``{_variable(field)}``", _shown(field), _meaning(name, field))
        for name, field in Settings.model_fields.items()]
    first = max(len(row[0]) for row in rows)
    second = max(24, *(len(word) for row in rows for word in row[1].split()))
    widths = (first, second, width - first - second - 4)
    border = "  ".join("=" * w for w in widths)
    body = [line for row in rows[1:] for line in _lines(row, widths)]
    return "\n".join([border, *_lines(rows[0], widths), border, *body, border]) + "\n"


def _lines(row: tuple[str, str, str], widths: tuple[int, int, int]) -> list[str]:
    """One row of the table: a variable's first line, then the lines that continue it."""
    cells = [_wrap(text, width) for text, width in zip(row, widths, strict=True)]
    return ["  ".join(part.ljust(width) for part, width in zip(parts, widths, strict=True)).rstrip()
            for parts in itertools.zip_longest(*cells, fillvalue="")]


# An inline literal is never cut across two lines: its spaces wait as NULs while the text wraps.
_LITERAL = re.compile(r"``.+?``")


def _wrap(text: str, width: int) -> list[str]:
    protected = _LITERAL.sub(lambda literal: literal[0].replace(" ", "\0"), text)
    return [line.replace("\0", " ") for line in textwrap.wrap(
        protected, width, break_long_words=False, break_on_hyphens=False)]


def _variable(field: FieldInfo) -> str:
    return str(field.validation_alias or _extra(field)["variable"])


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def _shown(field: FieldInfo) -> str:
    """A field's default as the table shows it."""
    if "shown" in _extra(field):
        return str(_extra(field)["shown"])
    default = field.default
    if default is None or default == "":
        return "unset" if default is None else "empty"
    return f"``{str(default).lower() if isinstance(default, bool) else default}``"


def _meaning(name: str, field: FieldInfo) -> str:
    schema = _constraints(name)
    bounds = f" ({schema['minimum']} to {schema['maximum']})" if "minimum" in schema else ""
    return f"{field.description}{bounds}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--rst"]:
        sys.exit("usage: python -m workers.core.settings --rst  (docs/configuration.rst's table)")
    sys.stdout.write(rst_table())
