"""Scale-out across hosts: the same post-sent backlog drained by 1, 2 and 3 hosts, each a
network namespace (tests/support/netns.py) running one post-sent daemon under its own
supervisord, as in production. SQS is ministack (bench/.sqs-standin) in the root namespace,
reached from each host through a proxy in its namespace that adds DELAY_MS to every call
(bench/delayproxy.py); Redis is one redis-server in the root namespace. Needs root.

For each part: messages/s from the first message counted to the last, its ratio to one host,
CPU seconds of the hosts' processes (supervisord, workers-scale, the daemon, the proxy) and of
the shared services (ministack, redis-server), and whether every count is exact (the sum of
every link's count is the number of events, each event one link) with nothing dead-lettered.

    .venv/bin/python bench/fleetbench.py [--messages 60000] [--hosts 1 2 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import checkout_path  # noqa: F401  (first: devstack and tests/support on sys.path)

# isort: split
import boto3
import procstat
import standin
from feeder import Feeder

import devstack
from netns import Hosts
from workers import QUEUES
from workers.adapters import redisconn
from workers.core.settings import procs_variable
from workers.domain.links.counter import LinkCounter

TOP = Path(__file__).resolve().parents[1]

# What real SQS adds to a call from the same region, at least.
DELAY_MS = 5.0
SITES = 1000
# Messages kept queued (sent, not yet counted): ministack, like moto, slows with a queue's depth
# (60,000 queued drained at 12 msgs/s), so the backlog is fed, never piled up front.
LOW, HIGH = 1000, 2000
WORKERS = str(Path(sys.executable).parent / "workers")
PROXY_PORT = 9400  # inside each host's namespace: its own loopback, no clash


def events(count: int, run: str) -> list[str]:
    return [json.dumps({"update_id": f"{run}-{i}", "profile_id": "p",
                        "urls": [f"https://site{i % SITES}.example.com/"]})
            for i in range(count)]


def part(hosts_count: int, messages: int, sqs_port: int, redis_port: int,
         services: list[int], workdir: Path) -> dict[str, Any]:
    prefix = f"fb{uuid.uuid4().hex[:6]}-"
    env = devstack.stack_env(sqs_port, redis_port, WORKERS_QUEUE_PREFIX=prefix,
                             WORKERS_BIN=WORKERS, WORKERS_WAIT_SECONDS="2",
                             WORKERS_STOPWAITSECS="30",
                             **{procs_variable(q): "0" for q in (*QUEUES, "links-api")})
    env[procs_variable("post-sent")] = "1"
    subprocess.run([WORKERS, "queues", "create"], env=env, check=True, capture_output=True,
                   timeout=120)
    sqs = boto3.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL"])
    source = sqs.get_queue_url(QueueName=prefix + "post-sent")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=prefix + "post-sent-dlq")["QueueUrl"]
    client = redisconn.connect(env["REDIS_URL"])
    client.flushall()
    keys = [f"site{s}.example.com" for s in range(SITES)]
    counter = LinkCounter(client)
    state = {"counted": 0}
    feeder = Feeder(sqs, source, [{"MessageBody": b} for b in events(messages, prefix)],
                    lambda: state["counted"], LOW, HIGH)
    feeder.start()
    hosts = Hosts(hosts_count)
    proxies: list[subprocess.Popen] = []
    try:
        for host in hosts.hosts:
            proxies.append(subprocess.Popen(host.command(
                sys.executable, str(TOP / "bench" / "delayproxy.py"), "--port", str(PROXY_PORT),
                "--upstream", f"{host.root_ip}:{sqs_port}", "--delay-ms", str(DELAY_MS)),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        cpu_before = sum(procstat.cpu_seconds(p) for p in services)
        for host in hosts.hosts:
            host.start({**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{PROXY_PORT}",
                        "REDIS_URL": f"redis://{host.root_ip}:{redis_port}/0"})
        counted = 0
        while counted == 0:
            counted = state["counted"] = sum(counter.counts(keys))
            time.sleep(0.05)
        first, started, starved = counted, time.monotonic(), feeder.starved
        while counted < messages:
            if feeder.error is not None:
                raise RuntimeError(f"the feeder failed: {feeder.error}")
            time.sleep(0.1)
            counted = state["counted"] = sum(counter.counts(keys))
        elapsed = time.monotonic() - started
        host_cpu = sum(procstat.tree_cpu_seconds(h.supervisord.pid) for h in hosts.hosts
                       if h.supervisord) + sum(procstat.tree_cpu_seconds(p.pid) for p in proxies)
        service_cpu = sum(procstat.cpu_seconds(p) for p in services) - cpu_before
        time.sleep(3)  # the last acknowledgements reach SQS
        depth = _depth(sqs, source) + _depth(sqs, dlq)
        exact = sum(counter.counts(keys)) == messages and _depth(sqs, dlq) == 0
        return {"hosts": hosts_count, "messages": messages,
                "msgs_per_s": round((messages - first) / elapsed, 1),
                "host_cpu_s": round(host_cpu, 1), "service_cpu_s": round(service_cpu, 1),
                "exact": exact, "left_in_queues": depth,
                "feeder_starved": feeder.starved - starved}
    finally:
        feeder.stop()
        hosts.close()
        for proxy in proxies:
            proxy.kill()
            proxy.wait()


def _depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(v) for v in attrs.values())


def measure(messages: int, host_counts: list[int], log=print) -> dict[str, Any]:
    os.environ.update(devstack.FAKE_CREDENTIALS)  # the stand-in's; no real AWS is reached
    venv = standin.ensure(log)
    workdir = Path(tempfile.mkdtemp(prefix="fleetbench-"))
    port = devstack.free_port()
    sqs = devstack.Service("ministack", [str(venv / "bin" / "ministack")], port,
                           workdir / "ministack.log",
                           env={**os.environ, "GATEWAY_PORT": str(port), "BIND_HOST": "0.0.0.0",
                                "LOG_LEVEL": "WARNING"}).start()
    redis = devstack.redis_server(log_path=workdir / "redis.log", extra=(
        "--bind", "0.0.0.0", "--protected-mode", "no")).start()
    try:
        runs = []
        for count in host_counts:
            log(f"fleet: {messages:,} post-sent events drained by {count} host(s) of one "
                f"daemon each, +{DELAY_MS:g} ms a call...")
            runs.append(part(count, messages, port, redis.port,
                             [sqs.proc.pid, redis.proc.pid], workdir))  # type: ignore[union-attr]
            log(line(runs[-1], runs[0]))
        return {"delay_ms": DELAY_MS, "runs": runs}
    finally:
        redis.discard()
        sqs.stop()


def line(run: dict[str, Any], one: dict[str, Any]) -> str:
    return (f"fleet: {run['hosts']} host(s): {run['msgs_per_s']:,.0f} msgs/s, "
            f"{run['msgs_per_s'] / one['msgs_per_s']:.2f}x one host; CPU {run['host_cpu_s']} s "
            f"on the hosts, {run['service_cpu_s']} s ministack + redis; "
            f"{'every count exact' if run['exact'] else 'COUNTS WRONG'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    result = measure(args.messages, args.hosts)
    print(json.dumps(result))
    sys.exit(0 if all(r["exact"] for r in result["runs"]) else 1)
