"""``.. bench:: PART``: a table of one part of a ``bench/bench.py`` run, read from its JSON.

The docs never carry a benchmark figure typed by hand: each table is rendered at build time
from ``bench/results/quick.json`` (or the file given with ``:file:``, relative to the
repository), so a new run is a new JSON file and nothing else. A part the run did not measure
says so, with the command that measures it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = "bench/results/quick.json"
MIB = 1024 * 1024
# A consumer's name in the tables (bench/consumers.py's kinds).
CONSUMERS = {"ours": "ours (workers run)", "batch": "boto3 batch loop",
             "naive": "boto3 naive loop", "celery": "Celery (threads)",
             "celery-prefork": "Celery (prefork)", "dramatiq": "Dramatiq",
             "sqsworkers": "sqs-workers", "bare": "bare loop (no handler): the ceiling"}
# The figures of ours beside the naive loop, in this order (bench/report.py's figures()).
FIGURES = {
    "msgs_per_s": "throughput, msgs/s",
    "sqs_requests_per_msg": "SQS requests a message",
    "cpu_s_per_1000_msgs": "consumer CPU s / 1,000 msgs",
    "peak_rss_mb": "consumer peak RSS, MiB",
    "redis_bytes_per_url": "Redis bytes a counted URL",
    "redis_bytes_per_idempotency_key": "Redis bytes an idempotency mark",
    "backfill_records_per_s": "backfill records/s (5,000 an object)",
    "backfill_records_per_s_batch_objects": "backfill records/s (20 an object)",
    "cluster_pairs_per_s": "counting pairs/s: cluster | one redis-server",
    "cluster_daemon_msgs_per_s": "daemons' msgs/s: cluster | one redis-server",
}
# Worked examples of the Redis sizing: (distinct URLs, posts a day, links a post).
SIZING = ((1_000_000, 100_000, 2), (10_000_000, 100_000, 2), (10_000_000, 1_000_000, 2))
MARK_DAYS = 35  # a mark lives until its 4-day window expires, 32 to 36 days after it was made


def num(value: Any, digits: int = 3) -> str:
    """A figure as a reader wants it: thousands separated, a few significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def met(flag: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "n/a"}[flag]


def size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


class Table:
    """Rows of text cells under a header, as a docutils table node."""

    def __init__(self, *header: str) -> None:
        self.header, self.rows = list(header), []

    def row(self, *cells: Any) -> None:
        self.rows.append([c if isinstance(c, str) else num(c) for c in cells])

    def node(self) -> nodes.table:
        table, group = nodes.table(), nodes.tgroup(cols=len(self.header))
        table += group
        # Character widths: the text builder wraps cells to them, HTML takes their proportions.
        for i, title in enumerate(self.header):
            longest = max([len(title), *(len(cells[i]) for cells in self.rows)])
            group += nodes.colspec(colwidth=min(max(longest, 4), 40))
        head, body = nodes.thead(), nodes.tbody()
        head += self._row(self.header)
        for cells in self.rows:
            body += self._row(cells)
        group += head
        group += body
        return table

    @staticmethod
    def _row(cells: Iterable[str]) -> nodes.row:
        row = nodes.row()
        for text in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=text)
            row += entry
        return row


def part_run(result: dict[str, Any], path: str) -> list[nodes.Node]:
    params, machine = result["params"], result.get("machine", {})
    table = Table("of the run", "")
    table.row("file", path)
    table.row("started", result["timestamp"])
    table.row("command", "bench/bench.py" + (" --quick" if params["quick"] else ""))
    table.row("commit", machine.get("commit") or "not recorded")
    table.row("machine", f"{params['cpus']} CPUs, {machine.get('cpu_model', 'not recorded')}, "
              f"{machine.get('system', '')}")
    load = machine.get("load_average")
    table.row("load average at start", ", ".join(map(str, load)) if load else "not recorded")
    table.row("Python", params["python"])
    table.row("messages each (direct, delayed)",
              f"{params['messages']:,}, {params['delay_messages']:,}")
    table.row("every message counted, every count exact", num(result["all_counted"]))
    table.row("run took", f"{result['seconds']:.0f} s")
    return [table.node()]


def part_goals(result: dict[str, Any], path: str) -> list[nodes.Node]:
    table = Table("figure", "ours", "naive loop", "ours better by (under 1: worse)", "goal")
    figures = result["figures"]
    for name in sorted(figures, key=lambda n: list(FIGURES).index(n) if n in FIGURES else 99):
        row, ratio = figures[name], figures[name]["ratio"]
        verdict = met(row["met"]) if row["met"] is not None else "not measured at that size"
        table.row(FIGURES.get(name, name), row["ours"], row["naive"],
                  "n/a" if ratio is None else f"{num(ratio)}×",
                  f"{row['goal']}: {verdict}" if row["goal"] else "")
    return [table.node()]


