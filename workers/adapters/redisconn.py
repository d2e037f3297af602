"""The one home of the Redis connection: what REDIS_URL may name, how its client fails, and
what a production Redis must promise before the fleet counts on it (see SPEC.md, "Redis in
production", and docs/redis.rst, "Running the counters' Redis in production").

REDIS_URL schemes:

* ``redis://`` and ``rediss://`` (TLS): one Redis, or a DNS name or proxy that a failover
  switches to the new primary. A pooled connection that answers ``READONLY`` (its primary was
  demoted while it stayed connected) is dropped, so the next command connects anew.
* ``redis+cluster://`` and ``rediss+cluster://``: a Redis Cluster, any node of it.
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`` (and
  ``rediss+sentinel://``): the primary that Redis Sentinel names for ``service``, asked again
  on every new connection, so a failover is followed without a restart.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Union
from urllib.parse import unquote

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel

from workers.core.settings import SettingsError

Client = Union[redis.Redis, RedisCluster]

# A Redis Cluster, any node of it (rediss+cluster:// for TLS): the client learns the others
# and which slots each serves.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# The primary Redis Sentinel names for a service; rediss+sentinel:// speaks TLS to both.
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
# Sentinel's own port, when a sentinel's address gives none.
SENTINEL_PORT = 26379
# Fail fast when Redis is away, so a handler reports a transient error instead of hanging.
# The read timeout must outlast WAIT_TIMEOUT_MS, which blocks on purpose.
CLIENT_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 5}
# redis-py pings a connection idle this long before using it: a dropped one is replaced then.
HEALTH_CHECK_SECONDS = 30

# Every error a Redis client library raises when Redis is away, refuses, or fails over.
# RedisClusterException is not a RedisError: redis-py raises it when no node of a cluster
# answers, or a cluster URL names no usable node.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)

# A daemon that could not reach Redis at start checks its eviction policy again this often,
# until Redis answers: after a reboot, daemons may well start before their Redis.
RECHECK_SECONDS = 5.0



class RedisURLError(SettingsError):
    """REDIS_URL cannot be used as written (never says the URL: it may hold a password)."""


class EvictionPolicyError(Exception):
    """Redis may evict keys: an evicted idempotency mark would count a redelivery twice."""


# -- connecting ---------------------------------------------------------------------------

class _DropOnReadOnly:
    """A pooled connection to a primary that answers READONLY was left behind by a failover
    (its server is now a replica, while DNS or a proxy points new connections at the new
    primary): disconnect it, so the pool connects anew, and fail this command as a dropped
    connection would. A ConnectionError, not the READONLY reply, so that a pipeline stops
    reading from the closed connection and redis-py's own retry (on a fresh one) applies."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.exceptions.ReadOnlyError as exc:
            self.disconnect()  # type: ignore[attr-defined]
            raise redis.ConnectionError(f"READONLY from a demoted primary: {exc}") from None


class FailoverConnection(_DropOnReadOnly, redis.Connection):
    pass


class FailoverSSLConnection(_DropOnReadOnly, redis.SSLConnection):
    pass


class FailoverUnixConnection(_DropOnReadOnly, redis.UnixDomainSocketConnection):
    pass


CONNECTION_CLASSES: dict[str, type[redis.Connection] | type[redis.UnixDomainSocketConnection]] = {
    "redis": FailoverConnection, "rediss": FailoverSSLConnection,
    "unix": FailoverUnixConnection}
SCHEMES = [f"{s}://" for s in [*CONNECTION_CLASSES, *CLUSTER_SCHEMES, *SENTINEL_SCHEMES]]


def connect(url: str) -> Client:
    """A client for REDIS_URL. A cluster's client asks a node for the layout at once, so an
    unreachable cluster raises here, one of REDIS_ERRORS; a bad URL raises RedisURLError."""
    scheme, sep, rest = url.partition("://")
    try:
        if scheme in CLUSTER_SCHEMES:
            # A cluster has one database; /0 is accepted for symmetry with a single Redis.
            return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}{sep}{rest}",
                                         **CLIENT_OPTIONS)
        if scheme in SENTINEL_SCHEMES:
            return _connect_sentinel(rest, tls=SENTINEL_SCHEMES[scheme])
        if scheme not in CONNECTION_CLASSES:
            raise ValueError(f"the scheme must be one of {', '.join(SCHEMES)}")
        return redis.Redis.from_url(url, health_check_interval=HEALTH_CHECK_SECONDS,
                                    connection_class=CONNECTION_CLASSES[scheme],
                                    **CLIENT_OPTIONS)
    except (ValueError, TypeError) as exc:
        raise RedisURLError(f"REDIS_URL is not a usable Redis URL: {exc}") from None


