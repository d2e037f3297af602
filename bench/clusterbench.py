"""Counting throughput against one redis-server and against a local Redis Cluster of three
masters, side by side in one run, two ways:

* **Daemons**: several of our post-sent daemons (``workers run post-sent``) drain one queue on
  moto's server, fed at a bounded backlog, each with the REDIS_URL it would have in production;
  every count is checked at the end. This is the fleet as it runs, and SQS (here moto) bounds it.
* **Counting processes**: each counts its share of post-sent updates (2 links each, from a
  pool) through ``LinkCounter.record``, the daemon's own call (one pipeline of Lua calls per
  update), with no SQS in the way: what Redis itself allows.

All the servers and clients share this machine's cores, so the cluster's figure is what three
masters give when they do not get cores of their own.
"""

from __future__ import annotations

import multiprocessing
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import procstat
import workload
from feeder import Feeder
from scenario import BenchError, proxy_service, stop

import devstack
from devstack import awsproxy
from workers.adapters.redisconn import connect
from workers.core.settings import DEFAULT_CONCURRENCY, Settings
from workers.domain.links.counter import LinkCounter
from workers.ops.provision import create_queues

POOL = 100_000
QUEUE = "post-sent"
# Messages queued beyond what the daemons hold: moto's work per call grows with depth.
BACKLOG = 20
# Daemons on post-sent for the fleet figure: as many as the counting processes.
DAEMONS = 4


