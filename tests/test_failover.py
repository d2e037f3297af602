"""Failovers of the counters' Redis while daemons count (SPEC.md, "Redis in production"):
a DNS-switched endpoint, Redis Sentinel, a Redis Cluster with replicas. Each test runs real
redis-servers and real `workers run post-sent` daemons, fails a primary over mid-stream, and
checks every count against what was sent, the DLQ empty, and no daemon restarted."""

from __future__ import annotations

import json
import random
import signal
import subprocess
from collections import Counter
from typing import Any, Callable

import pytest
import redis
from tcpswitch import TCPSwitch

import devstack
from helpers import drain, feed, log_events, queue_depth, wait_until
from workers.adapters import redisconn
from workers.domain.links.counter import LinkCounter

SITES = 20
# Counted before the failover, of the ~660 messages: the rest flows through it and after.
BEFORE_FAILOVER = 150
# What no daemon may log: an error the code did not classify.
CRASHES = {"handler.crashed", "before_ack.crashed", "lane.error"}


class Workload:
    """~600 post-sent events naming 1-3 of SITES sites, a tenth of them sent twice; the
    expected counts are tallied here, from the events as sent, not by the code under test."""

    def __init__(self, events: int = 600, seed: int = 12):
        rng = random.Random(seed)
        self.sites = {f"u{i}": rng.sample(range(SITES), rng.randint(1, 3)) for i in range(events)}
        bodies = [json.dumps({"update_id": u, "profile_id": "p1",
                              "urls": [f"https://site{s}.example" for s in sites]})
                  for u, sites in self.sites.items()]
        self.bodies = bodies + rng.sample(bodies, events // 10)
        rng.shuffle(self.bodies)
        self.keys = [f"site{s}.example" for s in range(SITES)]

    def expected(self) -> list[int]:
        tally = Counter(s for sites in self.sites.values() for s in sites)
        return [tally[s] for s in range(SITES)]

    def counted(self, client: Any) -> list[int]:
        return LinkCounter(client).counts(self.keys)


@pytest.fixture
def fleet(daemons, env, requeue):
    """Starts ``n`` post-sent daemons on REDIS_URL ``url`` that wait for one replica
    (WORKERS_REDIS_WAIT_REPLICAS=1), on queues with the default WORKERS_MAX_RECEIVES, so that
    a valid event leaking into the DLQ shows. A visibility timeout of 4 s (30 in production)
    keeps the test short and still lets a message wait out a minute of failover (4 + 8 + 16 +
    32 s of backoff) on a loaded machine."""
    def start(url: str, n: int = 2) -> list[subprocess.Popen]:
        requeue(max_receives=5, visibility_timeout=4)  # the redrive policy is the queue's
        environment = {**env, "REDIS_URL": url, "WORKERS_REDIS_WAIT_REPLICAS": "1",
                       "WORKERS_MAX_RECEIVES": "5", "WORKERS_VISIBILITY_TIMEOUT": "4",
                       "WORKERS_WAIT_SECONDS": "2"}
        procs = [daemons("post-sent", environment=environment) for _ in range(n)]
        for proc in procs:
            wait_until(lambda p=proc: any(e["event"] == "daemon.started"
                                          for e in log_events(p.log_path)), timeout=30)
        return procs
    return start


def synced(replica: devstack.Service) -> bool:
    return redis.Redis(port=replica.port).info("replication").get("master_link_status") == "up"


def mid_stream(counted: Callable[[], list[int]]) -> None:
    wait_until(lambda: sum(counted()) >= BEFORE_FAILOVER, timeout=120, interval=0.05)


def finish(workload: Workload, client: Any, procs: list[subprocess.Popen], sqs, source,
           dlq, feeder) -> None:
    """Every message handled; every count exact; no dead letter; no daemon restarted."""
    feeder.join(timeout=120)
    assert not feeder.is_alive()
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=150, interval=0.5)
    assert workload.counted(client) == workload.expected()
    dead = [(m["MessageId"], m["Body"], m.get("MessageAttributes")) for m in drain(sqs, dlq)]
    assert dead == []
    for proc in procs:
        assert proc.poll() is None
        assert not CRASHES & {e["event"] for e in log_events(proc.log_path)}


