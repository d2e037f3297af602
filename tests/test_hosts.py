"""The fleet across hosts, for real: each host a Linux network namespace with its own
supervisord, all sharing moto and Redis in the root namespace over veth links
(tests/support/netns.py). The suite runs each test short (300 events; a cut that lasts until
the registry shows the host stale); `make fleet` runs a host dying and a host cut off for 20 s
under a longer flow (the mark ``long``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import devstack
from helpers import feed, queue_depth, wait_until
from netns import Hosts, RigError
from workers import QUEUES
from workers.adapters import redisconn
from workers.core.settings import procs_variable
from workers.domain.links.counter import LinkCounter
from workers.ops import fleet

# A host dying or cut off under a long flow takes minutes: `make fleet` runs these; `make test`
# leaves them out by their mark (deselected, never counted as skipped or passed).
LONG = pytest.mark.long
WORKERS = str(Path(sys.executable).parent / "workers")


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """moto and redis-server listening on every address of the root namespace, reached by the
    hosts through their veth links; shared by the module's tests (each has its own queues,
    and ``stack`` empties Redis)."""
    port = devstack.free_port()
    logs = tmp_path_factory.mktemp("hosts")
    moto = devstack.Service("moto", [sys.executable, "-m", "moto.server", "-H", "0.0.0.0",
                                     "-p", str(port)], port, logs / "moto.log").start()
    redis = devstack.redis_server(log_path=logs / "redis.log",
                                  extra=("--bind", "0.0.0.0", "--protected-mode", "no")).start()
    yield moto, redis
    redis.discard()
    moto.stop()


@pytest.fixture
def rig(request):
    """Namespaced hosts (``rig(2)``); every one removed after the test, even after a failure.
    Where namespaces cannot be made, the test fails with one line saying why."""
    made: list[Hosts] = []

    def make(count: int) -> Hosts:
        try:
            made.append(Hosts(count))
        except RigError as exc:
            pytest.fail(str(exc), pytrace=False)
        return made[-1]

    yield make
    for hosts in made:
        hosts.close(warm=False)  # what a test asserts is behind it: no warm stop to wait for


@pytest.fixture
def stack(services, prefix):
    """Queues on moto, and each host's environment: the services at its root-side address."""
    moto, redis = services
    env = devstack.stack_env(moto.port, redis.port, WORKERS_QUEUE_PREFIX=prefix,
                             WORKERS_VISIBILITY_TIMEOUT="2", WORKERS_MAX_RECEIVES="5",
                             WORKERS_WAIT_SECONDS="2", WORKERS_CONCURRENCY="10",
                             WORKERS_STOPWAITSECS="30", WORKERS_BIN=WORKERS,
                             **{procs_variable(q): "0" for q in (*QUEUES, "links-api")})
    env[procs_variable("post-sent")] = "1"
    subprocess.run([WORKERS, "queues", "create"], env=env, check=True, capture_output=True,
                   timeout=120)

    def host_env(host) -> dict[str, str]:
        return {**env, "AWS_ENDPOINT_URL": f"http://{host.root_ip}:{moto.port}",
                "REDIS_URL": f"redis://{host.root_ip}:{redis.port}/0"}

    client = redisconn.connect(env["REDIS_URL"])
    client.flushall()  # counts and registry entries of the module's earlier tests
    return host_env, client, env


def post_sent(stack_env: dict[str, str]):
    import boto3

    sqs = boto3.client("sqs", endpoint_url=stack_env["AWS_ENDPOINT_URL"])
    prefix = stack_env["WORKERS_QUEUE_PREFIX"]
    return sqs, sqs.get_queue_url(QueueName=prefix + "post-sent")["QueueUrl"], \
        sqs.get_queue_url(QueueName=prefix + "post-sent-dlq")["QueueUrl"]


def daemons_by_host(client) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for entry in fleet.processes(client):
        if entry["program"] == "post-sent" and not entry["stale"]:
            found.setdefault(entry["host"], []).append(entry["pid"])
    return found


def start_all(hosts, host_env, client) -> dict[str, list[int]]:
    for host in hosts.hosts:
        host.start(host_env(host))
    names = {h.name for h in hosts.hosts}
    return wait_until(lambda: (d := daemons_by_host(client)).keys() == names and
                      all(len(p) == 1 for p in d.values()) and d, timeout=120, interval=0.5)


def test_the_registry_lists_every_hosts_processes_and_scale_reaches_another_host(rig, stack):
    host_env, client, _ = stack
    hosts = rig(2)
    # Given two hosts, each running one post-sent daemon under its own supervisord
    before = start_all(hosts, host_env, client)
    # When host-1 asks for two on host-0
    done = subprocess.run(hosts[1].command(WORKERS, "scale", "post-sent", "2", "--host",
                                           "host-0"),
                          env=hosts[1].env, capture_output=True, text=True, timeout=180)
    # Then host-0's workers-scale starts one more, and host-1's daemon never restarted
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "post-sent on host-0: 2 processes running"
    after = daemons_by_host(client)
    assert len(after["host-0"]) == 2 and before["host-0"][0] in after["host-0"]
    assert after["host-1"] == before["host-1"]
    status = hosts[0].ctl("status")
    assert status.returncode == 0, status.stdout
    assert sorted(line.split()[0] for line in status.stdout.splitlines()) == [
        "post-sent_00", "post-sent_01", "workers-scale"]
    assert fleet.hosts(client)[0]["wanted"]["post-sent"] == 2


