"""One throughput scenario: a consumer process drains N post-sent events from its own queue
while the feeder keeps that queue topped up; we time it, count its SQS requests at the proxy,
read its CPU and memory from /proc (its whole process tree), and check every count in Redis at
the end. The proxy may add a delay to every call, as a real SQS far from loopback would; a
second process may read counts while it drains, for the read latency under load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import peervenv
import procstat
import redis
from feeder import Feeder
from workload import Workload

import devstack
from devstack import awsproxy
from workers.core.settings import Settings
from workers.domain.links.counter import LinkCounter
from workers.ops.provision import create_queues

QUEUE = "post-sent"
BENCH_DIR = Path(__file__).resolve().parent
POLL_SECONDS = 0.25
FAST_POLL_SECONDS = 0.02
# After its first receive, a consumer's other lanes are a moment behind: let them poll too.
SETTLE_SECONDS = 0.5
# A warm stop may wait out a 20 s long poll; a bench has no use for that (the figures are
# taken), so after this a second SIGTERM stops it at once, as it would in production.
STOP_GRACE_SECONDS = 0.5
# Messages the feeder keeps queued beyond what the consumer holds: enough that every receive
# finds a full batch, few enough that moto's depth-linear work stays small.
DEFAULT_BACKLOG = 10


class BenchError(RuntimeError):
    """The run cannot give trustworthy figures: said loudly, never papered over."""


@dataclass
class Stack:
    moto: devstack.Service  # moto's server, or another SQS stand-in (bench/standin.py)
    redis: devstack.Service
    workdir: Path

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto.port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def sqs(self) -> Any:
        """A client straight to moto, for the bench's own calls (never counted)."""
        creds = devstack.FAKE_CREDENTIALS
        return boto3.client("sqs", endpoint_url=self.moto_url,
                            region_name=creds["AWS_DEFAULT_REGION"],
                            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])


@dataclass
class Consumer:
    """What runs: its command line, how many messages it holds at once, and its settings as
    the results state them. A peer (Celery, Dramatiq, sqs-workers) runs in the peers'
    virtualenv and is fed its own library's encoding of the events; dramatiq_sqs joins its
    namespace and queue with "_". ``counts`` is False for moto's bare loop, which has no
    handler: its run is timed and checked by deletes alone."""

    kind: str
    argv: list[str]
    holds: int
    config: dict[str, Any] = field(default_factory=dict)
    peer: bool = False
    queue_separator: str = "-"
    counts: bool = True
    encoder: str = ""  # the peer whose encoding it reads, when not its kind
    env: dict[str, str] = field(default_factory=dict)  # its own variables (OTEL_*: tracing)

    @property
    def encoding(self) -> str:
        return self.encoder or self.kind


