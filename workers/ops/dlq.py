"""Dead-letter tooling: list, peek at, search, replay and purge each queue's ``-dlq``.

``replay`` never loses a message. Where SQS runs a message-move task, SQS moves the messages
itself. Elsewhere (moto, or with ``--limit``) it copies: a batch is received from the DLQ
(hidden, not removed), sent to the queue, and only the messages SQS accepted are deleted from
the DLQ. A replay killed between the send and the delete leaves a duplicate, which the
idempotent handlers absorb; it never leaves a gap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator, Protocol, Sequence

from botocore.exceptions import ClientError

from workers import QUEUES
from workers.adapters import tracing
from workers.adapters.aws import client
from workers.adapters.sqs import (
    ERROR_ATTRIBUTE,
    QUEUE_ATTRIBUTE,
    RECEIVES_ATTRIBUTE,
    Depth,
    SQSQueue,
    find_url,
    move_tasks,
    original_attributes,
    purge,
    queue_arn,
    queue_depth,
    start_move_task,
)
from workers.core.message import Message
from workers.core.settings import (
    PEEK_VISIBILITY_SECONDS,
    REPLAY_VISIBILITY_SECONDS,
    SQS_BATCH_MAX,
    Settings,
)
from workers.core.text import json_printable, printable, truncate
from workers.ops.tables import format_age, format_table

# A long poll of 1 s rather than a short poll: a short poll asks only some of SQS's servers and
# may come back empty while messages wait.
RECEIVE_WAIT_SECONDS = 1
# How often to ask how far SQS's move task got (each ask is a billed request).
TASK_POLL_SECONDS = 2
# How much of a body `peek` prints.
BODY_PREVIEW_CHARS = 200
# The ways `replay` moves messages: SQS's own task, or receive/send/delete.
AUTO, TASK, COPY = "auto", "task", "copy"

# How many dead letters a search (or a filtered replay's selection) reads at most: each is
# received and given back, and moto's receive costs grow with the queue's depth.
MAX_SCAN = 1000
# A message of a frozen selection: still to move, or sent to the queue (its DLQ copy may remain
# if the delete did not happen: it is then deleted, never sent again).
PENDING, MOVED = "pending", "moved"

Progress = Callable[[str], None]


class DLQError(RuntimeError):
    """A dead-letter operation failed in a way the operator must see (one line)."""


class TaskUnsupported(Exception):
    """The endpoint does not run SQS's message-move task (moto does not)."""


@dataclass(frozen=True)
class Search:
    """The dead letters whose body or reason contains a text: the first ``limit`` of them,
    how many matched, and how many were read."""

    messages: list[Message]
    matched: int
    scanned: int


class Selection(Protocol):
    """A frozen set of dead letters by message id (a replay task keeps it in Redis)."""

    def states(self, ids: Sequence[str]) -> list[str | None]:
        """PENDING, MOVED, or None (not selected) for each id."""

    def mark_moved(self, ids: Sequence[str]) -> None:
        """These were sent to the queue: never send them again."""


@dataclass
class Pass:
    """What one pass of a selected replay did."""

    moved: int = 0
    failed: int = 0
    stale: int = 0  # copies of messages moved earlier, deleted now
    errors: list[str] = field(default_factory=list)


@dataclass
class ReplayResult:
    via: str
    moved: int = 0
    failed: int = 0
    # Copied to the queue but still in the DLQ: a later replay sends them again (harmless).
    undeleted: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self, source: str, destination: str) -> str:
        via = "SQS move task" if self.via == TASK else "receive/send/delete"
        return (f"moved {self.moved}, failed {self.failed}: {source} -> {destination} ({via})"
                + (f"; {self.undeleted} copied but still in {source}: the next replay sends"
                   " them again (harmless)" if self.undeleted else ""))

    def failure(self, source: str) -> str | None:
        """The one-line error when some messages could not be moved."""
        if not self.failed:
            return None
        return (f"{self.failed} message(s) refused by SQS stay in {source}: "
                + "; ".join(self.errors[:3]))


