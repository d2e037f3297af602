"""The chaos suite's end: what the fleet left behind, measured against what the workload
promised, as figures that print and a list of every difference."""

from __future__ import annotations

import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from chaos_workload import SEED, Workload
from devstack.networks import Control
from helpers import queue_depth
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.domain.links import archive
from workers.domain.links.counter import LinkCounter

if TYPE_CHECKING:
    from chaos import Stack

# Log lines of a daemon that only a bug writes (a handler or a lane raised what it should not).
BUG_EVENTS = ("handler.crashed", "lane.error")
# What the daemons log when each fault reaches them: proof that it was felt, not only made.
# Read from each line's parsed JSON: how a renderer spaces its output is not what we check.
FELT: dict[str, Callable[[dict[str, Any]], bool]] = {
    "redis errors": lambda e: str(e.get("reason", "")).startswith("redis unavailable"),
    "replica waits": lambda e: str(e.get("reason", "")).startswith("redis replicas:"),
    "SQS errors": lambda e: e.get("event") == "sqs.unavailable",
    "archive failures": lambda e: e.get("event") == "archive.failed"}


@dataclass
class Figures:
    """What a run sent, did and left behind; ``problems`` names every difference."""

    seed: int = SEED
    sent: int = 0
    valid: int = 0
    duplicates: int = 0
    poison: int = 0
    dead_letters: int = 0  # messages found in the DLQ
    dead_lettered: int = 0  # poison messages among them
    extra_copies: int = 0  # further copies of them (a daemon killed between copy and delete)
    without_reason: int = 0
    unexpected_dead: list[str] = field(default_factory=list)  # anything else in the DLQ
    pairs: int = 0
    counted: int = 0
    urls: int = 0
    wrong_urls: list[str] = field(default_factory=list)
    archive_missing: int = 0
    archive_unexpected: int = 0
    visible: int = 0
    in_flight: int = 0
    delayed: int = 0
    daemons: int = 0
    running: int = 0
    not_running: list[str] = field(default_factory=list)
    deaths: list[str] = field(default_factory=list)  # exits supervisord saw besides our kills
    bug_lines: int = 0
    kills: int = 0
    restarts: int = 0
    redis_losses: list[str] = field(default_factory=list)
    outages: int = 0
    failovers: int = 0
    replica_losses: int = 0
    s3_puts_failed: int = 0
    archive_writes_failed: int = 0
    highest_receive: int = 0
    publish_sent: int = 0  # publish messages, repeats included
    updates: int = 0  # distinct updates among them: each must go out exactly once
    posted_once: int = 0
    posted_twice: list[str] = field(default_factory=list)
    never_posted: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)  # published:{id} missing or wrong
    publish_dead: int = 0  # in publish's DLQ, and analytics' (the posts' engagement)
    network_faults: int = 0
    create_calls: int = 0  # create requests the networks got, faulted and refused ones too
    max_receives: int = 0  # WORKERS_MAX_RECEIVES of the run
    felt: dict[str, int] = field(default_factory=dict)  # the daemons' log lines of each fault
    converged: bool = False
    drain_seconds: float = 0.0  # from the last send to an empty source queue
    seconds: float = 0.0

    def problems(self) -> list[str]:
        """Every difference from what the fleet promises; empty when all is well."""
        checks = [
            (self.converged, "the source queue never emptied"),
            (self.dead_lettered == self.poison, f"{self.poison - self.dead_lettered} poison "
             "messages missing from the DLQ"),
            (not self.without_reason, f"{self.without_reason} dead letters without a reason"),
            (not self.unexpected_dead, f"dead letters that are not poison: "
             f"{self.unexpected_dead[:3]}"),
            (self.counted == self.pairs and not self.wrong_urls,
             f"counted {self.counted} of {self.pairs}; wrong: {self.wrong_urls[:5]}"),
            (not self.archive_missing and not self.archive_unexpected,
             f"archive: {self.archive_missing} pairs missing, {self.archive_unexpected} "
             "unexpected"),
            (not (self.visible or self.in_flight or self.delayed),
             f"left in the source queue: {self.visible} visible, {self.in_flight} in flight, "
             f"{self.delayed} delayed"),
            (self.running == self.daemons, f"daemons not RUNNING: {self.not_running}"),
            (not self.deaths, f"daemons died besides our kills: {self.deaths[:5]}"),
            (not self.bug_lines, f"{self.bug_lines} log lines of {'/'.join(BUG_EVENTS)}"),
            (not self.redis_losses, f"redis lost data: {self.redis_losses}"),
            (self.kills and self.restarts and self.outages and self.failovers
             and self.replica_losses and self.archive_writes_failed
             and self.s3_puts_failed > self.archive_writes_failed, "a fault never happened"),
            (all(self.felt.get(name) for name in FELT), f"a fault the fleet never felt: "
             f"{self.felt}"),
            (not self.posted_twice, f"updates posted twice: {self.posted_twice[:5]}"),
            (not self.never_posted, f"updates never posted: {self.never_posted[:5]}"),
            (not self.unrecorded, f"published:{{id}} wrong: {self.unrecorded[:5]}"),
            (not self.publish_dead, f"{self.publish_dead} publish/analytics dead letters"),
            (self.network_faults and self.create_calls > self.posted_once,
             "no network fault reached publish"),
        ]
        return [message for ok, message in checks if not ok]

    def render(self) -> str:
        return "\n".join([
            f"chaos: {self.sent} messages in {self.seconds:.0f} s (seed {self.seed})",
            f"  sent        {self.sent}: {self.valid} valid ({self.duplicates} duplicates), "
            f"{self.poison} poison",
            f"  DLQ         {self.dead_letters}: {self.dead_lettered} of {self.poison} poison "
            f"(+{self.extra_copies} extra copies), {len(self.unexpected_dead)} unexpected; "
            f"{self.dead_letters - self.without_reason} with a reason",
            f"  counted     {self.counted} of {self.pairs} (update, URL) pairs over "
            f"{self.urls} URLs; {len(self.wrong_urls)} URLs wrong; archive: "
            f"{self.archive_missing} pairs missing",
            f"  source      {self.visible} visible, {self.in_flight} in flight, "
            f"{self.delayed} delayed; drained {self.drain_seconds:.0f} s after the last send",
            f"  daemons     {self.running} of {self.daemons} RUNNING; "
            f"{len(self.deaths)} died besides our kills; {self.bug_lines} error lines",
            f"  faults      {self.kills} kills, {self.restarts} redis restarts "
            f"({len(self.redis_losses)} lost data), {self.failovers} failovers, "
            f"{self.replica_losses} replica losses, {self.outages} endpoint outages, "
            f"{self.s3_puts_failed} S3 PUTs failed ({self.archive_writes_failed} archive "
            f"writes failed)",
            "  felt        " + ", ".join(f"{n} {name}" for name, n in self.felt.items()),
            f"  publish     {self.publish_sent} messages for {self.updates} updates: "
            f"{self.posted_once} posted once, {len(self.posted_twice)} twice, "
            f"{len(self.never_posted)} never; {self.create_calls} create calls under "
            f"{self.network_faults} network faults; {self.publish_dead} dead letters",
            f"  receives    at most {self.highest_receive} for one message "
            f"(WORKERS_MAX_RECEIVES {self.max_receives})",
        ])


