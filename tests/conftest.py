"""Shared fixtures: real servers (redis-server, moto's server) on free loopback ports, started
once per session and stopped by PID; a fresh queue prefix per test, so tests never share queues."""

from __future__ import annotations

import os
import subprocess
import uuid
from typing import Iterator

import boto3
import pytest
import redis

import devstack
from helpers import start_daemon
from workers.adapters import redisconn
from workers.core.settings import Settings
from workers.ops import provision

# boto3 must never reach real AWS from a test, whatever the machine's environment says.
os.environ.update(devstack.FAKE_CREDENTIALS)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Service]:
    service = devstack.redis_server(log_path=tmp_path_factory.mktemp("redis") / "redis.log")
    yield service.start()
    service.discard()


@pytest.fixture(scope="session")
def moto_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Service]:
    service = devstack.moto_server(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    yield service.start()
    service.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Cluster]:
    """A real Redis Cluster: three masters (redis-server in cluster mode), no replicas."""
    cluster = devstack.redis_cluster(log_dir=tmp_path_factory.mktemp("redis-cluster"))
    yield cluster.start()
    cluster.stop()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_service: devstack.Service) -> str:
    """The test's REDIS_URL: one redis-server, or the Redis Cluster where a test is
    parametrized with ``helpers.ON_SINGLE_AND_CLUSTER``."""
    if getattr(request, "param", "single") == "cluster":
        return request.getfixturevalue("redis_cluster").url
    return f"redis://127.0.0.1:{redis_service.port}/0"


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    client = redisconn.connect(redis_url)
    client.flushall()  # on a cluster: on every master
    return client


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}-"


@pytest.fixture
def settings(moto_service: devstack.Service, redis_url: str, prefix: str) -> Settings:
    """Settings for the local stack; a 2 s visibility timeout so redeliveries come quickly."""
    return Settings(
        endpoint_url=f"http://127.0.0.1:{moto_service.port}",
        queue_prefix=prefix,
        visibility_timeout=2,
        max_receives=3,
        redis_url=redis_url,
    )


@pytest.fixture
def env(settings: Settings, moto_service: devstack.Service,
        redis_service: devstack.Service) -> dict[str, str]:
    """The environment of a `workers` process pointed at the same stack as ``settings``."""
    return devstack.stack_env(
        moto_service.port, redis_service.port,
        WORKERS_QUEUE_PREFIX=settings.queue_prefix,
        WORKERS_VISIBILITY_TIMEOUT=str(settings.visibility_timeout),
        WORKERS_MAX_RECEIVES=str(settings.max_receives),
        REDIS_URL=settings.redis_url,
    )


@pytest.fixture
def sqs(settings: Settings):
    """A plain boto3 client, as the API that enqueues events would have."""
    return boto3.client("sqs", region_name=settings.region, endpoint_url=settings.endpoint_url)


@pytest.fixture
def queues(settings: Settings, sqs) -> dict[str, str]:
    """Creates every queue of this test's prefix; maps SQS queue name to URL."""
    urls = provision.create_queues(settings, sqs)
    return {url.rsplit("/", 1)[1]: url for url in urls}


@pytest.fixture
def requeue(settings: Settings, sqs, queues):
    """Brings the queues to other settings (``visibility_timeout``, ``max_receives``), as
    `workers queues create` run with the daemons' environment would: a daemon started with
    its own WORKERS_MAX_RECEIVES dead-letters by the queue's redrive policy, not by its own."""
    def requeue(**changes) -> None:
        provision.create_queues(settings.model_copy(update=changes), sqs)
    return requeue


@pytest.fixture
def source(queues, prefix) -> str:
    """post-sent's queue URL (tests of other queues define their own)."""
    return queues[prefix + "post-sent"]


@pytest.fixture
def dlq(queues, prefix) -> str:
    """post-sent's dead-letter queue URL."""
    return queues[prefix + "post-sent-dlq"]


@pytest.fixture
def daemons(env, queues, tmp_path):
    """Starts real `workers run QUEUE` processes on this test's queues; kills what is left.
    Each process has ``log_path``, its JSON log file."""
    procs: list[subprocess.Popen] = []

    def start(queue: str, *args: str, environment: dict[str, str] | None = None,
              launcher: tuple[str, ...] = ("-m", "workers")):
        log = tmp_path / f"{queue}-daemon{len(procs)}.log"
        proc = start_daemon(queue, environment or env, log, *args, launcher=launcher)
        proc.log_path = log
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_servers(tmp_path) -> Iterator:
    """Starts redis-servers of this test's own (``extra`` arguments, or a replica of a port),
    for tests that change their settings, replicate or fail them over; discards them after."""
    started: list[devstack.Service] = []

    def start(*extra: str, replica_of: int | None = None) -> devstack.Service:
        log = tmp_path / f"redis-{len(started)}.log"
        service = (devstack.redis_replica(replica_of, log, extra) if replica_of is not None
                   else devstack.redis_server(log_path=log, extra=extra))
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.discard()
