"""Settings, resolved once from the environment (12-factor) and passed down explicitly."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Mapping

from workers.core.envvars import (
    Choice,
    Flag,
    Int,
    LenientFlag,
    OptionalInt,
    SettingsError,
    Text,
    Variable,
)
from workers.core.events import DECLARED, QUEUES

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
EMAIL_BACKENDS = ("ses", "smtp")
DEFAULT_EMAIL_BACKEND = "ses"
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

# The social networks' public API hosts; overridable (WORKERS_*_API_URL) for a proxy or a fake.
DEFAULT_TWITTER_API_URL = "https://api.twitter.com"
DEFAULT_FACEBOOK_API_URL = "https://graph.facebook.com"
DEFAULT_LINKEDIN_API_URL = "https://api.linkedin.com"
# Both networks retire API versions (Graph after about two years, LinkedIn after one): bump these,
# or set WORKERS_FACEBOOK_API_VERSION / WORKERS_LINKEDIN_API_VERSION, before they do.
DEFAULT_FACEBOOK_API_VERSION = "v25.0"
DEFAULT_LINKEDIN_API_VERSION = "202510"

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


def default_procs() -> dict[str, int]:
    """Processes per program until `workers scale` says otherwise (WORKERS_<QUEUE>_PROCS):
    each queue's from its declaration (workers/core/events.py), and the read API's."""
    return {**{q.name: q.procs for q in DECLARED}, LINKS_API_PROGRAM: LINKS_API_PROCS}


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
    Production sets WORKERS_RUN_DIR=/run/workers (README.rst, Security)."""
    return f"/tmp/workers-{os.getuid()}"


def default_supervisor_conf() -> str:
    """conf/supervisord.conf beside the package (an install from the repository, as in
    production); bin/supervisor-env sets WORKERS_SUPERVISOR_CONF to the file it runs."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(top, "conf", "supervisord.conf")


@dataclass(frozen=True)
class Settings:
    region: str = "us-east-1"
    endpoint_url: str | None = None
    queue_prefix: str = ""
    max_receives: int = DEFAULT_MAX_RECEIVES
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    redis_url: str = "redis://127.0.0.1:6379/0"
    archive_bucket: str | None = None
    link_buckets: int = DEFAULT_LINK_BUCKETS
    redis_wait_replicas: int = DEFAULT_REDIS_WAIT_REPLICAS
    metrics_port: int = 0
    metrics_host: str = DEFAULT_METRICS_HOST
    process_num: int = 0
    pusher_app_id: str | None = None
    pusher_key: str | None = None
    pusher_secret: str | None = field(default=None, repr=False)  # a secret: never in a repr
    pusher_cluster: str | None = None
    pusher_host: str | None = None
    pusher_port: int | None = None
    pusher_ssl: bool = True
    twitter_api_url: str = DEFAULT_TWITTER_API_URL
    facebook_api_url: str = DEFAULT_FACEBOOK_API_URL
    linkedin_api_url: str = DEFAULT_LINKEDIN_API_URL
    facebook_api_version: str = DEFAULT_FACEBOOK_API_VERSION
    linkedin_api_version: str = DEFAULT_LINKEDIN_API_VERSION
    email_backend: str = DEFAULT_EMAIL_BACKEND
    email_from: str | None = None
    smtp_host: str = DEFAULT_SMTP_HOST
    smtp_port: int = DEFAULT_SMTP_PORT
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)  # a secret: never in a repr
    smtp_starttls: bool = DEFAULT_SMTP_STARTTLS
    push_allow_topics: bool = DEFAULT_PUSH_ALLOW_TOPICS
    wait_seconds: int = LONG_POLL_SECONDS
    run_dir: str = field(default_factory=default_run_dir)
    scale_file: str | None = None  # default: run_dir/scale.json
    # The host's name in the fleet's registry and its wanted counts (README.rst, "The fleet").
    host_name: str = field(default_factory=socket.gethostname)
    supervisor_conf: str = field(default_factory=default_supervisor_conf)
    # What WORKERS_<PROGRAM>_PROCS set, by program; ``procs_for`` falls back on the defaults.
    procs: Mapping[str, int] = field(default_factory=dict)
    links_api_host: str = DEFAULT_LINKS_API_HOST
    links_api_port: int = DEFAULT_LINKS_API_PORT
    shares_max_age: int = DEFAULT_SHARES_MAX_AGE
    analytics_delay: int = DEFAULT_ANALYTICS_DELAY
    publish_lease: int = DEFAULT_PUBLISH_LEASE
    console_host: str = DEFAULT_CONSOLE_HOST
    console_port: int = DEFAULT_CONSOLE_PORT
    console_users: str | None = None
    console_refresh: int = DEFAULT_CONSOLE_REFRESH

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Every variable of VARIABLES (an unset or empty one takes the field's default), and
        the WORKERS_<PROGRAM>_PROCS found."""
        env = os.environ if env is None else env
        defaults = {f.name: _default(f) for f in fields(cls)}
        values = {v.field: v.kind.read(v.name, env.get(v.name), defaults[v.field])
                  for v in VARIABLES}
        return cls(**values, procs=_procs(env))

    def __repr__(self) -> str:
        # Settings get logged and shown in tracebacks: REDIS_URL may carry a password
        # (redis://:PASSWORD@host), so it shows masked; the other secrets not at all.
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr
                          and f.name != "redis_url")
        return f"Settings(redis_url={mask_url(self.redis_url)!r}, {shown})"

    def procs_for(self, program: str) -> int:
        """How many processes ``program`` runs until `workers scale` says otherwise."""
        return self.procs.get(program, default_procs()[program])

    def queue_name(self, queue: str) -> str:
        """The SQS name of a logical queue."""
        return self.queue_prefix + queue

    def dlq_name(self, queue: str) -> str:
        return self.queue_name(queue) + "-dlq"

    @property
    def pusher_enabled(self) -> bool:
        return bool(self.pusher_app_id and self.pusher_key and self.pusher_secret)


