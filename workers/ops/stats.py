"""``workers stats``: each queue's depth, its DLQ's, the age of its oldest message, and how many
processes would drain its backlog within a target time.

The age of the oldest message: SQS has no attribute for it on standard queues; CloudWatch's
``ApproximateAgeOfOldestMessage`` has it (a minute's resolution, a few minutes late), and is
what is shown, or ``-`` where CloudWatch has no datapoint (moto, an idle queue, no permission).
Peeking a message for its ``SentTimestamp`` was rejected: a receive counts towards the redrive's
``maxReceiveCount`` (``stats --watch`` would push healthy messages to the DLQ), hides the message
from the daemons meanwhile, and a standard queue does not return its oldest message first.

The advice: ``processes = ceil(backlog / (rate × target))``, at least 1, where backlog is every
message in the queue (visible, in flight, delayed) and rate the messages one process handles per
second. The rate is measured where it can be: with ``WORKERS_METRICS_PORT`` set, each sample
also reads every local daemon's ``/metrics`` (handled = succeeded + failed), and the rate is the
handled count's growth between two samples over the time between them, per daemon. A one-shot
``stats`` takes its two samples ``METRICS_SAMPLE_SECONDS`` apart when daemons answer. Where
nothing was handled in between (or no daemon answers), ``--rate`` stands in, and the table
marks it. The drain rate is the backlog's change between two samples (handled minus arrived);
the ETA is the backlog over it.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Sequence

from prometheus_client.parser import text_string_to_metric_families

from workers import QUEUES
from workers.ops.tables import format_age, format_table
from workers.peers.aws import AWS_ERRORS, client
from workers.peers.sqs import Depth, find_url, queue_depth
from workers.runtime import health
from workers.settings import Settings

# CloudWatch's SQS metrics have a minute's resolution and arrive a few minutes late: look back
# far enough to find the latest, and ask no more often than they change.
AGE_LOOKBACK = timedelta(minutes=15)
AGE_REFRESH_SECONDS = 60
# A one-shot `stats` reads the daemons' counters twice this far apart to measure their rate.
METRICS_SAMPLE_SECONDS = 2.0
# A local daemon answers at once; a port that does not is not one of ours.
SCRAPE_TIMEOUT_SECONDS = 0.5
# What a daemon has handled: each message ends as one of these (or is given back unstarted).
HANDLED_FAMILIES = ("workers_messages_succeeded", "workers_messages_failed")


def processes_needed(backlog: int, target_seconds: float, per_process_rate: float) -> int:
    """Processes that drain ``backlog`` messages within ``target_seconds`` at
    ``per_process_rate`` messages/s each; at least one, so new messages are picked up."""
    if target_seconds <= 0 or per_process_rate <= 0:
        raise ValueError("target and rate must be positive")
    return max(1, math.ceil(backlog / (per_process_rate * target_seconds)))


def drain_rate(before: int, after: int, seconds: float) -> float | None:
    """Messages/s the backlog shrank by between two samples (handled minus arrived); negative
    when it grows."""
    return (before - after) / seconds if seconds > 0 else None


def eta_seconds(backlog: int, rate: float | None) -> float | None:
    """Seconds until the backlog is gone at ``rate``; None when it does not shrink."""
    if backlog == 0:
        return 0.0
    return backlog / rate if rate and rate > 0 else None


@dataclass(frozen=True)
class QueueSample:
    queue: str
    name: str
    depth: Depth | None  # None: the queue does not exist
    dlq: Depth | None
    oldest_seconds: float | None
    daemons: dict[int, float] = field(default_factory=dict)  # metrics port -> handled so far

    @property
    def backlog(self) -> int:
        return self.depth.total if self.depth else 0


@dataclass(frozen=True)
class Sample:
    at: float  # wall clock, for people
    monotonic: float  # for rates
    queues: list[QueueSample]


class Sampler:
    """Reads every queue's depth (one GetQueueAttributes per queue and DLQ) and, at most once
    a minute, the oldest message's age from CloudWatch (one GetMetricData for all)."""

    def __init__(self, settings: Settings, sqs: Any = None, cloudwatch: Any = None):
        self.settings = settings
        self.sqs = sqs or client(settings)
        self.cloudwatch = cloudwatch or client(settings, "cloudwatch", attempts=1)
        self._ages: dict[str, float] = {}
        self._ages_at = -math.inf
        self._urls: dict[str, str] = {}

    def sample(self) -> Sample:
        names = [self.settings.queue_name(q) for q in QUEUES]
        now = time.monotonic()
        if now - self._ages_at >= AGE_REFRESH_SECONDS:
            self._ages, self._ages_at = oldest_ages(self.cloudwatch, names), now
        queues = [QueueSample(q, name, self._depth(name), self._depth(self.settings.dlq_name(q)),
                              self._ages.get(name), self._daemons(q))
                  for q, name in zip(QUEUES, names, strict=True)]
        return Sample(time.time(), time.monotonic(), queues)

    def _daemons(self, queue: str) -> dict[int, float]:
        """Handled counts of the queue's daemons on this host, by metrics port."""
        if not self.settings.metrics_port:
            return {}
        found = {}
        for num in range(health.PORTS_PER_QUEUE):
            port = health.port_for(self.settings.metrics_port, queue, num)
            handled = scrape_handled(port, queue, scrape_host(self.settings.metrics_host))
            if handled is not None:
                found[port] = handled
        return found

    def _depth(self, name: str) -> Depth | None:
        url = self._urls.get(name) or find_url(self.sqs, name)
        if url is None:
            return None
        self._urls[name] = url
        return queue_depth(self.sqs, url)