def events(count: int, sites: int) -> tuple[list[str], list[int]]:
    bodies = [json.dumps({"update_id": f"u{i}", "profile_id": "p",
                          "urls": [f"https://site{i % sites}.com/page"]}) for i in range(count)]
    return bodies, [sum(1 for i in range(count) if i % sites == s) for s in range(sites)]


# Events of the short runs (`make test`); `make fleet` runs WORKERS_FLEET_EVENTS (1,500).
SHORT_EVENTS = 300
LONG_EVENTS = int(os.environ.get("WORKERS_FLEET_EVENTS", "1500"))
# A vanished process is gone from the registry this long after it stopped refreshing.
GONE_WITHIN_SECONDS = 15


def test_a_host_that_dies_drops_out_and_its_messages_are_handled_elsewhere_once(rig, stack):
    host_dies(rig, stack, SHORT_EVENTS)


@LONG
def test_a_host_that_dies_under_a_long_flow_drops_out_and_nothing_is_lost(rig, stack):
    host_dies(rig, stack, LONG_EVENTS)


def host_dies(rig, stack, count: int) -> None:
    host_env, client, env = stack
    hosts = rig(2)
    start_all(hosts, host_env, client)
    sqs, source, dlq = post_sent(env)
    bodies, expected = events(count, 7)
    keys = [f"site{s}.com/page" for s in range(7)]
    counter = LinkCounter(client)
    # Given both hosts handling a flow of events
    producer = feed(sqs, source, bodies + bodies[:50])  # some enqueued twice
    wait_until(lambda: sum(counter.counts(keys)) > count // 10, timeout=120, interval=0.05)
    # When host-0 dies at once
    assert producer.is_alive()  # mid-flow
    hosts[0].die()
    died = time.monotonic()
    # Then its entries drop out of the registry within 15 s (a refresh's slack)
    wait_until(lambda: "host-0" not in {e["host"] for e in fleet.processes(client)},
               timeout=GONE_WITHIN_SECONDS + 1, interval=0.2)
    assert time.monotonic() - died <= GONE_WITHIN_SECONDS + 1
    # And host-1 handles everything, what host-0 held included, each event counted once
    producer.join(timeout=600)
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=300, interval=0.5)
    assert counter.counts(keys) == expected
    assert queue_depth(sqs, dlq) == 0
    assert list(daemons_by_host(client)) == ["host-1"]


def test_a_host_cut_off_pauses_then_resumes_and_nothing_counts_twice(rig, stack):
    # Cut off until the registry shows it stale (7.5 s at most after its last refresh)
    host_cut_off(rig, stack, SHORT_EVENTS, cut_seconds=None)


@LONG
def test_a_host_cut_off_for_20_s_is_stale_then_gone_then_live_and_nothing_counts_twice(
        rig, stack):
    host_cut_off(rig, stack, LONG_EVENTS, cut_seconds=20)


def host_cut_off(rig, stack, count: int, cut_seconds: float | None) -> None:
    """host-0 cut off for ``cut_seconds`` (longer than its entry lives without a refresh), or,
    for None, until the registry shows it stale."""
    host_env, client, env = stack
    hosts = rig(2)
    before = start_all(hosts, host_env, client)
    sqs, source, dlq = post_sent(env)
    bodies, expected = events(count, 7)
    keys = [f"site{s}.com/page" for s in range(7)]
    counter = LinkCounter(client)
    producer = feed(sqs, source, bodies)
    wait_until(lambda: sum(counter.counts(keys)) > count // 10, timeout=120, interval=0.05)
    # When host-0 is cut off
    hosts[0].cut()
    seen: list[str] = []
    cut_until = time.monotonic() + (cut_seconds or 30)
    while time.monotonic() < cut_until:
        states = [e["stale"] for e in fleet.processes(client) if e["host"] == "host-0"]
        seen.append("gone" if not states else "stale" if all(states) else "live")
        if cut_seconds is None and seen[-1] == "stale":
            break
        time.sleep(0.2)
    hosts[0].reconnect()
    # Then the registry showed it stale (and, cut off longer than 15 s, then not at all);
    # once stale, never live while it was cut off
    assert "stale" in seen, seen
    assert "live" not in seen[seen.index("stale"):], seen
    if cut_seconds is not None and cut_seconds > GONE_WITHIN_SECONDS:
        assert seen[-1] == "gone", seen
    # And its daemon resumes: the same process (it paused, it did not die), live again
    wait_until(lambda: daemons_by_host(client).get("host-0") == before["host-0"], timeout=60,
               interval=0.2)
    producer.join(timeout=600)
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=300, interval=0.5)
    assert counter.counts(keys) == expected
    assert queue_depth(sqs, dlq) == 0