# The password of a URL: after the scheme's "//" and an optional user, up to the last "@"
# before the host; or a ``password=`` query parameter (redis-py reads both).
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:]*:)[^/]*(?=@)")
_QUERY_PASSWORD = re.compile(r"(?<=[?&]password=)[^&]*")


def mask_url(url: str) -> str:
    """``url`` with its password, if any, as ``***``."""
    return _QUERY_PASSWORD.sub("***", _URL_PASSWORD.sub(r"\1***", url))


def _default(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


# Settings.from_env reads exactly these (README.rst's configuration table lists them, and a test
# holds the two together), plus WORKERS_<PROGRAM>_PROCS, one per supervisord program.
VARIABLES: tuple[Variable, ...] = (
    Variable("AWS_DEFAULT_REGION", "region", Text(), "boto3's own variable"),
    Variable("AWS_ENDPOINT_URL", "endpoint_url", Text(), "boto3's own; moto's server locally"),
    Variable("WORKERS_QUEUE_PREFIX", "queue_prefix", Text(), "prefix of every SQS queue name"),
    Variable("WORKERS_MAX_RECEIVES", "max_receives", Int(1, 1000),
             "redrive maxReceiveCount: receives before SQS dead-letters"),
    Variable("WORKERS_VISIBILITY_TIMEOUT", "visibility_timeout", Int(0, MAX_VISIBILITY_SECONDS),
             "seconds a received message stays hidden; the base of the backoff"),
    Variable("REDIS_URL", "redis_url", Text(), "counters and idempotency keys"),
    Variable("WORKERS_ARCHIVE_BUCKET", "archive_bucket", Text(), "S3 bucket of the link archive"),
    Variable("WORKERS_LINK_BUCKETS", "link_buckets", Int(1, 2**32),
             "counter hashes; changing it needs a rebuild"),
    Variable("WORKERS_REDIS_WAIT_REPLICAS", "redis_wait_replicas", Int(0, 100),
             "replicas that must have a batch's counts before its deletes"),
    Variable("WORKERS_METRICS_PORT", "metrics_port", Int(0, 65000),
             "base port of /metrics and /health; 0: none"),
    Variable("WORKERS_METRICS_HOST", "metrics_host", Text(), "where they listen"),
    Variable("WORKERS_PROCESS_NUM", "process_num", Int(0, 99),
             "supervisord's process number (conf/supervisord.conf sets it): its metrics port"),
    Variable("PUSHER_APP_ID", "pusher_app_id", Text(), "Pusher Channels; unset: Pusher off"),
    Variable("PUSHER_KEY", "pusher_key", Text(), "Pusher Channels"),
    Variable("PUSHER_SECRET", "pusher_secret", Text(), "Pusher Channels; a secret"),
    Variable("PUSHER_CLUSTER", "pusher_cluster", Text(), "Pusher's cluster"),
    Variable("PUSHER_HOST", "pusher_host", Text(), "or its host (a local fake)"),
    Variable("PUSHER_PORT", "pusher_port", OptionalInt(0, 65535), "and port"),
    Variable("PUSHER_SSL", "pusher_ssl", LenientFlag(), "false: plain HTTP to PUSHER_HOST"),
    Variable("WORKERS_TWITTER_API_URL", "twitter_api_url", Text(), "Twitter/X API v2 base URL"),
    Variable("WORKERS_FACEBOOK_API_URL", "facebook_api_url", Text(), "Graph API base URL"),
    Variable("WORKERS_LINKEDIN_API_URL", "linkedin_api_url", Text(), "LinkedIn REST base URL"),
    Variable("WORKERS_FACEBOOK_API_VERSION", "facebook_api_version", Text(), "Graph version"),
    Variable("WORKERS_LINKEDIN_API_VERSION", "linkedin_api_version", Text(), "LinkedIn-Version"),
    Variable("WORKERS_EMAIL_BACKEND", "email_backend", Choice(EMAIL_BACKENDS), "ses or smtp"),
    Variable("WORKERS_EMAIL_FROM", "email_from", Text(), "sender; email waits for it"),
    Variable("WORKERS_SMTP_HOST", "smtp_host", Text(), "SMTP relay (backend smtp)"),
    Variable("WORKERS_SMTP_PORT", "smtp_port", Int(1, 65535), "its submission port"),
    Variable("WORKERS_SMTP_USER", "smtp_user", Text(), "its login; unset: none"),
    Variable("WORKERS_SMTP_PASSWORD", "smtp_password", Text(), "a secret: never logged"),
    Variable("WORKERS_SMTP_STARTTLS", "smtp_starttls", LenientFlag(),
             "refuse to send in clear text"),
    Variable("WORKERS_PUSH_ALLOW_TOPICS", "push_allow_topics", Flag(),
             "push may also publish to SNS topics (a broadcast)"),
    Variable("WORKERS_WAIT_SECONDS", "wait_seconds", Int(1, LONG_POLL_SECONDS),
             "long poll; a warm stop waits it out"),
    Variable("WORKERS_RUN_DIR", "run_dir", Text(), "supervisord's socket, pid and logs"),
    Variable("WORKERS_SCALE_FILE", "scale_file", Text(),
             "the last counts from Redis, used when it is away at start"),
    Variable("WORKERS_HOST_NAME", "host_name", Text(), "this host in the fleet's registry"),
    Variable("WORKERS_SUPERVISOR_CONF", "supervisor_conf", Text(),
             "supervisord's file, whose program templates `workers scale` writes from"),
    Variable("WORKERS_LINKS_API_HOST", "links_api_host", Text(), "the read API's address"),
    Variable("WORKERS_LINKS_API_PORT", "links_api_port", Int(0, 65535), "its port"),
    Variable("WORKERS_SHARES_MAX_AGE", "shares_max_age", Int(0, 365 * 24 * 60 * 60),
             "seconds a count may be cached"),
    Variable("WORKERS_ANALYTICS_DELAY", "analytics_delay", Int(0, MAX_DELAY_SECONDS),
             "seconds between a post going out and its first engagement fetch"),
    Variable("WORKERS_PUBLISH_LEASE", "publish_lease", Int(1, 3600),
             "seconds a daemon holds an update it is posting; past it, another may resolve it"),
    Variable("WORKERS_CONSOLE_HOST", "console_host", Text(), "the console's address"),
    Variable("WORKERS_CONSOLE_PORT", "console_port", Int(0, 65535), "its port"),
    Variable("WORKERS_CONSOLE_USERS", "console_users", Text(), "its users and tokens file"),
    Variable("WORKERS_CONSOLE_REFRESH", "console_refresh", Int(1, 60),
             "seconds between two snapshots of the queues"),
)


# WORKERS_POST_SENT_PROCS; not WORKERS_POST_SENT_MAX_PROCS, the process slots of before,
# which an environment may still set.
_PROCS_VARIABLE = re.compile(r"WORKERS_([A-Z0-9_]+)_PROCS")


def _procs(env: Mapping[str, str]) -> dict[str, int]:
    """Every WORKERS_<PROGRAM>_PROCS set, by program name. Found in the environment rather
    than asked for each declared queue: reading the declarations imports every handler, which
    commands other than `workers scale` need not pay for."""
    found = {}
    for name in env:
        match = _PROCS_VARIABLE.fullmatch(name)
        if match and not match[1].endswith("_MAX") and env[name] != "":
            found[match[1].lower().replace("_", "-")] = Int(0, 99).read(name, env[name], 0)
    return found


def procs_variable(queue: str) -> str:
    """WORKERS_POST_SENT_PROCS for post-sent."""
    return f"WORKERS_{queue.upper().replace('-', '_')}_PROCS"


def check_queue(queue: str) -> str:
    if queue not in QUEUES:
        raise SettingsError(f"unknown queue {queue!r}; expected one of: {', '.join(QUEUES)}")
    return queue
