"""The figures side by side: ours, the naive baseline, their ratio, and the goal; then every
consumer of the throughput runs beside ours, direct to moto, behind the delaying proxy and on
the fast SQS stand-in (ministack), with the stand-in's ceiling beside ours."""

from __future__ import annotations

import math
from typing import Any

import publishbench
import readbench
import redisprod
import soak

MB = 1024 * 1024
# The memory goal is stated at this many URLs: with a fixed number of buckets, a smaller
# count leaves about one counter per hash and says nothing about the goal.
GOAL_URLS = 1_000_000
GOAL_SPEEDUP, GOAL_REQUESTS, GOAL_BYTES = 10.0, 0.21, 40.0
# Who the throughput goals compare ours with: everything but moto's bare loop, which has no
# handler and is the ceiling, not a competitor.
CEILING = "bare"
NAMES = {"ours": "ours (workers run)", "batch": "boto3 batch loop", "naive": "boto3 naive loop",
         "celery": "Celery (SQS broker)", "celery-prefork": "Celery, prefork pool",
         "dramatiq": "Dramatiq (dramatiq_sqs)",
         "sqsworkers": "sqs-workers", "bare": "bare loop: moto's ceiling"}
GOAL_BACKFILL = 250_000  # records/s, in one process


def figure(ours: float, naive: float, unit: str, better: str, goal: str = "",
           met: bool | None = None) -> dict[str, Any]:
    """One row. ``better`` is "higher" or "lower"; the ratio is how many times ours is better
    (under 1 when it is worse); None when a figure is zero."""
    ratio = (ours / naive if better == "higher" else naive / ours) if ours and naive else None
    return {"ours": ours, "naive": naive, "unit": unit, "better": better,
            "ratio": ratio, "goal": goal, "met": met}