class DeadLetters:
    """One logical queue's dead-letter queue, and the way back to the queue."""

    def __init__(self, settings: Settings, queue: str, sqs: Any = None,
                 probe_sqs: Any = None, poll_seconds: float = TASK_POLL_SECONDS):
        self.sqs = sqs or client(settings)
        # Asks once whether the move task exists; no retries, so an endpoint without it
        # (moto answers 500) costs one request rather than three with backoff.
        self.probe_sqs = probe_sqs or (client(settings, attempts=1) if sqs is None else sqs)
        self.queue = queue
        self.name, self.dlq_name = settings.queue_name(queue), settings.dlq_name(queue)
        # Named for the queue: a replayed message's send span is `send {queue}`.
        self.client = SQSQueue(self.sqs, self.name, self.dlq_name, topic=queue)
        self.poll_seconds = poll_seconds

    @cached_property
    def url(self) -> str:
        return self._url(self.name)

    @cached_property
    def dlq_url(self) -> str:
        return self._url(self.dlq_name)

    def _url(self, name: str) -> str:
        url = find_url(self.sqs, name)
        if url is None:
            raise DLQError(f"queue {name} does not exist (`workers queues create` creates it)")
        return url

    def depth(self) -> Depth:
        return queue_depth(self.sqs, self.dlq_url)

    # -- peek -----------------------------------------------------------------------------

    def peek(self, limit: int, visibility: int = PEEK_VISIBILITY_SECONDS,
             visible: int | None = None) -> list[Message]:
        """Up to ``limit`` messages, left in place: each is hidden only until all are collected
        (giving one back at once would let the next receive return it again), then given back."""
        visible = self.depth().visible if visible is None else visible
        held: dict[str, Message] = {}
        try:
            for batch in self._batches(min(limit, visible), visibility):
                held.update((m.id, m) for m in batch)
        finally:
            if held:
                self.client.change_visibility([(m, 0) for m in held.values()], url=self.dlq_url)
        return list(held.values())

    def _batches(self, budget: int, visibility: int) -> Iterator[list[Message]]:
        """Receives until ``budget`` messages came or none is visible: bounded by the budget,
        so it ends even while new dead letters keep arriving."""
        received = 0
        while received < budget:
            batch = self.client.receive(budget - received, RECEIVE_WAIT_SECONDS,
                                        url=self.dlq_url, visibility=visibility)
            if not batch:
                return
            received += len(batch)
            yield batch

    def search(self, text: str = "", limit: int = 50, scan: int = MAX_SCAN) -> Search:
        """Dead letters whose body or reason contains ``text`` (case-insensitive), left in
        the DLQ. A DLQ has no redrive policy, so the receive count a peek adds moves nothing."""
        scanned = self.peek(scan)
        found = [m for m in scanned if matches(m, text)]
        return Search(found[:limit], len(found), len(scanned))

    def move_selected(self, selection: Selection, *, batch: int = SQS_BATCH_MAX,
                      pace: Callable[[int], None] = lambda n: None,
                      stop: Callable[[], bool] = lambda: False,
                      visibility: int = REPLAY_VISIBILITY_SECONDS) -> Pass:
        """One pass over the DLQ moving the selected messages back to the queue: send, mark
        moved, then delete, so a pass killed anywhere loses none and a message is sent at
        most once more (a kill between the send and the mark). Others met on the way (dead
        letters not selected, among them a selected one that failed again and came back
        with a new id) are held hidden until the pass ends, then given back, so the pass
        ends even while dead letters keep coming. ``pace(n)`` runs after each batch of ``n``
        selected messages is sent and deleted, and waits as long as the rate asks."""
        result, held = Pass(), []
        try:
            while not stop():
                got = self.client.receive(batch, RECEIVE_WAIT_SECONDS, url=self.dlq_url,
                                          visibility=visibility)
                if not got:
                    break
                states = selection.states([m.id for m in got])
                todo = [m for m, s in zip(got, states, strict=True) if s == PENDING]
                stale = [m for m, s in zip(got, states, strict=True) if s == MOVED]
                held += [m for m, s in zip(got, states, strict=True) if s is None]
                sent = self._send_selected(todo, selection, result)
                self.client.delete(sent + stale, url=self.dlq_url)
                result.stale += len(stale)
                if todo:  # waits for the rate holding none of them: a kill leaves none hidden
                    pace(len(todo))
        finally:
            if held:
                self.client.change_visibility([(m, 0) for m in held], url=self.dlq_url)
        return result

    def _send_selected(self, todo: list[Message], selection: Selection,
                       result: Pass) -> list[Message]:
        if not todo:
            return []
        # With tracing on, each goes on in the trace it carries, AWSTraceHeader's included.
        refused = self.client.send_failures([m.body for m in todo], url=self.url,
                                            attributes=[original_attributes(m) for m in todo],
                                            parents=tracing.carried(todo))
        for error in refused.values():
            if error not in result.errors:
                result.errors.append(error)
        sent = [m for i, m in enumerate(todo) if i not in refused]
        selection.mark_moved([m.id for m in sent])
        result.moved += len(sent)
        result.failed += len(refused)
        return sent

    # -- replay ---------------------------------------------------------------------------

    def replay(self, limit: int | None = None, method: str = AUTO,
               visibility: int = REPLAY_VISIBILITY_SECONDS,
               progress: Progress = lambda line: None) -> ReplayResult:
        """Moves messages from the DLQ back to the queue: SQS's move task where the endpoint
        runs it and no limit is asked (the task cannot stop after N), else receive/send/delete."""
        if method == TASK and limit is not None:
            raise DLQError("SQS's move task cannot stop after N messages: "
                           "drop --limit, or use --method copy")
        if method != COPY and limit is None:
            try:
                return self.move_by_task(progress)
            except TaskUnsupported as exc:
                if method == TASK:
                    raise DLQError(f"SQS's move task is not available here: {exc}") from None
                progress(f"move task not available ({exc}): copying instead")
        return self.copy_back(limit, visibility, progress)

    def move_by_task(self, progress: Progress) -> ReplayResult:
        """SQS moves the messages itself; follows a task already running on the DLQ (say, of a
        replay killed earlier) rather than starting a second one."""
        dlq_arn, arn = queue_arn(self.sqs, self.dlq_url), queue_arn(self.sqs, self.url)
        running = self._running_task(dlq_arn)
        if running is None and self.depth().visible == 0:
            return ReplayResult(TASK)
        if running is not None:
            handle = running["TaskHandle"]
            progress(f"following the move task already running on {self.dlq_name}")
        else:
            try:
                handle = start_move_task(self.sqs, dlq_arn, arn)
            except ClientError as exc:
                raise TaskUnsupported(_code(exc)) from None
        try:
            return self._follow(dlq_arn, handle, progress)
        except KeyboardInterrupt:
            raise DLQError("interrupted; SQS's move task goes on: run `workers dlq replay "
                           f"{self.queue}` again to follow it") from None

    def _running_task(self, dlq_arn: str) -> dict[str, Any] | None:
        try:
            tasks = move_tasks(self.probe_sqs, dlq_arn)
        except ClientError as exc:  # the copy path is correct everywhere: any refusal, use it
            raise TaskUnsupported(_code(exc)) from None
        return next((t for t in tasks if t.get("Status") == "RUNNING"), None)

    def _follow(self, dlq_arn: str, handle: str, progress: Progress) -> ReplayResult:
        while True:
            task = self._task(dlq_arn, handle)
            moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            total = task.get("ApproximateNumberOfMessagesToMove")
            progress(f"moved {moved}" + (f"/{total}" if total is not None else "")
                     + " (SQS move task)")
            status = task.get("Status")
            if status == "COMPLETED":
                return ReplayResult(TASK, moved=moved)
            if status != "RUNNING":  # FAILED, CANCELLING, CANCELLED
                reason = task.get("FailureReason") or "no reason given"
                raise DLQError(f"SQS's move task ended {status} after {moved} message(s): "
                               f"{reason}")
            time.sleep(self.poll_seconds)

    def _task(self, dlq_arn: str, handle: str) -> dict[str, Any]:
        results = move_tasks(self.sqs, dlq_arn)
        if not results:
            raise DLQError(f"SQS lists no move task on {self.dlq_name}")
        # Only a running task carries its handle; once done, ours is the most recent one.
        mine = [t for t in results if t.get("TaskHandle") == handle]
        return mine[0] if mine else max(results, key=lambda t: t.get("StartedTimestamp", 0))

    def copy_back(self, limit: int | None = None, visibility: int = REPLAY_VISIBILITY_SECONDS,
                  progress: Progress = lambda line: None) -> ReplayResult:
        """Receive, send, then delete only what was sent, a batch at a time. Bounded by the
        DLQ's depth at the start (or ``limit``): ends even while dead letters keep coming."""
        visible = self.depth().visible
        budget = visible if limit is None else min(limit, visible)
        result = ReplayResult(COPY)
        for batch in self._batches(budget, visibility):
            self._copy(batch, result)
            progress(f"moved {result.moved}/{budget}"
                     + (f", failed {result.failed}" if result.failed else ""))
        return result

    def _copy(self, batch: list[Message], result: ReplayResult) -> None:
        # With tracing on, each goes on in the trace it carries (its first delivery's).
        refused = self.client.send_failures([m.body for m in batch], url=self.url,
                                            attributes=[original_attributes(m) for m in batch],
                                            parents=tracing.carried(batch))
        for error in refused.values():
            if error not in result.errors:
                result.errors.append(error)
        sent = [m for i, m in enumerate(batch) if i not in refused]
        # What SQS refused stays hidden in the DLQ until `visibility` passes, so this run moves
        # on to others instead of retrying it in a loop.
        result.undeleted += len(self.client.delete(sent, url=self.dlq_url))
        result.moved += len(sent)
        result.failed += len(refused)

    # -- purge ----------------------------------------------------------------------------

    def purge(self) -> int:
        """Deletes every message of the DLQ; returns about how many there were."""
        count = self.depth().total
        purge(self.sqs, self.dlq_url)
        return count


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = error.get("Code") or "error"
    return f"HTTP {status}" if code == str(status) else code


