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
second. The rate and the processes come from the fleet's registry (workers.runtime.registry), so
they are the whole fleet's, whichever host asks: each live, non-stale daemon of the queue
reports what it handled per second over its last refresh, and the rate is their mean. Where
none handled anything (or Redis is away), ``--rate`` stands in, and the table marks it. The
drain rate is the backlog's change between two samples (handled minus arrived); the ETA is the
backlog over it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Sequence

from workers import QUEUES
from workers.adapters.aws import AWS_ERRORS, client
from workers.adapters.redisconn import REDIS_ERRORS, Client, connect
from workers.adapters.sqs import Depth, find_url, queue_depth
from workers.core.settings import Settings
from workers.ops import fleet
from workers.ops.tables import format_age, format_table

# CloudWatch's SQS metrics have a minute's resolution and arrive a few minutes late: look back
# far enough to find the latest, and ask no more often than they change.
AGE_LOOKBACK = timedelta(minutes=15)
AGE_REFRESH_SECONDS = 60


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
    processes: int = 0  # live daemons of the queue in the registry, fleet-wide
    rate: float | None = None  # messages/s one of them handled lately; None: none handled any

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

    def __init__(self, settings: Settings, sqs: Any = None, cloudwatch: Any = None,
                 redis: Client | None = None):
        self.settings = settings
        self.sqs = sqs or client(settings)
        self.cloudwatch = cloudwatch or client(settings, "cloudwatch", attempts=1)
        self._ages: dict[str, float] = {}
        self._ages_at = -math.inf
        self._urls: dict[str, str] = {}
        self._redis = redis

    def sample(self) -> Sample:
        names = [self.settings.queue_name(q) for q in QUEUES]
        now = time.monotonic()
        if now - self._ages_at >= AGE_REFRESH_SECONDS:
            self._ages, self._ages_at = oldest_ages(self.cloudwatch, names), now
        daemons = self._daemons()
        queues = [QueueSample(q, name, self._depth(name), self._depth(self.settings.dlq_name(q)),
                              self._ages.get(name), *rate_of(daemons.get(q, [])))
                  for q, name in zip(QUEUES, names, strict=True)]
        return Sample(time.time(), time.monotonic(), queues)

    def _daemons(self) -> dict[str, list[float]]:
        """Each queue's live daemons in the registry, fleet-wide: what each handled per second
        over its last refresh. {} while Redis is away (the rate then is --rate's)."""
        try:
            if self._redis is None:
                self._redis = connect(self.settings.redis_url)
            live = fleet.processes(self._redis)
        except REDIS_ERRORS:
            self._redis = None
            return {}
        found: dict[str, list[float]] = {}
        for entry in live:
            if entry["queue"] and not entry["stale"]:
                found.setdefault(entry["queue"], []).append(entry["handled_per_s"])
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


def rate_of(rates: Sequence[float]) -> tuple[int, float | None]:
    """(processes, messages/s one of them handled), None when none handled any: an idle queue
    says nothing about how fast it could go."""
    total = sum(rates)
    return len(rates), (total / len(rates) if total > 0 else None)


def report(current: Sample, previous: Sample | None, target_seconds: float,
           per_process_rate_default: float) -> dict[str, Any]:
    """One sample as plain data, with the drain rate against ``previous`` and the advice."""
    elapsed = current.monotonic - previous.monotonic if previous else 0.0
    before = {q.queue: q for q in previous.queues} if previous else {}
    rows = []
    for q in current.queues:
        rate = None
        if q.queue in before and q.depth and before[q.queue].depth:
            rate = drain_rate(before[q.queue].backlog, q.backlog, elapsed)
        measured = q.rate
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
            "processes": q.processes,
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
            f"(--target) at RATE/PROC msgs/s each, as the fleet's registry measured; "
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
    for current, previous in watch(sampler, interval):
        data = report(current, previous, target_seconds, default_rate)
        echo(json.dumps(data) if as_json else render(data) + ("\n" if interval else ""))


def _eta(row: dict[str, Any]) -> str:
    if row["drain_per_second"] is None:
        return "-"  # one sample: no rate yet
    return "never" if row["eta_seconds"] is None else format_age(row["eta_seconds"])


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
