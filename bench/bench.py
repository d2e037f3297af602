"""`make bench`: our post-sent daemon beside what users would pick instead, on a local stack
of its own.

One run drains the same post-sent events, on one moto and one redis-server, with: ours, a
well-written boto3 batch loop, a naive boto3 loop, Celery (kombu's SQS transport), Dramatiq
(dramatiq_sqs) and Doist's sqs-workers (the peers, from a virtualenv of their own built under
bench/.venv-peers on first use), and a bare receive/delete loop with no handler: moto's
ceiling. Then the same again through a proxy adding 10 ms to every SQS call, and again on
ministack (bench/.sqs-standin, `make standin`), an SQS stand-in whose own ceiling is far above
moto's, so that moto's does not hide ours. For each:
messages/s, SQS requests per message (counted at the proxy), CPU seconds per 1,000 messages
and peak RSS of the consumer's whole process tree. Also: link-count read latency from a second
process while ours drains, Redis bytes per counted URL and per idempotency key, backfill
records/s, counting on a Redis Cluster, and the HTTP read API (one `workers links serve` under
wrk, beside redis-benchmark; bench/readbench.py), and the fleet's scale-out: one backlog drained
by 1, 2 and 3 hosts, each a network namespace (root) with its own supervisord
(bench/fleetbench.py). It prints a table and writes the same as JSON to
bench/results/bench-<UTC timestamp>.json (or --json-out).

    .venv/bin/python bench/bench.py [--messages 3000] [--delay-messages 1000] [--urls 1000000]
    .venv/bin/python bench/bench.py --quick          # a small run of everything; the tests'

Everything it starts (moto, redis-server, the proxy, the consumers) runs on free loopback
ports and is stopped by PID when it ends, Ctrl-C and errors included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import checkout_path  # noqa: F401  (first: devstack and tests/support on sys.path)

# isort: split
import backfillbench
import clusterbench
import consolebench
import consumers
import fleetbench
import hoturl
import peervenv
import procstat
import publishbench
import readbench
import redismem
import redisprod
import report
import scenario
import soak
import standin
import tracingbench
import workload

import devstack
from workers.core.settings import DEFAULT_CONCURRENCY

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FULL = {"messages": 3000, "delay_messages": 1000, "urls": 1_000_000, "pairs": 2_000_000,
        "backfill_records": 1_000_000, "soak_messages": 200_000}
QUICK = {"messages": 200, "delay_messages": 60, "urls": 20_000, "pairs": 20_000,
         "backfill_records": 20_000, "soak_messages": 5_000}
# Prior shares of one link before its counting cost is measured, and counts measured at each.
HOT_SIZES = {False: hoturl.SIZES, True: (1_000, 20_000)}
HOT_SAMPLES = {False: 2_000, True: 500}
# Batches of 10 messages counted under each way of running Redis in production.
DURABILITY_BATCHES = {False: 300, True: 20}
# What real SQS adds to a call that loopback moto does not.
DELAY_MS = 10.0
PARTS = (*consumers.KINDS, "delayed", "standin", "reads", "redis", "hot", "durability",
         "backfill", "cluster", "read", "soak", "publish", "tracing", "fleet", "console")
# The fleet across hosts: one backlog drained by 1, 2 and 3 hosts (network namespaces, root).
FLEET_MESSAGES = {False: 60_000, True: 2_000}  # --quick: only with --only fleet
FLEET_HOSTS = (1, 2, 3)
# Who runs on the stand-in in --quick: the bare loop's ceiling and ours, for their ratio.
QUICK_STANDIN_KINDS = ("bare", "ours")
# Behind each of these delays on the stand-in (with 'delayed'): what real SQS adds to a call
# from the same region, and from further away. moto, slower than both, would hide it.
STANDIN_DELAYS_MS = (10.0, 20.0)
# Who runs there: the figures issue 17's goal compares (ours against sqs-workers and the batch
# loop at default settings), and the ceiling.
STANDIN_DELAYED_KINDS = ("bare", "ours", "batch", "sqsworkers")
# The read API's part: counted URLs it reads among, and seconds of each wrk run.
READ_URLS = {False: 1_000_000, True: 20_000}
READ_SECONDS = {False: 10.0, True: 2.0}
# publish: posts each publisher drains, at each added network latency (ms).
PUBLISH_POSTS = {False: 2_000, True: 60}
PUBLISH_LATENCIES = {False: (0.0, 50.0), True: (50.0,)}
# Counting processes and updates for the cluster-vs-single figure.
CLUSTER_PROCESSES, CLUSTER_UPDATES = 4, {False: 40_000, True: 4_000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (200 messages, 20,000 URLs): a few minutes")
    parser.add_argument("--messages", type=int, help="post-sent events each consumer drains")
    parser.add_argument("--delay-messages", type=int,
                        help=f"events each consumer drains behind the {DELAY_MS:g} ms proxy")
    parser.add_argument("--urls", type=int, help="distinct URLs for the Redis memory figure")
    parser.add_argument("--pairs", type=int, help="(update_id, url) idempotency keys to measure")
    parser.add_argument("--backfill-records", type=int,
                        help="archive records the backfill figure rebuilds from")
    parser.add_argument("--soak-messages", type=int,
                        help="events one daemon drains in the soak part, RSS sampled")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="our daemon's --concurrency (default: %(default)s)")
    parser.add_argument("--backlog", type=int, default=scenario.DEFAULT_BACKLOG,
                        help="messages kept queued beyond what the consumer holds "
                             "(default: %(default)s; moto slows down linearly with depth)")
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="run only these parts (repeatable; 'delayed' reruns the chosen "
                             "consumers behind the delaying proxy, 'standin' on ministack, "
                             "'reads' is the read "
                             "latency while ours drains, 'read' the HTTP read API under wrk); "
                             "the table needs them all")
    parser.add_argument("--standin-delay-ms", type=float, action="append",
                        help="with 'delayed' and 'standin': the delays the chosen consumers "
                             "run behind on the stand-in too (repeatable; default: "
                             f"{', '.join(f'{d:g}' for d in STANDIN_DELAYS_MS)})")
    parser.add_argument("--json-out", type=Path, help="where to write the JSON results")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the consumers' and servers' logs (their directory is printed)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for name, default in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    return args


def throughput(args: argparse.Namespace, kinds: list[str], parts: list[str],
               workdir: Path) -> dict[str, Any]:
    """Every consumer, one after the other, on one moto and one redis-server; then again
    behind the delaying proxy; then ours with a second process reading counts."""
    moto = devstack.moto_server(log_path=workdir / "moto.log")
    redis_srv = devstack.redis_server(log_path=workdir / "redis.log")
    results: dict[str, Any] = {"direct": {}, "delayed": {}}
    try:
        for service in (moto, redis_srv):
            procstat.remember(service.start().proc.pid)
        stack = scenario.Stack(moto, redis_srv, workdir)
        ordered = sorted(kinds, key=consumers.RUN_ORDER.index)
        for kind in ordered:
            results["direct"][kind] = drain(stack, args, kind, args.messages)
        if "delayed" in parts:
            for kind in ordered:
                results["delayed"][kind] = drain(stack, args, kind, args.delay_messages,
                                                 delay_ms=DELAY_MS)
        for flow in ("direct", "delayed"):  # shown in the table's order
            results[flow] = {k: results[flow][k] for k in kinds if k in results[flow]}
        if "reads" in parts:
            run = drain(stack, args, "ours", args.messages, read_latency=True)
            results["reads"] = {**run.pop("read_latency"), "while": run}
        if "standin" in parts:
            results["standin"] = on_standin(args, ordered, redis_srv, workdir,
                                            delayed="delayed" in parts)
    finally:
        redis_srv.discard()
        moto.stop()
    return results


def on_standin(args: argparse.Namespace, kinds: list[str], redis_srv: devstack.Service,
               workdir: Path, delayed: bool = False) -> dict[str, Any]:
    """The chosen consumers again (in --quick, the bare loop and ours), on ministack: what
    they do when the SQS in front of them is not the bottleneck; with ``delayed``, those of
    STANDIN_DELAYED_KINDS again behind each delay. Skipped, with the reason printed and
    recorded, when the stand-in is not installed."""
    if not standin.installed():  # run() prints the reason
        return {"skipped": standin.missing_reason()}
    if args.quick:
        kinds = [k for k in kinds if k in QUICK_STANDIN_KINDS]
    server = devstack.ministack_server(standin.VENV, log_path=workdir / "ministack.log")
    runs: dict[str, Any] = {}
    try:
        procstat.remember(server.start().proc.pid)
        stack = scenario.Stack(server, redis_srv, workdir)
        for kind in kinds:
            runs[kind] = drain(stack, args, kind, args.messages, where=" on ministack")
        behind = standin_delayed(stack, args, kinds) if delayed else {}
    finally:
        server.stop()
    out = {"server": standin.REQUIREMENT, "runs": {k: runs[k] for k in consumers.KINDS
                                                  if k in runs}}
    if behind:
        out["delayed"] = behind
    return out


def standin_delayed(stack: scenario.Stack, args: argparse.Namespace,
                    kinds: list[str]) -> dict[str, Any]:
    """Each delay's runs on the stand-in, and ours' ratio to each other consumer's msgs/s."""
    out: dict[str, Any] = {}
    for delay in args.standin_delay_ms or STANDIN_DELAYS_MS:
        runs = {kind: drain(stack, args, kind, args.delay_messages, delay_ms=delay,
                            where=" on ministack")
                for kind in kinds if kind in STANDIN_DELAYED_KINDS}
        ours = runs.get("ours", {}).get("msgs_per_s")
        ratios = {f"ours_over_{k}": round(ours / r["msgs_per_s"], 2)
                  for k, r in runs.items() if ours and k != "ours" and r["msgs_per_s"]}
        out[f"{delay:g}ms"] = {"runs": runs, "ratios": ratios}
        log(f"on ministack behind +{delay:g} ms: " + ", ".join(
            f"{k} {r['msgs_per_s']:.0f} msgs/s ({r['cpu_s_per_1000_msgs']:.2f} CPU s/1k)"
            for k, r in runs.items()) + "; " + ", ".join(
            f"{k} {v:.2f}x" for k, v in ratios.items()))
    return out