def check_dead_letters(figures: Figures, work: Workload, dead: list[dict]) -> None:
    """Each poison message at least as often as it was sent, each with a reason, and nothing
    else (a valid event in the DLQ is a bug)."""
    found: Counter[str] = Counter()
    figures.dead_letters = len(dead)
    for message in dead:
        body = message["Body"]
        reason = message.get("MessageAttributes", {}).get(ERROR_ATTRIBUTE, {})
        if not reason.get("StringValue", "").strip():
            figures.without_reason += 1
        if body in work.poison:
            found[body] += 1
        else:
            figures.unexpected_dead.append(body[:200])
    figures.dead_lettered = sum(min(found[b], n) for b, n in work.poison.items())
    figures.extra_copies = sum(max(0, found[b] - n) for b, n in work.poison.items())


def check_counts(figures: Figures, work: Workload, stack: Stack) -> None:
    """Every URL of the pool, those never named included, against what the workload expects."""
    expected = work.expected_counts()
    client = stack.redis_client()
    got = dict(zip(expected, LinkCounter(client).counts(expected), strict=True))
    client.close()
    figures.urls, figures.pairs, figures.counted = len(expected), len(work.pairs), sum(
        got.values())
    figures.wrong_urls = [f"{k}: {got[k]} != {n}" for k, n in expected.items() if got[k] != n]


def check_archive(figures: Figures, work: Workload, stack: Stack) -> None:
    """Every counted pair is in the S3 archive (written before its message was deleted)."""
    store = archive.Archive(stack.s3, stack.bucket)
    keys = list(store.keys())
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(store.get, keys))
    archived = {tuple(_text(v) for v in pair) for body in bodies for pair in archive.pairs(body)}
    figures.archive_missing = len(work.pairs - archived)
    figures.archive_unexpected = len(archived - work.pairs)