def consumers_table(runs: dict[str, Any]) -> list[nodes.Node]:
    ours = runs.get("ours")
    table = Table("consumer", "msgs/s", "SQS requests/msg", "CPU s/1,000 msgs", "peak RSS MiB",
                  "ours' msgs/s ×")
    for kind in sorted(runs, key=lambda k: list(CONSUMERS).index(k) if k in CONSUMERS else 99):
        run = runs[kind]
        times = (ours["msgs_per_s"] / run["msgs_per_s"]
                 if ours and kind != "ours" and run["msgs_per_s"] else None)
        table.row(CONSUMERS.get(kind, kind), run["msgs_per_s"], run["sqs_requests_per_msg"],
                  run["cpu_s_per_1000_msgs"], run["peak_rss_bytes"] / MIB,
                  "" if times is None else f"{times:.2f}")
    return [table.node()]


def part_consumers(result: dict[str, Any], path: str) -> list[nodes.Node]:
    return consumers_table(result["throughput"])


def part_consumers_delayed(result: dict[str, Any], path: str) -> list[nodes.Node]:
    return consumers_table(result["throughput_delayed"])


def part_standin(result: dict[str, Any], path: str) -> list[nodes.Node]:
    standin = result["standin"]
    if "skipped" in standin:
        return [nodes.paragraph(text=f"Not run: {standin['skipped']}")]
    out = [nodes.paragraph(text=f"On {standin['server']}:"), *consumers_table(standin["runs"])]
    for delay, behind in standin.get("delayed", {}).items():
        out += [nodes.paragraph(text=f"On {standin['server']}, +{delay} a call:"),
                *consumers_table(behind["runs"])]
    return out


def part_reads(result: dict[str, Any], path: str) -> list[nodes.Node]:
    reads = result["read_latency"]
    table = Table("reads", "links a read", "p50 ms", "p99 ms", "ours' msgs/s meanwhile")
    table.row(reads["reads"], reads["keys_per_read"], reads["p50_ms"], reads["p99_ms"],
              reads["while"]["msgs_per_s"])
    return [table.node()]


def part_durability(result: dict[str, Any], path: str) -> list[nodes.Node]:
    table = Table("setup", "ms a message", "beside no persistence")
    setups = result["redis_production"]
    for name, row in sorted(setups.items(), key=lambda item: item[1]["ms_per_message"]):
        table.row(name, f"{row['ms_per_message']:.3f}", f"{row['extra_ms']:+.3f}")
    return [table.node()]


def part_memory(result: dict[str, Any], path: str) -> list[nodes.Node]:
    memory = result["redis"]
    counters, marks = memory["counters"], memory["idempotency"]
    table = Table("measured", "ours", "naive", "at")
    table.row("bytes a counted URL", counters["ours"], counters["naive"],
              f"{counters['urls']:,} URLs, {counters['urls_per_hash']:.1f} a hash "
              f"({counters['hash_encoding']})")
    table.row("bytes an idempotency mark", marks["ours"], marks["naive"],
              f"{marks['pairs']:,} pairs in one window")
    sizing = Table("distinct URLs", "posts a day", "links a post", "counters", "marks", "total")
    for urls, posts, links in SIZING:
        counted = urls * counters["ours"]
        marked = posts * links * MARK_DAYS * marks["ours"]
        sizing.row(f"{urls:,}", f"{posts:,}", str(links), size(counted), size(marked),
                   size(counted + marked))
    return [table.node(),
            nodes.paragraph(text=f"Redis {memory['redis_version']}; the same bytes, "
                                 "applied to a few fleets:"),
            sizing.node()]


def part_hot(result: dict[str, Any], path: str) -> list[nodes.Node]:
    hot = result["hot_url"]
    table = Table("prior shares of the link", "µs of Redis a new count", "µs a redelivery",
                  "window")
    for run in hot["runs"]:
        table.row(f"{run['shares']:,}", run["usec_per_new_count"], run["usec_per_redelivery"],
                  f"{run['window_type']}, {run['window_bytes']:,} bytes")
    verdict = f"{hot['goal']}: {met(hot['met'])} ({hot['ratio_last_to_first']:.2f}×)"
    return [table.node(), nodes.paragraph(text=verdict)]


