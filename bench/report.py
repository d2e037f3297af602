"""The figures side by side: ours, the naive baseline, their ratio, and the goal."""

from __future__ import annotations

import math
from typing import Any

MB = 1024 * 1024
# The memory goal is stated at this many URLs: with a fixed number of buckets, a smaller
# count leaves about one counter per hash and says nothing about the goal.
GOAL_URLS = 1_000_000
GOAL_SPEEDUP, GOAL_REQUESTS, GOAL_BYTES = 10.0, 0.25, 40.0
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
    return "\n".join([*lines, "", *details(result)])


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
               f"{i['pairs_per_hash']:.1f} per mark hash")
    b = result["backfill"]
    out.append(f"backfill: {b['records']:,} records naming {b['links']:,} links, 2% archived "
               "twice; naive = JSON per line, the live path's Lua per record;")
    out.append(f"          {b['batch_objects']['records']:,} records in objects of a daemon "
               "batch's size: a GET per 20 records bounds both.")
    c = result["cluster"]
    out.append(f"cluster: {c['single']['processes']} processes counting through LinkCounter."
               f"record, {c['masters']} masters vs one redis-server, all on "
               f"{result['params']['cpus']} cores")
    params = result["params"]
    out.append(f"ours = `workers run post-sent --concurrency {params['concurrency']}`; "
               "naive = receive 1, handle, delete 1, in one thread.")
    out.append(f"Both go through the counting proxy and are fed {params['backlog']} messages "
               "beyond what they hold. moto spends milliseconds")
    out.append("of CPU per call, more per message as the queue grows: on this machine moto, "
               "not SQS, bounds both throughputs.")
    return out