def _text(value: str | bytes) -> str:
    # archive.pairs gives bytes (as a backfill wants them) or str, by version.
    return value.decode() if isinstance(value, bytes) else value


def check_queue(figures: Figures, sqs: Any, url: str) -> None:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    figures.visible = int(attrs["ApproximateNumberOfMessages"])
    figures.in_flight = int(attrs["ApproximateNumberOfMessagesNotVisible"])
    figures.delayed = int(attrs["ApproximateNumberOfMessagesDelayed"])


def check_fleet(figures: Figures, stack: Stack) -> None:
    assert stack.fleet is not None
    status = {m[0]: m[1] for m in re.findall(r"^(\S+)\s+([A-Z]+)", stack.fleet.ctl("status"),
                                             re.M)}
    figures.daemons = len(stack.daemons)
    figures.running = sum(status.get(name) == "RUNNING" for name in stack.daemons)
    figures.not_running = [f"{n} {status.get(n, 'missing')}" for n in stack.daemons
                           if status.get(n) != "RUNNING"]


def check_logs(figures: Figures, run_dir: Path) -> None:
    """supervisord's record of exits, and the daemons' JSON lines (all on its stdout)."""
    log = (run_dir / "supervisord.log").read_text(errors="replace")
    figures.deaths = [f"{name} ({why})" for name, why in
                      re.findall(r"exited: (\S+) \(([^)]*)\)", log)
                      if "SIGKILL" not in why and name != "workers-scale"]
    events = list(json_lines((run_dir / "out.log").read_text(errors="replace")))
    figures.bug_lines = sum(e.get("event") in BUG_EVENTS for e in events)
    figures.felt = {name: sum(map(felt, events)) for name, felt in FELT.items()}
    counts = [e["receive_count"] for e in events if isinstance(e.get("receive_count"), int)]
    figures.highest_receive = max(counts, default=0)


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    """The daemons' JSON log lines among supervisord's own output."""
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:  # a line cut short by a SIGKILL
                continue
            if isinstance(event, dict):
                yield event


def second_creates(creates: list[dict[str, Any]]) -> set[str]:
    """Updates a network was asked to create again once it held their post: a second create
    that succeeded, or (X, Facebook) one it refused as a duplicate, which its duplicate window
    hides from the posts. LinkedIn offers no lookup: a create refused as a duplicate naming
    the post is how it resolves an unknown outcome, so there only a second post counts."""
    seen: dict[str, Counter[tuple[str, str]]] = {}
    for create in creates:
        match = re.match(r"chaos post (pub\d+)", create["text"])
        if match:
            seen.setdefault(match[1], Counter())[(create["service"], create["outcome"])] += 1
    return {u for u, n in seen.items()
            if sum(c for (_, outcome), c in n.items() if outcome == "created") > 1
            or n[("twitter", "duplicate")] or n[("facebook", "duplicate")]}


def check_publish(figures: Figures, work: Workload, stack: Stack) -> None:
    """Each update on its network exactly once, recorded in published:{update_id}, and
    nothing of publish's or analytics' in their DLQs."""
    posts = Control(stack.networks_url).posts()
    ids: dict[str, list[str]] = {}
    for post in posts:
        match = re.match(r"chaos post (pub\d+)", post["text"])
        if match:
            ids.setdefault(match[1], []).append(post["id"])
    figures.publish_sent, figures.updates = len(work.publish), len(work.published)
    figures.posted_once = sum(len(found) == 1 for found in ids.values())
    figures.posted_twice = sorted(second_creates(Control(stack.networks_url).creates())
                                  | {u for u, found in ids.items() if len(found) > 1})
    figures.never_posted = sorted(set(work.published) - set(ids))
    client = stack.redis_client()
    for update_id, found in ids.items():
        recorded = client.hget(f"published:{update_id}", "service_update_id")
        if recorded is None or recorded.decode() not in found:
            figures.unrecorded.append(f"{update_id}: {recorded!r} not {found}")
    client.close()
    figures.publish_dead = sum(queue_depth(stack.sqs, stack.url(f"{q}-dlq"))
                               for q in ("publish", "analytics"))
    stats = Control(stack.networks_url).stats()
    figures.create_calls = sum(stats[s]["create_requests"]
                               for s in ("twitter", "facebook", "linkedin"))