@pytest.mark.parametrize("close_existing", [False, True], ids=["dns", "proxy-drops"])
def test_a_failover_behind_a_switched_endpoint_loses_and_doubles_nothing(
        redis_servers, fleet, sqs, source, dlq, close_existing):
    old = redis_servers()
    new = redis_servers(replica_of=old.port)
    wait_until(lambda: synced(new), timeout=30)
    endpoint = TCPSwitch(old.port)  # what DNS names as the primary
    try:
        procs = fleet(f"redis://127.0.0.1:{endpoint.port}/0")
        workload = Workload()
        feeder = feed(sqs, source, workload.bodies)
        mid_stream(lambda: workload.counted(redis.Redis(port=old.port)))
        # Promote the replica, demote the primary under it: the daemons' open connections
        # still reach the old one, which now answers READONLY...
        redis.Redis(port=new.port).replicaof("NO", "ONE")
        redis.Redis(port=old.port).replicaof("127.0.0.1", new.port)
        wait_until(lambda: any("read only replica" in e.get("reason", "")
                               for p in procs for e in log_events(p.log_path)), timeout=60)
        # ... until DNS names the new primary (connections already open are left as they
        # are), or a proxy switches and drops them.
        endpoint.switch(new.port, close_existing=close_existing)
        finish(workload, redis.Redis(port=new.port), procs, sqs, source, dlq, feeder)
    finally:
        endpoint.stop()


def test_a_sentinel_failover_is_followed_without_a_restart(redis_servers, fleet, sqs, source,
                                                           dlq, tmp_path):
    old = redis_servers()
    new = redis_servers(replica_of=old.port)
    wait_until(lambda: synced(new), timeout=30)
    sentinel = devstack.redis_sentinel(old.port, "counters", tmp_path / "sentinel.log").start()
    ask = redis.Redis(port=sentinel.port, decode_responses=True)
    try:
        wait_until(lambda: ask.sentinel_slaves("counters"), timeout=30)
        procs = fleet(f"redis+sentinel://127.0.0.1:{sentinel.port}/counters/0")
        workload = Workload()
        feeder = feed(sqs, source, workload.bodies)
        mid_stream(lambda: workload.counted(redis.Redis(port=old.port)))
        ask.execute_command("SENTINEL", "FAILOVER", "counters")
        wait_until(lambda: ask.sentinel_get_master_addr_by_name("counters")[1] == new.port,
                   timeout=60)
        finish(workload, redis.Redis(port=new.port), procs, sqs, source, dlq, feeder)
    finally:
        sentinel.discard()


def test_kill_9_of_a_cluster_master_mid_stream_counts_exactly(fleet, sqs, source, dlq,
                                                              tmp_path):
    # A replica that was stopped a while may still take over (validity factor 0).
    cluster = devstack.redis_cluster(masters=3, replicas=1, node_timeout_ms=1000,
                                     log_dir=tmp_path,
                                     extra=("--cluster-replica-validity-factor", "0")).start()
    try:
        client = redisconn.connect(cluster.url)
        procs = fleet(cluster.url)
        workload = Workload()
        feeder = feed(sqs, source, workload.bodies)
        mid_stream(lambda: workload.counted(client))
        victim = next(n for n in cluster.nodes[1:] if is_master(n))
        heir = next(n for n in cluster.nodes if replicates(n, victim))
        # While one primary's replica acknowledges nothing, no count on that primary is
        # vouched for: each count waits for its own primary's replicas.
        heir.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: any("0 of 1 replicas" in e.get("reason", "")
                                   for p in procs for e in log_events(p.log_path)), timeout=60)
            victim.stop(signal.SIGKILL)
        finally:
            heir.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: is_master(heir) and cluster_ok(cluster.nodes[0]), timeout=60,
                   interval=0.2)
        victim.start()  # back from its nodes.conf, as the replica of the one that took over
        wait_until(lambda: synced(victim), timeout=60, interval=0.2)
        finish(workload, client, procs, sqs, source, dlq, feeder)
    finally:
        cluster.stop()


def is_master(node: devstack.Service) -> bool:
    return redis.Redis(port=node.port).info("replication")["role"] == "master"


def replicates(node: devstack.Service, primary: devstack.Service) -> bool:
    info = redis.Redis(port=node.port).info("replication")
    return info["role"] == "slave" and info["master_port"] == primary.port


def cluster_ok(node: devstack.Service) -> bool:
    return redis.Redis(port=node.port).cluster("info")["cluster_state"] == "ok"