def _work(first: int, updates: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(first)
    return [(f"c{n:09d}", [f"site{rng.randrange(POOL)}.example.com/post" for _ in range(2)])
            for n in range(first, first + updates)]


def _count(url: str, first: int, updates: int, start: Any, done: Any) -> None:
    counter = LinkCounter(connect(url))
    work = _work(first, updates)
    start.wait()
    counted = sum(sum(counter.record(update_id, keys)) for update_id, keys in work)
    done.put(counted)  # done; how many is checked in Redis


def run(url: str, processes: int, updates: int) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    start, done = context.Event(), context.Queue()
    share = updates // processes
    workers = [context.Process(target=_count, args=(url, i * share, share, start, done))
               for i in range(processes)]
    for worker in workers:
        worker.start()
        procstat.remember(worker.pid)
    time.sleep(1.0)  # every process has built its work and connected
    began = time.perf_counter()
    start.set()
    for _ in workers:
        done.get(timeout=600)
    seconds = time.perf_counter() - began
    for worker in workers:
        worker.join()
    # What the counters must add up to: the distinct (update, link) pairs. A call's own
    # "counted" can say no for a pair a retried pipeline had already counted.
    expected = sum(len(set(keys)) for i in range(processes)
                   for _, keys in _work(i * share, share))
    client = connect(url)
    in_redis = sum(int(v) for key in client.scan_iter(match="lc:*", count=10_000)
                   for v in client.hvals(key))
    return {"processes": processes, "updates": share * processes, "pairs": expected,
            "pairs_in_counters": in_redis, "seconds": seconds,
            "pairs_per_s": expected / seconds}


class Fleet:
    """``daemons`` post-sent daemons on one queue of moto's, counting into ``redis_url``."""

    def __init__(self, moto: devstack.Service, redis_url: str, daemons: int, workdir: Path):
        self.moto, self.redis_url, self.daemons, self.workdir = moto, redis_url, daemons, workdir
        self.settings = Settings(endpoint_url=f"http://127.0.0.1:{moto.port}",
                                 redis_url=redis_url,
                                 queue_prefix=f"cluster-{uuid.uuid4().hex[:8]}-")
        fake = devstack.FAKE_CREDENTIALS
        self.sqs = boto3.client("sqs", endpoint_url=self.settings.endpoint_url,
                                region_name=fake["AWS_DEFAULT_REGION"],
                                aws_access_key_id=fake["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=fake["AWS_SECRET_ACCESS_KEY"])
        self.procs: list[subprocess.Popen] = []
        self.proxy: devstack.Service | None = None

    def drain(self, events: workload.Workload) -> dict[str, Any]:
        create_queues(self.settings, self.sqs)
        url = self.sqs.get_queue_url(QueueName=self.settings.queue_name(QUEUE))["QueueUrl"]
        try:
            self._start()
            held = self.daemons * DEFAULT_CONCURRENCY
            feeder = Feeder(self.sqs, url, [{"MessageBody": b} for b in events.bodies],
                            consumed=self._deleted, low=held + BACKLOG, high=held + 2 * BACKLOG)
            began = time.perf_counter()
            feeder.start()
            self._wait_deleted(len(events.bodies), feeder)
            seconds = time.perf_counter() - began
            feeder.stop()
        finally:
            self.stop()
        counts = LinkCounter(connect(self.redis_url)).counts(events.keys)
        wrong = sum(got != events.expected[k] for k, got in zip(events.keys, counts, strict=True))
        if wrong:
            raise BenchError(f"cluster bench: {wrong} of {len(counts)} link counts wrong after "
                             f"{self.daemons} daemons drained {len(events.bodies)} events")
        return {"daemons": self.daemons, "messages": len(events.bodies), "pairs": events.pairs,
                "seconds": seconds, "msgs_per_s": len(events.bodies) / seconds,
                "pairs_per_s": events.pairs / seconds, "wrong_counts": wrong}

    def _start(self) -> None:
        port = devstack.free_port()
        self.proxy = proxy_service(port, self.moto.port, self.workdir)
        procstat.remember(self.proxy.start().proc.pid)
        env = devstack.stack_env(port, 0, REDIS_URL=self.redis_url, WORKERS_WAIT_SECONDS="1",
                                 WORKERS_QUEUE_PREFIX=self.settings.queue_prefix)
        with open(self.workdir / "daemons.log", "ab") as log:
            for _ in range(self.daemons):
                proc = subprocess.Popen([sys.executable, "-m", "workers", "run", QUEUE],
                                        env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
                self.procs.append(proc)
                procstat.remember(proc.pid)
        deadline = time.monotonic() + 60
        while self._tally()["requests"].get("ReceiveMessage", 0) < self.daemons:
            self._check(time.monotonic() > deadline, "the daemons made no receive in 60 s")
            time.sleep(0.05)

    def _tally(self) -> dict[str, Any]:
        assert self.proxy is not None
        return awsproxy.fetch_counts(self.proxy.port)

    def _deleted(self) -> int:
        return awsproxy.deleted(self._tally())

    def _wait_deleted(self, messages: int, feeder: Feeder) -> None:
        deadline = time.monotonic() + 60 + 0.2 * messages
        while self._deleted() < messages:
            self._check(feeder.error is not None, f"feeder failed: {feeder.error!r}")
            self._check(time.monotonic() > deadline, "the daemons did not drain the queue")
            time.sleep(0.05)

    def _check(self, failed: bool, why: str) -> None:
        if failed or any(proc.poll() is not None for proc in self.procs):
            raise BenchError(f"cluster bench: {why if failed else 'a daemon exited'}; "
                             f"see {self.workdir / 'daemons.log'}")

    def stop(self) -> None:
        for proc in self.procs:  # a warm stop each; a SIGTERM ahead of it would make it cold
            stop(proc)
        if self.proxy is not None:
            self.proxy.stop()


def measure(processes: int, updates: int, daemons: int = DAEMONS,
            messages: int | None = None) -> dict[str, Any]:
    """Both ways, on one redis-server then on the cluster. The daemons drain ``messages``
    post-sent events (by default one for every 20 updates the counting processes make)."""
    messages = max(100, updates // 20) if messages is None else messages
    workdir = Path(tempfile.mkdtemp(prefix="workers-clusterbench-"))
    single, cluster = devstack.redis_server(), devstack.redis_cluster()
    moto = devstack.moto_server(log_path=workdir / "moto.log")
    try:
        for service in (single, moto):
            procstat.remember(service.start().proc.pid)
        cluster.start()
        for node in cluster.nodes:
            procstat.remember(node.proc.pid)
        urls = {"single": f"redis://127.0.0.1:{single.port}/0", "cluster": cluster.url}
        result: dict[str, Any] = {"masters": len(cluster.nodes)}
        for name, url in urls.items():
            events = workload.build(messages, run_id=f"{name}-{time.time_ns()}")
            result[name] = run(url, processes, updates)
            result[name]["daemons"] = Fleet(moto, url, daemons, workdir).drain(events)
        return result
    finally:
        moto.stop()
        single.discard()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