def run_soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One daemon of ours through ``--soak-messages`` on ministack (bench/soak.py)."""
    if not standin.installed():
        return {"skipped": standin.missing_reason()}
    server = devstack.ministack_server(standin.VENV, log_path=workdir / "ministack-soak.log")
    redis_srv = devstack.redis_server(log_path=workdir / "redis-soak.log")
    try:
        for service in (server, redis_srv):
            procstat.remember(service.start().proc.pid)
        stack = scenario.Stack(server, redis_srv, workdir)
        events = workload.build(args.soak_messages, run_id=f"soak-{time.time_ns()}")
        run = soak.Soak(stack, consumers.of("ours", args.concurrency), events,
                        args.backlog).run()
    finally:
        redis_srv.discard()
        server.stop()
    return {"messages": args.soak_messages, "samples": run.pop("rss_samples"),
            "growth": run.pop("growth"), "run": run}


def drain(stack: scenario.Stack, args: argparse.Namespace, kind: str, messages: int,
          delay_ms: float = 0.0, read_latency: bool = False, where: str = "") -> dict[str, Any]:
    events = workload.build(messages, run_id=f"{kind}-{time.time_ns()}")
    what = where + (f" behind +{delay_ms:g} ms" if delay_ms else "") + (
        ", a second process reading counts" if read_latency else "")
    log(f"{kind}: draining {messages} post-sent events ({events.pairs} links to count){what}...")
    consumer = consumers.of(kind, args.concurrency)
    run = scenario.Scenario(stack, consumer, events, args.backlog, delay_ms=delay_ms,
                            read_latency=read_latency).run()
    log(f"{kind}: {run['msgs_per_s']:.0f} msgs/s, "
        f"{run['sqs_requests_per_msg']:.3f} SQS requests/msg, "
        f"{run['cpu_s_per_1000_msgs']:.2f} CPU s/1000 msgs")
    return run


def run_fleet(messages: int) -> dict[str, Any]:
    """The scale-out part; where namespaces cannot be made (not root), says why and goes on."""
    from netns import RigError

    try:
        return fleetbench.measure(messages, list(FLEET_HOSTS), log)
    except RigError as exc:
        log(f"fleet: not measured: {exc}")
        return {"skipped": str(exc), "runs": []}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    parts = args.only or list(PARTS)
    started = time.monotonic()
    result: dict[str, Any] = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": {"quick": args.quick, "messages": args.messages,
                   "delay_messages": args.delay_messages, "delay_ms": DELAY_MS,
                   "urls": args.urls, "pairs": args.pairs, "concurrency": args.concurrency,
                   "backfill_records": args.backfill_records,
                   "backlog": args.backlog,
                   "cpus": _cpus(), "python": sys.version.split()[0]},
        # Which code and machine the figures are of: the docs' benchmark page prints them.
        "machine": _machine(),
    }
    kinds = [k for k in consumers.KINDS if k in parts]
    if any(k in consumers.PEERS for k in kinds):
        try:
            peervenv.ensure(log)
            result["params"]["peer_versions"] = peervenv.versions()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise scenario.BenchError(f"the peers' virtualenv: {exc}") from exc
    if kinds or "reads" in parts:
        flow = throughput(args, kinds, parts, workdir)
        result["throughput"] = flow["direct"]
        result["throughput_delayed"] = flow["delayed"]
        if "reads" in flow:
            result["read_latency"] = flow["reads"]
        if "standin" in flow:
            result["standin"] = flow["standin"]
            if "runs" in result["standin"]:
                result["standin"]["ceiling"] = report.standin_ceiling(result)
            log(report.ceiling_line(result["standin"]))
    else:
        result["throughput"], result["throughput_delayed"] = {}, {}
    if "redis" in parts:
        log(f"redis: {args.urls:,} URLs and {args.pairs:,} idempotency keys...")
        result["redis"] = redismem.measure(args.urls, args.pairs)
    if "hot" in parts:
        sizes = HOT_SIZES[args.quick]
        log(f"hot: Redis time per count of one link after {', '.join(f'{n:,}' for n in sizes)} "
            "prior shares...")
        result["hot_url"] = hoturl.measure(sizes, HOT_SAMPLES[args.quick])
    if "durability" in parts:
        log("durability: ms per message counted with AOF, a replica and WAIT, beside none...")
        result["redis_production"] = redisprod.run(DURABILITY_BATCHES[args.quick])
    if "backfill" in parts:
        records = args.backfill_records
        log(f"backfill: {records:,} archive records, ours and the naive rebuild...")
        result["backfill"] = backfillbench.measure(
            records, links=max(1000, records // 5), per_object=5000,
            small_records=max(1000, records // 50))
    if "cluster" in parts:
        updates = CLUSTER_UPDATES[args.quick]
        log(f"cluster: {CLUSTER_PROCESSES} processes counting {updates:,} updates, then "
            f"{clusterbench.DAEMONS} daemons draining a queue, on one redis-server, then on a "
            "three-master Redis Cluster...")
        result["cluster"] = clusterbench.measure(CLUSTER_PROCESSES, updates)
    if "read" in parts:
        urls = READ_URLS[args.quick]
        log(f"read: one `links serve` process over {urls:,} counted URLs under wrk, then "
            "redis-benchmark's HGET...")
        try:
            result["read_api"] = readbench.measure(urls, READ_SECONDS[args.quick], workdir,
                                                   quick=args.quick)
        except readbench.ReadBenchError as exc:
            raise scenario.BenchError(f"read: {exc}") from exc
        log("\n".join(readbench.lines(result["read_api"])))
    if "publish" in parts:
        posts = PUBLISH_POSTS[args.quick]
        result["publish"] = []
        for latency in PUBLISH_LATENCIES[args.quick]:
            log(f"publish: {posts:,} posts through ours and the hand-written publisher, the "
                f"networks answering in +{latency:g} ms...")
            result["publish"].append(publishbench.measure(posts, latency, workdir))
            log("\n".join(publishbench.lines(result["publish"][-1])))
    if "tracing" in parts:
        log(f"tracing: ours drains {args.messages:,} post-sent events with the code before "
            f"tracing, then tracing off, then on at 100% sampling, "
            f"{tracingbench.ROUNDS[args.quick]} times each...")
        result["tracing"] = tracingbench.measure(args.messages, args.concurrency, args.backlog,
                                                 workdir, tracingbench.ROUNDS[args.quick])
        log("\n".join(tracingbench.lines(result["tracing"])))
    # Hosts start in seconds each: too long for the suite's quick run, unless asked for.
    if "fleet" in parts and (not args.quick or args.only):
        result["fleet"] = run_fleet(FLEET_MESSAGES[args.quick])
    if "soak" in parts:
        log(f"soak: {args.soak_messages:,} post-sent events through one daemon of ours on "
            "ministack, RSS sampled...")
        result["soak"] = run_soak(args, workdir)
        log(soak.line(result["soak"]) if "growth" in result["soak"]
            else f"soak: skipped: {result['soak']['skipped']}")
    # The console's SQS requests need seconds of streams each: its own tests hold 1 and 50
    # streams to the same count (tests/test_console_live.py), so --quick leaves it out.
    if "console" in parts and (not args.quick or args.only):
        streams = " and ".join(map(str, consolebench.STREAMS))
        log(f"console: SQS requests/s of one console with {streams} "
            "open streams, at a counting proxy...")
        result["console"] = consolebench.measure(workdir)
        log("\n".join(consolebench.lines(result["console"])))
    if len(parts) == len(PARTS):
        result["figures"] = report.figures(result["throughput"]["ours"],
                                           result["throughput"]["naive"], result["redis"],
                                           result["backfill"], result["cluster"])
        result["comparison"] = {
            "direct": report.comparison(result["throughput"]),
            "delayed": report.comparison(result["throughput_delayed"]),
            "standin": report.comparison(result["standin"].get("runs", {}))}
        result["goals"] = report.goals(result)
    runs = [*result["throughput"].values(), *result["throughput_delayed"].values(),
            *([result["soak"]["run"]] if "run" in result.get("soak", {}) else []),
            *result.get("standin", {}).get("runs", {}).values(),
            *(run for delay in result.get("standin", {}).get("delayed", {}).values()
              for run in delay["runs"].values())]
    if "read_latency" in result:
        runs.append(result["read_latency"]["while"])
    result["all_counted"] = (
        all(r["all_counted"] for r in runs)
        and result.get("read_api", {}).get("errors", 0) == 0
        and all(run["same_pairs"] for name, run in result.get("backfill", {}).items()
                if isinstance(run, dict))
        and all(run["each_once"] for part in result.get("publish", [])
                for run in part["runs"].values())
        and result.get("tracing", {}).get("all_counted", True)
        and all(run["exact"] for run in result.get("fleet", {}).get("runs", [])))
    result["seconds"] = time.monotonic() - started
    result["started_pids"] = list(procstat.STARTED)
    result["still_running"] = [pid for pid in procstat.STARTED if procstat.alive(pid)]
    return result


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _machine() -> dict[str, Any]:
    """The commit, the CPU and how busy the machine was when the run began."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        model = ""
    return {"commit": commit or None, "cpu_model": model or platform.machine(),
            "system": f"{platform.system()} {platform.release()}",
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def write_json(result: dict[str, Any], path: Path | None) -> Path:
    if path is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS_DIR / f"bench-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    return str(value)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _interrupt(signum: int, _frame: object) -> None:
    # SIGTERM (a test's timeout, a CI runner) unwinds like Ctrl-C: every finally stops what
    # it started. SIGINT too, even when the shell that started us in the background ignores it.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="workers-bench-"))
    try:
        result = run(args, workdir)
    except scenario.BenchError as exc:
        log(f"bench failed: {exc}")
        args.keep_logs = True
        return 1
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        return 130
    finally:
        if args.keep_logs:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if "figures" in result:
        print(report.table(result))
    else:
        print(json.dumps(result, indent=2, default=_jsonable))
    if result["still_running"]:
        log(f"warning: still running after the bench: {result['still_running']}")
    path = write_json(result, args.json_out)
    log(f"results written to {path} in {result['seconds']:.0f}s")
    return 0 if result["all_counted"] else 1


if __name__ == "__main__":
    sys.exit(main())