class Scenario:
    def __init__(self, stack: Stack, consumer: Consumer, workload: Workload,
                 backlog: int = DEFAULT_BACKLOG, delay_ms: float = 0.0,
                 read_latency: bool = False):
        self.stack, self.consumer, self.workload = stack, consumer, workload
        namespace = f"bench-{consumer.kind}-{uuid.uuid4().hex[:8]}"
        self.namespace = namespace
        self.settings = Settings(endpoint_url=stack.moto_url, redis_url=stack.redis_url,
                                 queue_prefix=namespace + consumer.queue_separator)
        self.sqs = stack.sqs()
        suffix = f"-{delay_ms:g}ms" if delay_ms else ""
        self.log_path = stack.workdir / f"{consumer.kind}{suffix}.log"
        self.backlog = backlog
        self.delay_ms = delay_ms
        self.read_latency = read_latency
        self.proxy: devstack.Service | None = None
        self.proc: subprocess.Popen | None = None
        self.tree: set[int] = set()  # the consumer's processes seen while it ran
        self.reader: subprocess.Popen | None = None
        self.feeder: Feeder | None = None

    def run(self) -> dict[str, Any]:
        """Runs the consumer over the workload; its figures, or BenchError if any is off."""
        queue_url, dlq_url = self._provision()
        counter = LinkCounter(redis.Redis.from_url(self.stack.redis_url),
                              buckets=self.settings.link_buckets)
        counter.client.flushall()  # each scenario counts from zero
        entries = self._entries()
        try:
            self._start(queue_url, entries)
            figures = self._measure(counter)
        finally:
            reads = self._stop_all()
        if self.read_latency:
            figures["read_latency"] = reads
        figures["counted"] = self._verify(counter, queue_url, dlq_url)
        figures["all_counted"] = figures["deleted"] >= len(self.workload.bodies)
        figures["config"] = self.consumer.config
        figures["proxy_delay_ms"] = self.delay_ms
        figures["sqs_server"] = self.stack.moto.name
        return figures

    def _entries(self) -> list[dict[str, Any]]:
        """What the feeder sends: the events as the consumer's own library enqueues them."""
        if not self.consumer.peer:
            return [{"MessageBody": body} for body in self.workload.bodies]
        try:
            return peervenv.encode(self.consumer.encoding, self.workload.bodies)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            raise BenchError(str(exc)) from exc

    def _provision(self) -> tuple[str, str]:
        create_queues(self.settings, self.sqs)
        return tuple(self.sqs.get_queue_url(QueueName=name)["QueueUrl"] for name in
                     (self.settings.queue_name(QUEUE), self.settings.dlq_name(QUEUE)))

    def _start(self, queue_url: str, entries: list[dict[str, Any]]) -> None:
        port = devstack.free_port()
        # Kept before it starts: a proxy that never listens is still stopped by _stop_all.
        self.proxy = proxy_service(port, self.stack.moto.port, self.stack.workdir, self.delay_ms)
        procstat.remember(self.proxy.start().proc.pid)
        env = devstack.stack_env(port, self.stack.redis.port,
                                 WORKERS_QUEUE_PREFIX=self.settings.queue_prefix,
                                 # What the peers' own configurations need to find the queue.
                                 BENCH_QUEUE_URL=queue_url, BENCH_NAMESPACE=self.namespace,
                                 **{"PYTHONPATH": str(peervenv.PEERS_DIR),
                                    **self.consumer.env})  # its own PYTHONPATH first
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.consumer.argv, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=peervenv.PEERS_DIR)
        procstat.remember(self.proc.pid)
        low = self.consumer.holds + self.backlog
        self.feeder = Feeder(self.sqs, queue_url, entries,
                             consumed=lambda: awsproxy.deleted(self._tally()),
                             low=low, high=low + self.backlog)

    def _start_reader(self) -> None:
        """A second process reading counts while the consumer drains (bench/readlatency.py)."""
        keys = self.stack.workdir / "read-keys.json"
        keys.write_text(json.dumps(self.workload.keys))
        env = {**os.environ, "REDIS_URL": self.stack.redis_url}
        self.reader = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "readlatency.py"), str(keys)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True)
        procstat.remember(self.reader.pid)

    def _tally(self) -> dict[str, Any]:
        assert self.proxy is not None
        return awsproxy.fetch_counts(self.proxy.port)

    def _cpu(self) -> dict[str, float]:
        pids = {self.stack.moto.name: self.stack.moto.proc, "proxy": self.proxy.proc,
                "redis": self.stack.redis.proc}
        cpu = {name: procstat.cpu_seconds(p.pid) for name, p in pids.items()}
        cpu["consumer"] = procstat.tree_cpu_seconds(self.proc.pid)
        self._see_tree()
        return cpu

    def _see_tree(self) -> None:
        """Remembers the consumer's processes, so each is stopped (and checked) at the end."""
        assert self.proc is not None
        for pid in procstat.tree(self.proc.pid):
            if pid not in self.tree:
                self.tree.add(pid)
                if pid != self.proc.pid:
                    procstat.remember(pid)

    def _measure(self, counter: LinkCounter) -> dict[str, Any]:
        assert self.proc is not None and self.feeder is not None
        self._wait_ready()
        cpu_before = self._cpu()
        if self.read_latency:
            self._start_reader()
        self.feeder.start()
        timing = self._watch(counter)
        timing["drain_seconds"] = self._wait_deleted()
        cpu = {k: v - cpu_before[k] for k, v in self._cpu().items()}
        rss = procstat.tree_peak_rss_bytes(self.proc.pid)
        return self._figures(timing, cpu, rss, self._tally())

    def _wait_ready(self, timeout: float = 60.0) -> None:
        """Ready = its first receive reached the proxy: imports and set-up are behind it."""
        deadline = time.monotonic() + timeout
        while self._tally()["requests"].get("ReceiveMessage", 0) == 0:
            self._check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"consumer made no receive in {timeout:.0f}s; "
                                 f"see {self.log_path}")
            time.sleep(0.05)
        time.sleep(SETTLE_SECONDS)

    def _watch(self, counter: LinkCounter) -> dict[str, float]:
        """Times the run from the first count to the last one.

        The first count is seen with DBSIZE (O(1): anything written after FLUSHALL is a count),
        the last by reading every expected counter, slowly at first and often near the end,
        so the bench's own polling takes little of the CPU the consumers share with it."""
        total, n = self.workload.pairs, len(self.workload.bodies)
        if not self.consumer.counts:  # moto's bare loop: deletes are all it does
            total = n
        timeout = 60 + 0.2 * n + 0.1 * n * self.delay_ms  # slower than any sane consumer
        started = time.monotonic()
        while self._done(counter, first=True) == 0:
            self._check_progress(0, total, time.monotonic() - started > timeout)
            time.sleep(FAST_POLL_SECONDS)
        first = time.monotonic()
        while True:
            counted = self._done(counter)
            last = time.monotonic()
            if counted >= total:
                break
            self._check_progress(counted, total, last - started > timeout)
            time.sleep(FAST_POLL_SECONDS if counted >= 0.95 * total else POLL_SECONDS)
        seconds = max(last - first, FAST_POLL_SECONDS)
        return {"seconds": seconds, "msgs_per_s": n / seconds, "wall_seconds": last - started}

    def _done(self, counter: LinkCounter, first: bool = False) -> int:
        """Links counted so far (or messages deleted, for a consumer with no handler)."""
        if not self.consumer.counts:
            return awsproxy.deleted(self._tally())
        if first:
            return counter.client.dbsize()
        return sum(counter.counts(self.workload.keys))

    def _check_progress(self, counted: int, total: int, timed_out: bool) -> None:
        self._check_alive()
        if self.feeder is not None and self.feeder.error is not None:
            raise BenchError(f"feeder failed: {self.feeder.error!r}")
        if timed_out:
            raise BenchError(f"only {counted}/{total} links counted in time; see {self.log_path}")

    def _wait_deleted(self, timeout: float = 30.0) -> float:
        """Counted is not yet deleted: wait for the deletes, so they are on the bill too."""
        started = time.monotonic()
        while awsproxy.deleted(self._tally()) < len(self.workload.bodies):
            self._check_alive()
            if time.monotonic() - started > timeout:
                raise BenchError(f"messages not all deleted after {timeout:.0f}s")
            time.sleep(0.02)
        return time.monotonic() - started

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"consumer exited with {self.proc.returncode}:\n{tail}")

    def _stop_all(self) -> dict[str, Any] | None:
        """Stops everything the scenario started; the reader's figures, if one ran."""
        if self.feeder is not None:
            self.feeder.stop()
        reads = self._stop_reader()
        if self.proc is not None:
            if self.proc.poll() is None:
                self._see_tree()
            stop(self.proc)
            # A pool's children may outlive a parent that had to be killed: by PID, each one.
            for pid in self.tree - {self.proc.pid}:
                kill(pid)
        if self.proxy is not None:
            self.proxy.stop()
        return reads

    def _stop_reader(self) -> dict[str, Any] | None:
        if self.reader is None:
            return None
        self.reader.send_signal(signal.SIGTERM)
        try:
            out, err = self.reader.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.reader.kill()
            out, err = self.reader.communicate()
        try:
            return json.loads(out)
        except ValueError as exc:
            raise BenchError(f"the count reader said nothing usable: {err[-1000:]}") from exc

    def _verify(self, counter: LinkCounter, queue_url: str, dlq_url: str) -> dict[str, int]:
        """Every link's count is exactly the number of posts that named it; the queue is
        empty (every message deleted) and so is its DLQ."""
        keys, expected = self.workload.keys, self.workload.expected
        counts = counter.counts(keys) if self.consumer.counts else [expected[k] for k in keys]
        wrong = sum(got != expected[k] for k, got in zip(keys, counts, strict=True))
        left, dead = self._depth(queue_url), self._depth(dlq_url)
        if wrong or left or dead:
            raise BenchError(f"{self.consumer.kind}: {wrong} of {len(keys)} link counts wrong, "
                             f"{left} messages left in the queue, {dead} dead letters; "
                             f"see {self.log_path}")
        return {"links": len(keys) if self.consumer.counts else 0,
                "pairs": self.workload.pairs if self.consumer.counts else 0, "wrong": wrong,
                "left_in_queue": left, "dead_letters": dead}

    def _depth(self, url: str, settle: float = 5.0) -> int:
        """Messages in the queue, visible or not; waits a moment for deletes still landing."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        deadline = time.monotonic() + settle
        while True:
            attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
            depth = sum(int(attrs["Attributes"][n]) for n in names)
            if depth == 0 or time.monotonic() > deadline:
                return depth
            time.sleep(0.1)

    def _figures(self, timing: dict[str, float], cpu: dict[str, float], rss: int,
                 tally: dict[str, Any]) -> dict[str, Any]:
        n = len(self.workload.bodies)
        receives = tally["requests"].get("ReceiveMessage", 0)
        return {
            "messages": n,
            "deleted": awsproxy.deleted(tally),
            "msgs_per_s": timing["msgs_per_s"],
            "measured_seconds": timing["seconds"],
            "wall_seconds": timing["wall_seconds"],
            "drain_seconds": timing["drain_seconds"],
            "sqs_requests": tally["total"],
            "sqs_requests_per_msg": tally["total"] / n,
            "sqs_requests_by_action": tally["requests"],
            "msgs_per_receive": tally["received"] / receives if receives else 0.0,
            "empty_receives": tally["empty_receives"],
            "cpu_seconds": cpu["consumer"],
            "cpu_s_per_1000_msgs": cpu["consumer"] / n * 1000,
            # Where else the time went: moto's share is what real SQS would not cost us.
            "stack_cpu_s_per_1000_msgs": {k: v / n * 1000 for k, v in cpu.items()
                                          if k != "consumer"},
            "peak_rss_bytes": rss,
            "processes": len(self.tree),
            "feeder_starved": self.feeder.starved if self.feeder else 0,
            "backlog": self.backlog,
        }


def proxy_service(port: int, moto_port: int, workdir: Path,
                  delay_ms: float = 0.0) -> devstack.Service:
    """The counting proxy in front of moto, not started yet (so it can be stopped whatever
    happens to its start)."""
    return awsproxy.service(port, moto_port, workdir / "proxy.log", count=True,
                            delay_ms=delay_ms, name="proxy")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGTERM again (the daemon's "stop now"), then SIGKILL; by PID only."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGTERM, 5.0),
                      (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def kill(pid: int) -> None:
    """SIGKILL one process we started (a pool child left behind), if it is still there."""
    if procstat.alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