def oldest_ages(cloudwatch: Any, names: Sequence[str]) -> dict[str, float]:
    """CloudWatch's latest ApproximateAgeOfOldestMessage by queue name; {} when unavailable."""
    # EndTime is exclusive (and truncated to the second): a minute ahead includes the latest.
    end = datetime.now(timezone.utc) + timedelta(minutes=1)
    queries = [{"Id": f"q{i}", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage",
                   "Dimensions": [{"Name": "QueueName", "Value": name}]},
        "Period": 60, "Stat": "Maximum"}} for i, name in enumerate(names)]
    try:
        response = cloudwatch.get_metric_data(MetricDataQueries=queries, EndTime=end,
                                              StartTime=end - AGE_LOOKBACK)
    except AWS_ERRORS:  # no CloudWatch here, or no permission: the age is unknown, not an error
        return {}
    ages = {}
    for result in response.get("MetricDataResults", []):
        pairs = sorted(zip(result.get("Timestamps", []), result.get("Values", []), strict=True),
                       reverse=True)
        if pairs:
            ages[names[int(result["Id"][1:])]] = float(pairs[0][1])
    return ages


def scrape_host(metrics_host: str) -> str:
    """Where this host's daemons answer: WORKERS_METRICS_HOST, or loopback when they listen on
    every address (0.0.0.0 or ::)."""
    if metrics_host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{metrics_host}]" if ":" in metrics_host else metrics_host  # an IPv6 address