def figures(ours: dict[str, Any], naive: dict[str, Any], memory: dict[str, Any],
            backfill: dict[str, Any], cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    speed = figure(ours["msgs_per_s"], naive["msgs_per_s"], "msgs/s", "higher",
                   f"≥ {GOAL_SPEEDUP:g}× naive")
    speed["met"] = speed["ratio"] is not None and speed["ratio"] >= GOAL_SPEEDUP
    requests = ours["sqs_requests_per_msg"]
    counters = memory["counters"]
    per_url = counters["ours"]
    at_goal_size = counters["urls"] >= GOAL_URLS
    large, small = backfill["large_objects"], backfill["batch_objects"]
    rebuild = figure(large["ours"]["records_per_s"], large["naive"]["records_per_s"],
                     "records/s", "higher", f"≥ {GOAL_BACKFILL:,}")
    rebuild["met"] = rebuild["ours"] >= GOAL_BACKFILL
    return {
        "msgs_per_s": speed,
        "sqs_requests_per_msg": figure(requests, naive["sqs_requests_per_msg"], "requests/msg",
                                       "lower", f"≤ {GOAL_REQUESTS:g}",
                                       requests <= GOAL_REQUESTS),
        "cpu_s_per_1000_msgs": figure(ours["cpu_s_per_1000_msgs"],
                                      naive["cpu_s_per_1000_msgs"], "CPU s", "lower"),
        "peak_rss_mb": figure(ours["peak_rss_bytes"] / MB, naive["peak_rss_bytes"] / MB, "MiB",
                              "lower"),
        "redis_bytes_per_url": figure(per_url, counters["naive"], "bytes", "lower",
                                      f"≤ {GOAL_BYTES:g} at {GOAL_URLS:,} URLs",
                                      per_url <= GOAL_BYTES if at_goal_size else None),
        "redis_bytes_per_idempotency_key": figure(memory["idempotency"]["ours"],
                                                  memory["idempotency"]["naive"], "bytes",
                                                  "lower"),
        "backfill_records_per_s": rebuild,
        "backfill_records_per_s_batch_objects": figure(
            small["ours"]["records_per_s"], small["naive"]["records_per_s"], "records/s",
            "higher"),
        # Not ours against a baseline: the same counting on a cluster ("ours") and on one
        # redis-server ("naive" column).
        "cluster_pairs_per_s": figure(cluster["cluster"]["pairs_per_s"],
                                      cluster["single"]["pairs_per_s"], "pairs/s", "higher"),
        "cluster_daemon_msgs_per_s": figure(cluster["cluster"]["daemons"]["msgs_per_s"],
                                            cluster["single"]["daemons"]["msgs_per_s"],
                                            "msgs/s", "higher"),
    }


LABELS = {
    "msgs_per_s": "throughput (msgs/s)",
    "sqs_requests_per_msg": "SQS requests / msg",
    "cpu_s_per_1000_msgs": "consumer CPU s / 1000 msgs",
    "peak_rss_mb": "consumer peak RSS (MiB)",
    "redis_bytes_per_url": "Redis bytes / counted URL",
    "redis_bytes_per_idempotency_key": "Redis bytes / idempotency mark",
    "backfill_records_per_s": "backfill records/s (5,000 per object)",
    "backfill_records_per_s_batch_objects": "backfill records/s (20 per object)",
    "cluster_pairs_per_s": "counting pairs/s: cluster | single",
    "cluster_daemon_msgs_per_s": "daemons' msgs/s: cluster | single",
}


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def _ratio(name: str, ratio: float | None) -> str:
    if ratio is None:
        return "n/a"
    if ratio < 1:
        return f"{_num(1 / ratio)}× {'slower' if _is_speed(name) else 'worse'}"
    return f"{_num(ratio)}× {'faster' if _is_speed(name) else 'better'}"


def _is_speed(name: str) -> bool:
    return name.startswith(("msgs_per_s", "backfill", "cluster"))


def _verdict(row: dict[str, Any]) -> str:
    if not row["goal"]:
        return ""
    met = {True: "met", False: "MISSED", None: "not measured at that size"}[row["met"]]
    return f"{row['goal']}: {met}"


def _align(row: tuple[str, ...], widths: list[int]) -> str:
    """Label left, numbers right, the goal as it comes."""
    cells = [row[0].ljust(widths[0])]
    cells += [cell.rjust(w) for cell, w in zip(row[1:4], widths[1:4], strict=True)]
    return "  ".join([*cells, row[4]]).rstrip()


def table(result: dict[str, Any]) -> str:
    rows = [("figure", "ours", "naive", "ours vs naive", "goal")]
    for name, row in result["figures"].items():
        rows.append((LABELS[name], _num(row["ours"]), _num(row["naive"]),
                     _ratio(name, row["ratio"]), _verdict(row)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [_align(r, widths) for r in rows]
    lines.insert(1, "-" * max(map(len, lines)))
    read = readbench.lines(result["read_api"]) if "read_api" in result else []
    return "\n".join([*lines, *peer_lines(result), "", *read, "", *details(result)])


def comparison(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each consumer's four figures, and how many times ours is better at each (above 1:
    ours is faster, or spends less)."""
    ours = runs.get("ours")
    out = {}
    for kind, run in runs.items():
        row = {"msgs_per_s": run["msgs_per_s"],
               "sqs_requests_per_msg": run["sqs_requests_per_msg"],
               "cpu_s_per_1000_msgs": run["cpu_s_per_1000_msgs"],
               "peak_rss_mb": run["peak_rss_bytes"] / MB,
               "processes": run.get("processes"),
               "config": run.get("config", {})}
        if ours is not None:
            row["ours_times_better"] = {
                "msgs_per_s": _times(ours["msgs_per_s"], run["msgs_per_s"]),
                "sqs_requests_per_msg": _times(run["sqs_requests_per_msg"],
                                               ours["sqs_requests_per_msg"]),
                "cpu_s_per_1000_msgs": _times(run["cpu_s_per_1000_msgs"],
                                              ours["cpu_s_per_1000_msgs"]),
                "peak_rss_mb": _times(run["peak_rss_bytes"], ours["peak_rss_bytes"])}
        out[kind] = row
    return out


def _times(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if numerator and denominator else None


def goals(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's goal rows, each with what was measured and whether it was met."""
    out = {}
    for name, runs in (("direct", result["throughput"]),
                       ("delayed", result["throughput_delayed"])):
        ours = runs["ours"]
        rivals = {k: r for k, r in runs.items() if k not in ("ours", CEILING)}
        fastest = max(rivals, key=lambda k: rivals[k]["msgs_per_s"])
        leanest = min(rivals, key=lambda k: rivals[k]["cpu_s_per_1000_msgs"])
        out[f"{name}_fastest"] = {
            "goal": "ours ahead of every peer in msgs/s", "best_peer": fastest,
            "ours_times": _times(ours["msgs_per_s"], rivals[fastest]["msgs_per_s"]),
            "met": ours["msgs_per_s"] > rivals[fastest]["msgs_per_s"]}
        out[f"{name}_least_cpu"] = {
            "goal": "less CPU per message than any peer", "best_peer": leanest,
            "ours_times": _times(rivals[leanest]["cpu_s_per_1000_msgs"],
                                 ours["cpu_s_per_1000_msgs"]),
            "met": ours["cpu_s_per_1000_msgs"] < rivals[leanest]["cpu_s_per_1000_msgs"]}
        out[f"{name}_requests"] = {
            "goal": f"≤ {GOAL_REQUESTS:g} SQS requests/msg",
            "ours": ours["sqs_requests_per_msg"],
            "met": ours["sqs_requests_per_msg"] <= GOAL_REQUESTS}
        if CEILING in runs:
            out[f"{name}_ceiling"] = {
                "goal": "ours at the emulator's ceiling (bare loop, no handler)",
                "ours_share": _times(ours["msgs_per_s"], runs[CEILING]["msgs_per_s"]),
                "met": None}  # a share to read, not a pass/fail
    return out


def standin_ceiling(result: dict[str, Any]) -> dict[str, Any]:
    """The bare loop's msgs/s on the stand-in beside ours there, and the same on moto: how
    close ours comes to the SQS in front of it, once that SQS is not moto."""
    runs, moto = result["standin"].get("runs", {}), result["throughput"]
    out: dict[str, Any] = {}
    for where, group in (("standin", runs), ("moto", moto)):
        bare, ours = group.get(CEILING), group.get("ours")
        out[where] = {"bare_msgs_per_s": bare["msgs_per_s"] if bare else None,
                      "ours_msgs_per_s": ours["msgs_per_s"] if ours else None,
                      "ours_share": _times(ours["msgs_per_s"], bare["msgs_per_s"])
                      if ours and bare else None}
    out["standin_over_moto_ceiling"] = _times(out["standin"]["bare_msgs_per_s"] or 0,
                                              out["moto"]["bare_msgs_per_s"] or 0)
    return out


def ceiling_line(standin: dict[str, Any]) -> str:
    if "skipped" in standin:
        return f"on the SQS stand-in: skipped: {standin['skipped']}"
    c = standin["ceiling"]
    text = (f"on the SQS stand-in ({standin['server']}): bare loop "
            f"{_num(c['standin']['bare_msgs_per_s'])} msgs/s, ours "
            f"{_num(c['standin']['ours_msgs_per_s'])} msgs/s")
    if c["standin"]["ours_share"]:
        text += f": ours at {c['standin']['ours_share']:.0%} of its ceiling"
    if c["moto"]["ours_share"]:
        text += f" (on moto {c['moto']['ours_share']:.0%} of {_num(c['moto']['bare_msgs_per_s'])})"
    return text


def comparison_table(result: dict[str, Any], name: str, title: str,
                     ceiling: str = "moto's") -> list[str]:
    names = {**NAMES, CEILING: f"bare loop: {ceiling} ceiling"}
    rows = [(title, "procs", "msgs/s", "ours ×", "req/msg", "CPU s/1k", "ours ×", "RSS MiB",
             "ours ×")]
    for kind, row in result["comparison"][name].items():
        better = row.get("ours_times_better", {})
        rows.append((names.get(kind, kind), str(row["processes"]), _num(row["msgs_per_s"]),
                     _x(better.get("msgs_per_s"), kind),
                     f"{row['sqs_requests_per_msg']:.3f}", _num(row["cpu_s_per_1000_msgs"]),
                     _x(better.get("cpu_s_per_1000_msgs"), kind), _num(row["peak_rss_mb"]),
                     _x(better.get("peak_rss_mb"), kind)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join([r[0].ljust(widths[0]),
                        *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))])
             for r in rows]
    lines.insert(1, "-" * max(map(len, lines)))
    return lines


def _x(value: float | None, kind: str) -> str:
    return "" if kind == "ours" or value is None else f"{value:.2f}"


def goal_lines(result: dict[str, Any]) -> list[str]:
    out = []
    for key, goal in result["goals"].items():
        where = "direct to moto" if key.startswith("direct") else "behind the delaying proxy"
        if "ours_share" in goal:
            share = goal["ours_share"]
            text = f"{goal['goal']}: ours at {share:.0%} of it" if share else goal["goal"]
        elif "best_peer" in goal:
            verdict = "met" if goal["met"] else "MISSED"
            text = (f"{goal['goal']}: {verdict} (best peer {goal['best_peer']}, ours "
                    f"{_num(goal['ours_times'])}×)")
        else:
            text = (f"{goal['goal']}: {'met' if goal['met'] else 'MISSED'} "
                    f"(ours {goal['ours']:.4f})")
        out.append(f"  {where}: {text}")
    return out


def peer_lines(result: dict[str, Any]) -> list[str]:
    params = result["params"]
    out = ["", *comparison_table(result, "direct",
                                 f"direct to moto, {params['messages']:,} msgs each"),
           "", *comparison_table(result, "delayed",
                                 f"+{params['delay_ms']:g} ms a call, "
                                 f"{params['delay_messages']:,} msgs each")]
    standin = result.get("standin", {})
    if result["comparison"].get("standin"):
        out += ["", *comparison_table(result, "standin",
                                      f"on ministack, {params['messages']:,} msgs each",
                                      "ministack's")]
    if standin:
        out.append(ceiling_line(standin))
    for delay, behind in standin.get("delayed", {}).items():
        out.append(f"on ministack behind +{delay}: " + ", ".join(
            f"{k} {r['msgs_per_s']:.0f} msgs/s" for k, r in behind["runs"].items()) + "; " +
            ", ".join(f"{k.replace('_', ' ')} {v:.2f}x" for k, v in behind["ratios"].items()))
    if "growth" in result.get("soak", {}):
        out.append(soak.line(result["soak"]))
    out += ["", "goals:", *goal_lines(result)]
    reads = result.get("read_latency")
    if reads:
        out.append(f"link-count reads from a second process while ours drains: "
                   f"p50 {reads['p50_ms']:.2f} ms, p99 {reads['p99_ms']:.2f} ms "
                   f"({reads['reads']:,} reads of {reads['keys_per_read']} links; ours "
                   f"{reads['while']['msgs_per_s']:.0f} msgs/s meanwhile)")
    out.append("ours × = how many times ours is better (faster, or less spent); "
               "CPU and RSS are the consumer's whole process tree.")
    out.append("every run: 1 consumer process (plus Dramatiq's supervising parent), but "
               "Celery's prefork pool: a parent and a child per core;")
    out.append("settings in the JSON under throughput.*.config.")
    if "peer_versions" in params:
        out.append("peers: " + ", ".join(f"{k} {v}" for k, v in
                                         sorted(params["peer_versions"].items())))
    return out


def details(result: dict[str, Any]) -> list[str]:
    out = []
    for kind in ("ours", "naive"):
        run = result["throughput"][kind]
        actions = ", ".join(f"{a} {n}" for a, n in sorted(run["sqs_requests_by_action"].items()))
        stack = ", ".join(f"{name} {cpu:.2f}" for name, cpu in
                          run["stack_cpu_s_per_1000_msgs"].items())
        out.append(f"{kind:5}: {run['messages']} msgs in {run['measured_seconds']:.1f}s, "
                   f"{run['msgs_per_receive']:.2f} msgs/receive, {run['empty_receives']} empty "
                   f"receives, all counted: {run['all_counted']}")
        out.append(f"       requests: {actions}")
        out.append(f"       CPU s/1000 msgs elsewhere: {stack}")
    c, i = result["redis"]["counters"], result["redis"]["idempotency"]
    out.append(f"redis: {c['urls']:,} URLs (mean key {c['mean_url_length']:.0f} chars) in "
               f"{c['hashes']:,} hashes ({c['urls_per_hash']:.1f} per hash, "
               f"{c['hash_encoding']}); {i['pairs']:,} (update, url) pairs in one 4-day window, "
               f"{i['pairs_per_hash']:.1f} per window")
    h = result["hot_url"]
    costs = ", ".join(f"{r['usec_per_new_count']:.1f} µs after {r['shares']:,}" for r in h["runs"])
    out.append(f"hot link: Redis time per count of one link, {costs} prior shares: "
               f"{h['ratio_last_to_first']:.2f}× ({h['goal']}: "
               f"{'met' if h['met'] else 'MISSED'})")
    out.append("Redis in production, ms per message counted (10 a batch, 2 links each), "
               "beside none:")
    out += ["  " + line for line in redisprod.lines(result["redis_production"])]
    b = result["backfill"]
    ours_runs = b["large_objects"]["ours"]["runs_records_per_s"]
    out.append(f"backfill: {b['records']:,} records naming {b['links']:,} links, 2% archived "
               "twice; naive = JSON per line, the live path's Lua per record; ours = the median "
               f"of {len(ours_runs)} runs ({min(ours_runs):,.0f} to {max(ours_runs):,.0f});")
    out.append(f"          {b['batch_objects']['records']:,} records in objects of a daemon "
               "batch's size: a GET per 20 records bounds both.")
    for part in result.get("publish", []):
        out += publishbench.lines(part)
    c = result["cluster"]
    out.append(f"cluster: {c['single']['processes']} processes counting through LinkCounter."
               f"record, then {c['single']['daemons']['daemons']} post-sent daemons draining "
               f"{c['single']['daemons']['messages']:,} events from moto, {c['masters']} "
               f"masters vs one redis-server, all on {result['params']['cpus']} cores")
    params = result["params"]
    out.append(f"ours = `workers run post-sent --concurrency {params['concurrency']}`; "
               "naive = receive 1, handle, delete 1, in one thread.")
    out.append(f"Both go through the counting proxy and are fed {params['backlog']} messages "
               "beyond what they hold. moto spends milliseconds")
    out.append("of CPU per call, more per message as the queue grows: on this machine moto, "
               "not SQS, bounds both throughputs.")
    return out
