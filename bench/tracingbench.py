"""What tracing costs: our post-sent daemon drains the same number of events with tracing off
(no OTEL_* at all) and on (OTEL_TRACES_SAMPLER=always_on: every message's spans, exported over
OTLP/HTTP to a receiver in this process), alternately, ROUNDS times each, on one moto and one
redis-server of its own. The figure is the daemon's CPU seconds per 1,000 messages (its whole
process tree, from the first message fed to the last delete), and on over off.

    .venv/bin/python bench/bench.py --only tracing [--messages 3000]
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any

import consumers
import procstat
import scenario
import workload

import devstack
from devstack.otlp import OTLPReceiver

# Off, on, off, on: a machine others share drifts; alternating spreads the drift over both.
# (--quick: once each, to show the part works, not to measure.)
ROUNDS = {False: 2, True: 1}
# SPEC's budget for tracing on at 100% sampling.
GOAL_RATIO = 1.25
# The spans still batched in a daemon are exported as it exits warmly; the scenario's usual
# 0.5 s before its "stop now" (a second SIGTERM: os._exit, no export) can cut that short when
# a round drains faster than the SDK's 5 s export interval. Its CPU is measured before the stop.
STOP_GRACE_SECONDS = 15.0


def measure(messages: int, concurrency: int, backlog: int, workdir: Path,
            rounds: int = ROUNDS[False]) -> dict[str, Any]:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:  # "off" means none at all
        del os.environ[name]
    moto = devstack.moto_server(log_path=workdir / "moto-tracing.log")
    redis_srv = devstack.redis_server(log_path=workdir / "redis-tracing.log")
    receiver = OTLPReceiver().start()
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_TRACES_SAMPLER": "always_on"}
    grace, scenario.STOP_GRACE_SECONDS = scenario.STOP_GRACE_SECONDS, STOP_GRACE_SECONDS
    try:
        for service in (moto, redis_srv):
            procstat.remember(service.start().proc.pid)
        stack = scenario.Stack(moto, redis_srv, workdir)
        for _ in range(rounds):
            for mode, env in (("off", {}), ("on", on)):
                consumer = dataclasses.replace(consumers.of("ours", concurrency), env=env)
                events = workload.build(messages, run_id=f"tracing-{mode}-{time.time_ns()}")
                runs[mode].append(scenario.Scenario(stack, consumer, events, backlog).run())
    finally:
        scenario.STOP_GRACE_SECONDS = grace
        receiver.stop()
        redis_srv.discard()
        moto.stop()
    cpu = {mode: [r["cpu_s_per_1000_msgs"] for r in rs] for mode, rs in runs.items()}
    off, on_cpu = statistics.mean(cpu["off"]), statistics.mean(cpu["on"])
    return {"messages": messages, "rounds": rounds, "cpu_s_per_1000_msgs": cpu,
            "off": round(off, 3), "on": round(on_cpu, 3), "ratio": round(on_cpu / off, 3),
            "goal_ratio": GOAL_RATIO, "within_goal": on_cpu / off <= GOAL_RATIO,
            "spans_exported": len(receiver.spans()),
            "msgs_per_s": {mode: [round(r["msgs_per_s"]) for r in rs]
                           for mode, rs in runs.items()},
            "all_counted": all(r["all_counted"] for rs in runs.values() for r in rs)}


def lines(result: dict[str, Any]) -> list[str]:
    cpu = result["cpu_s_per_1000_msgs"]
    return [f"tracing: CPU s per 1,000 messages, off {result['off']:.2f} "
            f"({', '.join(f'{c:.2f}' for c in cpu['off'])}), on at 100% sampling "
            f"{result['on']:.2f} ({', '.join(f'{c:.2f}' for c in cpu['on'])}): "
            f"{result['ratio']:.2f}x off (goal <= {result['goal_ratio']}x); "
            f"{result['spans_exported']:,} spans exported"]