# -- list -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DLQSummary:
    queue: str
    dlq: str
    depth: Depth | None  # None: the DLQ does not exist
    oldest_sent_ms: int | None = None

    def json(self, now: float) -> dict[str, Any]:
        return {"queue": self.queue, "dlq": self.dlq, "exists": self.depth is not None,
                "visible": self.depth.visible if self.depth else None,
                "in_flight": self.depth.in_flight if self.depth else None,
                "oldest_seconds": _age(self.oldest_sent_ms, now)}


def overview(settings: Settings, sqs: Any = None) -> list[DLQSummary]:
    """Each queue's DLQ: its depth, and the age of the oldest of up to 10 messages sampled
    (peeked and given back: exact up to 10 messages, a lower bound beyond). A DLQ is the one
    queue where a peek is harmless: nothing consumes it and it has no redrive policy."""
    sqs = sqs or client(settings)
    summaries = []
    for queue in QUEUES:
        dead = DeadLetters(settings, queue, sqs)
        url = find_url(sqs, dead.dlq_name)
        if url is None:
            summaries.append(DLQSummary(queue, dead.dlq_name, None))
            continue
        dead.dlq_url = url
        depth = dead.depth()
        sample = dead.peek(SQS_BATCH_MAX, visible=depth.visible) if depth.visible else []
        oldest = min((m.sent_timestamp_ms for m in sample if m.sent_timestamp_ms), default=None)
        summaries.append(DLQSummary(queue, dead.dlq_name, depth, oldest))
    return summaries