def part_backfill(result: dict[str, Any], path: str) -> list[nodes.Node]:
    backfill = result["backfill"]
    table = Table("archive", "ours: records/s", "ours' runs", "naive: records/s",
                  "same counts")
    for name in ("large_objects", "batch_objects"):
        run = backfill[name]
        table.row(f"{run['records']:,} records, {run['records_per_object']:,} an object",
                  run["ours"]["records_per_s"],
                  ", ".join(num(r) for r in run["ours"]["runs_records_per_s"]),
                  run["naive"]["records_per_s"], num(run["same_pairs"]))
    return [table.node()]


def part_cluster(result: dict[str, Any], path: str) -> list[nodes.Node]:
    cluster = result["cluster"]
    table = Table("Redis", "counting processes: pairs/s", "daemons draining: msgs/s",
                  "counts wrong")
    for name, label in (("single", "one redis-server"),
                        ("cluster", f"Cluster of {cluster['masters']} masters")):
        run = cluster[name]
        table.row(label, run["pairs_per_s"], run["daemons"]["msgs_per_s"],
                  str(run["daemons"]["wrong_counts"]))
    single = cluster["single"]
    note = (f"{single['processes']} processes counting {single['updates']:,} updates; "
            f"{single['daemons']['daemons']} daemons draining "
            f"{single['daemons']['messages']:,} events from moto.")
    return [table.node(), nodes.paragraph(text=note)]


def part_read(result: dict[str, Any], path: str) -> list[nodes.Node]:
    read = result["read_api"]
    table = Table("server (one process)", "requests/s flat out", "µs CPU a request",
                  "p99 ms paced (rate)", *read["hostile"].keys())
    for name, run in read["servers"].items():
        if "skipped" in run:
            table.row(name, f"skipped: {run['skipped']}", "", "", *["" for _ in read["hostile"]])
            continue
        sieges = [f"+{h['growth_mib']:.0f} MiB ({h['other_worst_s']:.2f} s"
                  + (f", {h['other_unanswered']} unanswered)" if h["other_unanswered"] else ")")
                  for h in run["hostile"].values()]
        table.row(name, run["throughput"]["requests_per_s"],
                  run["throughput"]["server_cpu_us_per_request"],
                  f"{run['paced']['p99_ms']:.3f} ({num(run['paced']['requests_per_s'])}/s)",
                  *sieges)
    goals = Table("goal", "verdict")
    for goal in read["goals"].values():
        goals.row(goal["goal"], met(goal["met"]))
    ref = read["redis_benchmark"]
    note = (f"{read['urls']:,} counted URLs; redis-benchmark, the same HGET with "
            f"{ref['clients']} clients: {num(ref['requests_per_s'])} requests/s; non-200 "
            f"answers: {read['errors']}.")
    return [table.node(), nodes.paragraph(text=note), goals.node()]


def part_publish(result: dict[str, Any], path: str) -> list[nodes.Node]:
    table = Table("networks", "publisher", "posts/s", "CPU ms a post", "Redis round trips a post",
                  "Redis commands a post", "each posted once")
    for part in result["publish"]:
        for name, label in (("ours", "ours (exactly once)"), ("naive", "hand-written")):
            run = part["runs"][name]
            table.row(f"+{part['latency_ms']:g} ms", label, run["posts_per_second"],
                      run["cpu_ms_per_post"], run["redis_round_trips_per_post"],
                      run["redis_commands_per_post"], num(run["each_once"]))
    posts = ", ".join(f"{p['posts']:,}" for p in result["publish"])
    return [table.node(), nodes.paragraph(text=f"Posts each publisher drained: {posts}.")]


def part_tracing(result: dict[str, Any], path: str) -> list[nodes.Node]:
    tracing = result["tracing"]
    cpu = tracing["cpu_s_per_1000_msgs"]
    table = Table("tracing", "CPU s/1,000 msgs (mean)", "each round's", "msgs/s, each round")
    table.row("off", tracing["off"], ", ".join(num(c) for c in cpu["off"]),
              ", ".join(num(r) for r in tracing["msgs_per_s"]["off"]))
    table.row("on, every message sampled", tracing["on"], ", ".join(num(c) for c in cpu["on"]),
              ", ".join(num(r) for r in tracing["msgs_per_s"]["on"]))
    verdict = (f"on / off: {tracing['ratio']:.2f}× (goal at most {tracing['goal_ratio']}×: "
               f"{met(tracing['within_goal'])}); {tracing['spans_exported']:,} spans exported "
               f"for {tracing['messages']:,} messages a round.")
    return [table.node(), nodes.paragraph(text=verdict)]