def scrape_handled(port: int, queue: str, host: str = "127.0.0.1") -> float | None:
    """Messages a daemon on ``host``:``port`` has handled for ``queue``; None when no daemon of
    ours answers there."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics",
                                    timeout=SCRAPE_TIMEOUT_SECONDS) as response:
            text = response.read().decode()
    except (OSError, ValueError, http.client.HTTPException):
        # Refused, or not HTTP: a port of the ephemeral range nobody listens on can even
        # connect to itself and read back its own request.
        return None
    handled, ours = 0.0, False
    try:
        for family in text_string_to_metric_families(text):
            if family.name in HANDLED_FAMILIES:
                ours = True
                handled += sum(s.value for s in family.samples
                               if s.name.endswith("_total") and s.labels.get("queue") == queue)
    except ValueError:  # not Prometheus text: something else listens there
        return None
    return handled if ours else None


def per_process_rate(before: QueueSample, after: QueueSample, seconds: float) -> float | None:
    """Messages/s one daemon handled between two samples, over the daemons seen in both; None
    when none handled any (an idle queue says nothing about how fast it could go)."""
    common = before.daemons.keys() & after.daemons.keys()
    if not common or seconds <= 0:
        return None
    handled = sum(after.daemons[p] - before.daemons[p] for p in common)
    return handled / seconds / len(common) if handled > 0 else None


def report(current: Sample, previous: Sample | None, target_seconds: float,
           per_process_rate_default: float) -> dict[str, Any]:
    """One sample as plain data, with the drain rate against ``previous`` and the advice."""
    elapsed = current.monotonic - previous.monotonic if previous else 0.0
    before = {q.queue: q for q in previous.queues} if previous else {}
    rows = []
    for q in current.queues:
        rate = measured = None
        if q.queue in before and q.depth and before[q.queue].depth:
            rate = drain_rate(before[q.queue].backlog, q.backlog, elapsed)
        if q.queue in before:
            measured = per_process_rate(before[q.queue], q, elapsed)
        per_process = measured or per_process_rate_default
        rows.append({
            "queue": q.queue, "name": q.name, "exists": q.depth is not None,
            "visible": q.depth.visible if q.depth else None,
            "in_flight": q.depth.in_flight if q.depth else None,
            "delayed": q.depth.delayed if q.depth else None,
            "dlq": q.dlq.total if q.dlq else None,
            "oldest_seconds": q.oldest_seconds,
            "backlog": q.backlog,
            "drain_per_second": None if rate is None else round(rate, 3),
            "eta_seconds": None if rate is None else _round(eta_seconds(q.backlog, rate)),
            "processes": len(q.daemons),
            "rate_per_process": round(per_process, 3),
            "rate_measured": measured is not None,
            "processes_needed": processes_needed(q.backlog, target_seconds, per_process),
        })
    return {"at": datetime.fromtimestamp(current.at, timezone.utc).isoformat(timespec="seconds"),
            "target_seconds": target_seconds, "rate_per_process": per_process_rate_default,
            "queues": rows}


def render(data: dict[str, Any]) -> str:
    headers = ["QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "DLQ", "OLDEST", "DRAIN/S", "ETA",
               "RATE/PROC", "PROCS"]
    rows = []
    for r in data["queues"]:
        if not r["exists"]:
            rows.append([r["queue"], "missing", *["-"] * 8])
            continue
        drain = r["drain_per_second"]
        rows.append([r["queue"], *(str(r[k]) for k in ("visible", "in_flight", "delayed")),
                     "-" if r["dlq"] is None else str(r["dlq"]), format_age(r["oldest_seconds"]),
                     "-" if drain is None else f"{drain:g}", _eta(r),
                     f"{r['rate_per_process']:g}" + ("" if r["rate_measured"] else "*"),
                     f"{r['processes_needed']} (now {r['processes']})" if r["processes"]
                     else str(r["processes_needed"])])
    note = (f"PROCS: processes to drain the backlog within {data['target_seconds']:g} s "
            f"(--target) at RATE/PROC msgs/s each, measured from the daemons' /metrics; "
            f"*: nothing measured, --rate assumed")
    return f"{data['at']}\n{format_table(headers, rows)}\n{note}"


def watch(sampler: Sampler, interval: float | None) -> Iterator[tuple[Sample, Sample | None]]:
    """One sample, or with ``interval`` a sample every ``interval`` seconds, each with the one
    before it."""
    previous = None
    while True:
        current = sampler.sample()
        yield current, previous
        if interval is None:
            return
        previous = current
        time.sleep(max(0.0, interval - (time.monotonic() - current.monotonic)))


def show(settings: Settings, *, as_json: bool, interval: float | None, target_seconds: float,
         default_rate: float, echo: Callable[[str], None]) -> None:
    sampler = Sampler(settings)
    samples = watch(sampler, interval)
    if interval is None and settings.metrics_port:
        samples = _measured_once(sampler)
    for current, previous in samples:
        data = report(current, previous, target_seconds, default_rate)
        echo(json.dumps(data) if as_json else render(data) + ("\n" if interval else ""))


def _measured_once(sampler: Sampler) -> Iterator[tuple[Sample, Sample | None]]:
    """Two samples a short while apart, when any daemon answers: enough to measure its rate."""
    first = sampler.sample()
    if not any(q.daemons for q in first.queues):
        yield first, None
        return
    time.sleep(METRICS_SAMPLE_SECONDS)
    yield sampler.sample(), first


def _eta(row: dict[str, Any]) -> str:
    if row["drain_per_second"] is None:
        return "-"  # one sample: no rate yet
    return "never" if row["eta_seconds"] is None else format_age(row["eta_seconds"])


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