def _connect_sentinel(rest: str, tls: bool) -> redis.Redis:
    sentinels, service, primary = sentinel_target(rest)
    options = dict(CLIENT_OPTIONS, ssl=True) if tls else dict(CLIENT_OPTIONS)
    return Sentinel(sentinels, sentinel_kwargs=options).master_for(
        service, health_check_interval=HEALTH_CHECK_SECONDS, **primary, **options)


def sentinel_target(rest: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """What a sentinel URL names, past its scheme: the sentinels' addresses, the service,
    and the primary's database and credentials (sentinels are asked without them)."""
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    service, _, db = path.strip("/").partition("/")
    if not service or "?" in path:
        raise ValueError("a sentinel URL is redis+sentinel://host:port[,host:port]/service[/db]")
    return ([_address(host) for host in hosts.split(",")], service,
            {"db": int(db or 0), "username": unquote(username) or None,
             "password": unquote(password) or None})


def _address(host: str) -> tuple[str, int]:
    """``host:port``, ``host``, ``[v6]:port`` or ``[v6]`` (a port defaults to Sentinel's)."""
    if host.startswith("["):
        name, _, after = host[1:].partition("]")
        port = after.removeprefix(":")
    else:
        name, _, port = host.partition(":")
    if not name:
        raise ValueError("a sentinel address has no host")
    return name, int(port or SENTINEL_PORT)


def primaries(client: Client) -> list[tuple[str, redis.Redis]]:
    """Each primary's name (empty for a lone Redis) and client: the one Redis, or each
    primary of a cluster by its own connection (for commands about a node, not a key)."""
    if isinstance(client, RedisCluster):
        return [(node.name, node.redis_connection) for node in client.get_primaries()]
    return [("", client)]


# -- eviction -----------------------------------------------------------------------------

def check_noeviction(client: Client) -> None:
    """Raises EvictionPolicyError unless every primary's maxmemory-policy is noeviction.
    Reads INFO memory, which managed services allow where they forbid CONFIG; a Redis that
    does not report the policy is refused too, since nothing says it keeps every key."""
    for name, node in primaries(client):
        policy = node.info("memory").get("maxmemory_policy")
        if policy != "noeviction":
            where = f" on {name}" if name else ""
            raise EvictionPolicyError(
                f"Redis maxmemory-policy is {policy or 'not reported'}{where}; the counters' "
                "Redis must use noeviction, or an evicted idempotency mark counts a "
                "redelivery twice")


def refuse_eviction(client: Callable[[], Client], log: Any) -> bool:
    """At a daemon's start: raises EvictionPolicyError when Redis may evict; True once
    checked. A Redis that cannot be reached now is logged and not waited for (False):
    handlers fail transiently until it is back, and ``EvictionWatch`` checks it then."""
    try:
        check_noeviction(client())
        return True
    except REDIS_ERRORS as exc:
        log.warning("redis.unchecked", error=f"{type(exc).__name__}: {exc}")
        return False


class EvictionWatch:
    """Checks the eviction policy every RECHECK_SECONDS until Redis answers, on a thread of
    its own. A policy that may evict calls ``stop`` (the daemon's warm stop) and is kept in
    ``refused`` for the daemon to exit with, as it would have at start."""

    def __init__(self, client: Callable[[], Client], log: Any, stop: Callable[[str], None],
                 interval: float = RECHECK_SECONDS):
        self.client, self.log, self.stop, self.interval = client, log, stop, interval
        self.refused: EvictionPolicyError | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="eviction-watch")

    def start(self) -> "EvictionWatch":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                check_noeviction(self.client())
            except REDIS_ERRORS:
                continue  # still away: handlers say so, once a message each
            except EvictionPolicyError as exc:
                self.refused = exc
                self.log.error("redis.evicting", error=str(exc))
                self.stop("redis may evict")
            else:
                self.log.info("redis.checked")
            return