def part_soak(result: dict[str, Any], path: str) -> list[nodes.Node]:
    soak = result["soak"]
    if "skipped" in soak:
        return [nodes.paragraph(text=f"Not run: {soak['skipped']}")]
    growth = soak["growth"]
    table = Table("messages", "msgs/s", "RSS after warm-up MiB", "RSS at the end MiB",
                  "growth MiB (peak)", "goal")
    table.row(soak["messages"], soak["run"]["msgs_per_s"], growth["rss_after_warm_up_mib"],
              growth["rss_at_end_mib"],
              f"{growth['growth_after_warm_up_mib']} ({growth['peak_growth_after_warm_up_mib']})",
              f"< {growth['goal_mib']:g} MiB: {met(growth['met'])}")
    return [table.node()]


def part_fleet(result: dict[str, Any], path: str) -> list[nodes.Node]:
    fleet = result["fleet"]
    if not fleet.get("runs"):
        return [nodes.paragraph(text=f"Not run: {fleet.get('skipped', 'no runs')}")]
    one = fleet["runs"][0]
    table = Table("hosts", "msgs/s", "× one host", "CPU s, hosts", "CPU s, ministack + redis",
                  "counts")
    for run in fleet["runs"]:
        table.row(str(run["hosts"]), run["msgs_per_s"], run["msgs_per_s"] / one["msgs_per_s"],
                  run["host_cpu_s"], run["service_cpu_s"],
                  "exact" if run["exact"] else "WRONG")
    return [table.node()]


def part_console(result: dict[str, Any], path: str) -> list[nodes.Node]:
    table = Table("open streams", "GetQueueAttributes", "snapshots", "requests/s")
    for run in result["console"]["runs"]:
        table.row(str(run["streams"]), run["requests"], run["snapshots"], run["requests_per_s"])
    return [table.node()]


# Each part: its renderer, the key of the JSON it needs, and the run that measures it.
PARTS: dict[str, tuple[Callable[[dict[str, Any], str], list[nodes.Node]], str, str]] = {
    "run": (part_run, "params", "bench/bench.py"),
    "goals": (part_goals, "figures", "a whole bench/bench.py run"),
    "consumers": (part_consumers, "throughput", "bench/bench.py"),
    "consumers-delayed": (part_consumers_delayed, "throughput_delayed", "--only delayed"),
    "standin": (part_standin, "standin", "--only standin"),
    "reads": (part_reads, "read_latency", "--only reads"),
    "durability": (part_durability, "redis_production", "--only durability"),
    "memory": (part_memory, "redis", "--only redis"),
    "hot": (part_hot, "hot_url", "--only hot"),
    "backfill": (part_backfill, "backfill", "--only backfill"),
    "cluster": (part_cluster, "cluster", "--only cluster"),
    "read": (part_read, "read_api", "--only read"),
    "publish": (part_publish, "publish", "--only publish"),
    "tracing": (part_tracing, "tracing", "--only tracing"),
    "soak": (part_soak, "soak", "--only soak"),
    "fleet": (part_fleet, "fleet", "--only fleet (as root)"),
    "console": (part_console, "console", "--only console"),
}


def provenance(result: dict[str, Any], path: str) -> str:
    params, machine = result["params"], result.get("machine", {})
    load = machine.get("load_average")
    return (f"From {path}: bench/bench.py{' --quick' if params['quick'] else ''} started "
            f"{result['timestamp']}, commit {machine.get('commit') or 'not recorded'}, "
            f"{params['cpus']} CPUs ({machine.get('cpu_model', 'not recorded')}), load average "
            f"{', '.join(map(str, load)) if load else 'not recorded'} at start.")


class BenchDirective(SphinxDirective):
    required_arguments = 1
    option_spec = {"file": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in PARTS:
            raise self.error(f"unknown bench part {name!r}; one of {', '.join(PARTS)}")
        render, key, command = PARTS[name]
        path = self.options.get("file", DEFAULT_RESULTS)
        source = REPO / path
        self.env.note_dependency(str(source))  # a new run rebuilds the page (a missing one too)
        if not source.exists():
            raise self.error(f"{path} is missing: run bench/bench.py --json-out {path}")
        result = json.loads(source.read_text())
        if not result.get(key):
            return [nodes.paragraph(text=f"Not measured in {path}: bench/bench.py {command} "
                                         "measures it.")]
        rendered = render(result, path)
        if path != DEFAULT_RESULTS:  # not the page's run: say which one
            rendered.insert(0, nodes.paragraph(text=provenance(result, path)))
        return rendered


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("bench", BenchDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
