"""What tracing costs: our post-sent daemon drains the same number of events with the code of
the commit before tracing landed ("before"), and with today's code with tracing off (no OTEL_*
at all) and on (OTEL_TRACES_SAMPLER=always_on: every message's spans, exported over OTLP/HTTP
to a receiver in this process), in turn, ROUNDS times each, on one moto and one redis-server
of its own. The figure is the daemon's CPU seconds per 1,000 messages (its whole process tree,
from the first message fed to the last delete); then off over before, and on over off.

"before" is that commit's tree, taken with `git archive` into a temporary directory and put
first on the daemon's PYTHONPATH, in this same virtualenv (its dependencies are a subset of
today's). Without the git history (a shallow clone, no git), the part says so and measures
off and on only.

    .venv/bin/python bench/tracingbench.py [--quick] [--messages 3000]
    (the same as: .venv/bin/python bench/bench.py --only tracing ...)
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import checkout_path  # noqa: F401  (first: devstack and tests/support on sys.path)

# isort: split
import consumers
import peervenv
import procstat
import scenario
import workload

import devstack
from devstack.otlp import OTLPReceiver
from workers.adapters import tracing

REPO = Path(__file__).resolve().parents[1]
# before, off, on, before, off, on: a machine others share drifts; taking them in turn spreads
# the drift over all three. (--quick: once each, to show the part works, not to measure.)
ROUNDS = {False: 2, True: 1}
MODES = ("before", "off", "on")
# SPEC's budget for tracing on at 100% sampling; off must match before within noise.
GOAL_RATIO = 1.25
# A round ends when SQS took as many deletes as there are messages; moto hands a few messages
# out twice in a long drain, so a few others may still be in flight then. A warm stop lets the
# daemon finish them (the scenario's usual 0.5 s before a second SIGTERM does not, and they
# stay in the queue), and a 1 s long poll keeps that stop short. Its CPU is measured before.
STOP_GRACE_SECONDS = 15.0
WAIT_SECONDS = "1"


def previous_tree(workdir: Path) -> tuple[Path | None, str]:
    """The package as it was in the commit before tracing landed, extracted under
    ``workdir``, and that commit; (None, why) when git cannot give it."""
    module = Path(tracing.__file__).resolve().relative_to(REPO)
    try:
        added = _git("log", "--follow", "--diff-filter=A", "--format=%H", "--", str(module))
        first = added.split()[-1]
        before = _git("rev-parse", f"{first}^").strip()
        tree = workdir / f"before-{before[:12]}"
        tree.mkdir()
        archive = subprocess.run(["git", "archive", "--format=tar", before, "workers"],
                                 cwd=REPO, capture_output=True, check=True, timeout=120)
        tar = workdir / "before.tar"
        tar.write_bytes(archive.stdout)
        with tarfile.open(tar) as extracted:
            extracted.extractall(tree, filter="data")
    except (OSError, IndexError, subprocess.SubprocessError) as exc:
        return None, f"no tree before tracing: {exc}"
    return tree, before


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def imported_from(tree: Path) -> None:
    """BenchError unless a daemon started with ``tree`` first on PYTHONPATH runs its code."""
    found = subprocess.run([sys.executable, "-c", "import workers; print(workers.__file__)"],
                           env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                           text=True, timeout=60, cwd=peervenv.PEERS_DIR).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise scenario.BenchError(f"the tree before tracing is not what runs: {found}")


def measure(messages: int, concurrency: int, backlog: int, workdir: Path,
            rounds: int = ROUNDS[False]) -> dict[str, Any]:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:  # "off" means none at all
        del os.environ[name]
    tree, commit = previous_tree(workdir)
    if tree is not None:
        imported_from(tree)
    moto = devstack.moto_server(log_path=workdir / "moto-tracing.log")
    redis_srv = devstack.redis_server(log_path=workdir / "redis-tracing.log")
    receiver = OTLPReceiver().start()
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    envs = {"off": {}, "on": {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                              "OTEL_TRACES_SAMPLER": "always_on"}}
    if tree is not None:
        envs["before"] = {"PYTHONPATH": os.pathsep.join([str(tree), str(peervenv.PEERS_DIR)])}
    envs = {mode: {**env, "WORKERS_WAIT_SECONDS": WAIT_SECONDS} for mode, env in envs.items()}
    grace, scenario.STOP_GRACE_SECONDS = scenario.STOP_GRACE_SECONDS, STOP_GRACE_SECONDS
    try:
        for service in (moto, redis_srv):
            procstat.remember(service.start().proc.pid)
        stack = scenario.Stack(moto, redis_srv, workdir)
        for _ in range(rounds):
            for mode in [m for m in MODES if m in envs]:
                consumer = dataclasses.replace(consumers.of("ours", concurrency),
                                               kind=f"ours-{mode}", env=envs[mode])
                events = workload.build(messages, run_id=f"tracing-{mode}-{time.time_ns()}")
                runs[mode].append(scenario.Scenario(stack, consumer, events, backlog).run())
    finally:
        scenario.STOP_GRACE_SECONDS = grace
        receiver.stop()
        redis_srv.discard()
        moto.stop()
    cpu = {mode: [r["cpu_s_per_1000_msgs"] for r in rs] for mode, rs in runs.items() if rs}
    mean = {mode: statistics.mean(values) for mode, values in cpu.items()}
    before = mean.get("before")
    return {"messages": messages, "rounds": rounds, "cpu_s_per_1000_msgs": cpu,
            "before": round(before, 3) if before else None,
            "before_commit": commit if tree is not None else None,
            "before_missing": None if tree is not None else commit,
            "off": round(mean["off"], 3), "on": round(mean["on"], 3),
            "ratio": round(mean["on"] / mean["off"], 3),
            "off_over_before": round(mean["off"] / before, 3) if before else None,
            "on_over_before": round(mean["on"] / before, 3) if before else None,
            "goal_ratio": GOAL_RATIO, "within_goal": mean["on"] / mean["off"] <= GOAL_RATIO,
            "spans_exported": len(receiver.spans()),
            "msgs_per_s": {mode: [round(r["msgs_per_s"]) for r in rs]
                           for mode, rs in runs.items() if rs},
            "all_counted": all(r["all_counted"] for rs in runs.values() for r in rs)}


def lines(result: dict[str, Any]) -> list[str]:
    cpu = result["cpu_s_per_1000_msgs"]

    def figure(mode: str) -> str:
        return f"{result[mode]:.2f} ({', '.join(f'{c:.2f}' for c in cpu[mode])})"

    before = (f"before tracing ({result['before_commit'][:12]}) {figure('before')}, "
              if result["before"] else f"before tracing: not measured "
                                       f"({result['before_missing']}), ")
    ratios = (f"off {result['off_over_before']:.2f}x before, " if result["before"] else "")
    return [f"tracing: CPU s per 1,000 messages, {before}off {figure('off')}, "
            f"on at 100% sampling {figure('on')}: {ratios}"
            f"on {result['ratio']:.2f}x off (goal <= {result['goal_ratio']}x); "
            f"{result['spans_exported']:,} spans exported"]


def main(argv: list[str] | None = None) -> int:
    """This part alone: bench.py's own run (its options, workdir, clean-up, JSON results)."""
    import bench

    return bench.main(["--only", "tracing", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