def render_overview(summaries: Sequence[DLQSummary], now: float) -> str:
    rows = [[s.queue, s.dlq, *([str(s.depth.visible), str(s.depth.in_flight)] if s.depth
                               else ["missing", "-"]),
             format_age(_age(s.oldest_sent_ms, now))] for s in summaries]
    return format_table(["QUEUE", "DLQ", "MESSAGES", "IN FLIGHT", "OLDEST"], rows)


# -- showing messages -------------------------------------------------------------------------

def describe(message: Message, now: float) -> dict[str, Any]:
    """What an operator wants to know about a dead letter, as plain data."""
    attrs = message.attributes
    return {
        "id": message.id,
        "receive_count": receives(message),
        "error": reason(message),
        "queue": _string(attrs.get(QUEUE_ATTRIBUTE)),
        "age_seconds": _age(message.sent_timestamp_ms, now),
        "attributes": {name: _string(value) for name, value in attrs.items()
                       if not name.startswith("workers.")},
        "body": message.body,
    }


def reason(message: Message) -> str | None:
    """Why our daemon dead-lettered it; None when SQS's redrive did (receives ran out)."""
    return _string(message.attributes.get(ERROR_ATTRIBUTE))


def receives(message: Message) -> int:
    """The receives in the source queue when our daemon dead-lettered it; else SQS's count
    (which a redrive keeps, and which each peek raises by one)."""
    count = _string(message.attributes.get(RECEIVES_ATTRIBUTE))
    return int(count) if count and count.isdigit() else message.receive_count


def matches(message: Message, text: str) -> bool:
    """Whether its body or its reason contains ``text``, ignoring case; '' matches all."""
    if not text:
        return True
    needle = text.casefold()
    return needle in message.body.casefold() or needle in (reason(message) or "").casefold()


def render_messages(messages: Sequence[Message], now: float) -> str:
    blocks = []
    for m in messages:
        d = describe(m, now)
        lines = [f"{d['id']}  receives={d['receive_count']}  age={format_age(d['age_seconds'])}",
                 f"  error: {printable(d['error'] or '-')}"]
        if d["attributes"]:
            lines.append("  attributes: " + json_printable(d["attributes"]))
        lines.append("  body: " + preview(m.body))
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def render_messages_json(messages: Sequence[Message], now: float) -> str:
    return json_printable([describe(m, now) for m in messages])


def preview(body: str, limit: int = BODY_PREVIEW_CHARS) -> str:
    # Only what is shown (and one more) is escaped, not a 1 MiB body.
    return truncate(printable(body[:limit + 1]), limit)


def _string(value: dict[str, Any] | None) -> str | None:
    if not value:
        return None
    if "StringValue" in value:
        return value["StringValue"]
    return f"<{len(value.get('BinaryValue', b''))} bytes>"


def _age(sent_ms: int | None, now: float) -> float | None:
    return None if not sent_ms else max(0.0, round(now - sent_ms / 1000, 3))
