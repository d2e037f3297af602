"""The consumer of one queue: receive, handle concurrently, acknowledge in batches.

``process_batch`` is one step: one receive, its handling, the queue's before-ack steps, then
its acknowledgements (deletes, dead letters, visibility). Handlers that typically take a few
milliseconds or more run concurrently on a thread pool; quicker ones run one after another on
the receiving thread, where a hand-off would cost more CPU than their work. What keeps steps
going (lanes, signals, the heartbeat's thread, ``/health``) is the daemon's
(workers/runtime/daemon.py).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Sequence, Union

import structlog

from workers.adapters import tracing
from workers.adapters.aws import AWS_ERRORS, client
from workers.adapters.redisconn import REDIS_ERRORS
from workers.adapters.sqs import SQSQueue, earlier_receives
from workers.core import metrics
from workers.core.backoff import ExponentialBackoff
from workers.core.errors import HandlerError, PermanentError, TransientError
from workers.core.events import Event, decode
from workers.core.message import Message
from workers.core.settings import (
    DEFAULT_CONCURRENCY,
    LONG_POLL_SECONDS,
    MAX_DELAY_SECONDS,
    SQS_BATCH_MAX,
    Settings,
)
from workers.runtime import logs
from workers.runtime.heartbeat import Heartbeat
from workers.runtime.shutdown import Shutdown

SUCCEEDED, RETRIED, DEAD_LETTERED, RETURNED = "succeeded", "retried", "dead_lettered", "returned"
# How often a waiting batch looks at the shutdown flag.
SHUTDOWN_POLL_SECONDS = 0.2
# Handlers that typically take less than this run one after another on the thread that
# received them: handing a message to another thread costs about as much CPU as such a
# handler's work (a Redis round trip), and a batch of ten still takes only milliseconds.
# Slower ones (an HTTP API, SES) go to the handler threads, all of a batch at once.
QUICK_HANDLER_SECONDS = 0.005
# Weight of the newest handler's duration in the typical one: a slow handler moves the
# typical duration past QUICK_HANDLER_SECONDS at once, a quick one brings it back gradually.
TYPICAL_WEIGHT = 0.2


@dataclass(frozen=True)
class Handlers:
    """What a queue's module hands its consumer (workers/queues/): callables that already hold
    what they use. ``handle`` takes one validated event and returns fields for its log line
    (or None), raising TransientError or PermanentError. ``batch``, when given, is used
    instead: once per batch with its events, in order, it returns one result per event (log
    fields, None, or that event's HandlerError); raising fails every event of the batch.
    ``before_ack`` steps run once per batch with its succeeded events, before they are
    deleted (as Dramatiq's middleware); one that raises TransientError has them retried."""
    handle: Callable[[Any], "dict[str, Any] | None"]
    batch: Callable[[Sequence[Any]], "Sequence[dict[str, Any] | None | HandlerError]"] | None = None
    before_ack: Sequence[Callable[[Sequence[Event]], None]] = ()


# Handlers, or what builds them at the first batch: a daemon starts while its Redis is away (a
# cluster's client asks a node at once), its messages failing transiently until it is back.
HandlersOrBuild = Union[Handlers, Callable[[], Handlers]]


@dataclass(frozen=True)
class Outcome:
    message: Message
    kind: str
    reason: str | None = None
    retry_after: float | None = None
    event: Event | None = None  # the decoded event of a success, for the before-ack steps
    deferred: bool = False  # a retry that waits its turn: no peer failed
    update_id: str | None = None  # the update its event is about, named by its log lines
    span: Any = None  # its process span, with tracing on; ended once the batch is handled


@dataclass
class BatchResult:
    received: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    # Permanent failures SQS would not take into the DLQ: left for a redelivery, and not
    # counted as retried, since no peer of the handler failed.
    not_dead_lettered: int = 0
    returned: int = 0
    # Of the retried, those only waiting their turn (a rate-limit window, another's lease).
    deferred: int = 0

    def add(self, other: "BatchResult") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class Handled:
    """A batch received and handled, not yet acknowledged."""
    messages: list[Message]
    outcomes: list[Outcome]  # its messages are tracked by the heartbeat until acknowledged

    def tally(self) -> BatchResult:
        """What the handlers made of it, before SQS has heard (dead letters not yet copied)."""
        return tally(self.outcomes)


def update_of(event: Event) -> str | None:
    """The update an event is about (post-sent, analytics, publish), which its lines name."""
    update_id = getattr(event, "update_id", None)
    return update_id if isinstance(update_id, str) else None


def _named(update_id: str | None) -> dict[str, str]:
    """The log fields naming an update, if there is one."""
    return {"update_id": update_id} if update_id else {}


def redis_unavailable(exc: Exception) -> str:
    """The reason of a failure that Redis being away caused, wherever it was raised."""
    return f"redis unavailable: {type(exc).__name__}: {exc}"


def tally(outcomes: Sequence[Outcome]) -> BatchResult:
    """The outcomes counted by kind, every permanent failure as dead-lettered."""
    kinds = [o.kind for o in outcomes]
    return BatchResult(received=len(kinds), succeeded=kinds.count(SUCCEEDED),
                       retried=kinds.count(RETRIED), returned=kinds.count(RETURNED),
                       dead_lettered=kinds.count(DEAD_LETTERED),
                       deferred=sum(o.deferred for o in outcomes if o.kind == RETRIED))


class Consumer:
    def __init__(
        self,
        queue: str,
        settings: Settings,
        *,
        handlers: HandlersOrBuild,
        sqs_queue: SQSQueue | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        shutdown: Shutdown | None = None,
    ):
        self.queue = queue
        self.settings = settings
        self.concurrency = max(1, concurrency)
        self.sqs = sqs_queue or SQSQueue(
            client(settings, pool=self.concurrency + 4, validate=False),
            settings.queue_name(queue), settings.dlq_name(queue), topic=queue)
        self.handlers = handlers
        self.shutdown = shutdown or Shutdown()
        self.backoff = ExponentialBackoff(settings.visibility_timeout)
        self.log = logs.get(queue=queue)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="handler")
        self.heartbeat = Heartbeat(self._extend, settings.visibility_timeout,
                                   on_error=self._heartbeat_failed,
                                   on_refused=self._heartbeat_refused)
        self.last_poll = 0.0
        self.totals = BatchResult()
        self._lock = threading.Lock()
        self.typical_seconds: float | None = None  # a handler's typical duration, once known
        # Observed once a message: looked up once, not per observation.
        self._receive_counts = metrics.RECEIVE_COUNT.labels(queue)
        self._durations = metrics.DURATION.labels(queue)
        self._traced = tracing.enabled()  # asked once: with tracing off, no hook runs at all

    # -- one step -------------------------------------------------------------------------

    def process_batch(self, wait_seconds: int = LONG_POLL_SECONDS,
                      max_messages: int = SQS_BATCH_MAX) -> BatchResult:
        """One receive, its handling and its acknowledgements. SQS errors of the receive raise."""
        handled = self.handle_batch(wait_seconds, max_messages)
        return self.acknowledge(handled) if handled is not None else BatchResult()

    def handle_batch(self, wait_seconds: int = LONG_POLL_SECONDS,
                     max_messages: int = SQS_BATCH_MAX) -> "Handled | None":
        """``process_batch`` up to its acknowledgements, which ``acknowledge`` then makes (the
        daemon's lanes, on another thread, while they receive again): the batch's messages
        stay invisible until then. None when nothing came."""
        if self.shutdown.requested:
            return None
        # Hidden for WORKERS_VISIBILITY_TIMEOUT, whatever the queue's own attribute says: the
        # heartbeat extends each message on that reckoning, and a queue left at a shorter
        # timeout would hand a message out again while its handler runs.
        messages = self.sqs.receive(min(max_messages, self.concurrency), wait_seconds,
                                    visibility=self.settings.visibility_timeout)
        self.last_poll = time.time()
        metrics.LAST_POLL.labels(self.queue).set(self.last_poll)
        if not messages:
            return None
        metrics.RECEIVED.labels(self.queue).inc(len(messages))
        for m in messages:
            self._receive_counts.observe(m.receive_count)
        # Received during a long poll that outlived a stop request, they are handled all the
        # same: given back, each would have spent a receive of WORKERS_MAX_RECEIVES, and
        # daemons stopping together (a scale-down) would hand them to each other until SQS
        # dead-lettered them. Handlers not started by then are still given back (below).
        # Kept invisible until acknowledged, not only while handled: a dead letter's copy
        # and its delete can outlast a short timeout on a loaded SQS, and a redelivery in
        # between would be dead-lettered twice.
        self.heartbeat.track(messages)
        try:
            return Handled(messages, self._outcomes(messages))
        except BaseException:
            self.heartbeat.untrack(messages)
            raise

    def acknowledge(self, handled: "Handled") -> BatchResult:
        """Deletes, dead letters and visibility changes of a handled batch; its result."""
        try:
            result = self._acknowledge(handled.outcomes)
        finally:
            self.heartbeat.untrack(handled.messages)
        with self._lock:
            self.totals.add(result)
        return result

    def _outcomes(self, messages: list[Message]) -> list[Outcome]:
        """The batch handled, then its before-ack steps run."""
        try:
            handlers = self._built()
        except Exception as exc:  # Redis away at the first batch: each message fails alone
            return [self._unbuilt(m, exc) for m in messages]
        outcomes = self._handle_all(handlers, messages)
        if self._traced:
            return self._before_ack_traced(handlers, outcomes)
        return self._before_ack(handlers, outcomes)

    def _built(self) -> Handlers:
        """The queue's handlers, built at the first batch that needs them."""
        if not isinstance(self.handlers, Handlers):
            self.handlers = self.handlers()
        return self.handlers

    def _unbuilt(self, message: Message, exc: Exception) -> Outcome:
        """A message whose handlers could not be built: failed as their exception says."""
        with structlog.contextvars.bound_contextvars(
                queue=self.queue, message_id=message.id, receive_count=message.receive_count):
            outcome = self._failed(message, exc)
            self._handled(outcome, 0.0, {})
        return outcome

    def _handle_all(self, handlers: Handlers, messages: list[Message]) -> list[Outcome]:
        if handlers.batch is not None:
            return self._handle_batch(handlers.batch, messages)
        outcomes: list[Outcome] = []
        while messages and self._quick():
            outcomes.append(self._handle(handlers.handle, messages[0]))
            messages = messages[1:]
        return outcomes + self._handle_on_pool(handlers.handle, messages) if messages else outcomes

    def _quick(self) -> bool:
        typical = self.typical_seconds
        return typical is not None and typical < QUICK_HANDLER_SECONDS

    def _handle_on_pool(self, handle: Callable[[Any], Any],
                        messages: list[Message]) -> list[Outcome]:
        futures: dict[Future, Message] = {self.pool.submit(self._handle, handle, m): m
                                          for m in messages}
        pending = set(futures)
        outcomes: list[Outcome] = []
        while pending:
            done, pending = wait(pending, timeout=SHUTDOWN_POLL_SECONDS)
            outcomes.extend(f.result() for f in done)
            if pending and self.shutdown.requested:
                cancelled = self._cancel_unstarted(pending)
                outcomes.extend(Outcome(futures[f], RETURNED) for f in cancelled)
                pending -= cancelled
        return outcomes

    def _cancel_unstarted(self, pending: set[Future]) -> set[Future]:
        """Give back what has not started: it would otherwise wait out its timeout."""
        return {f for f in pending if f.cancel()}

    def _handle(self, handle: Callable[[Any], Any], message: Message) -> Outcome:
        # Bound for this thread, so the handler's own log lines carry the message too.
        with structlog.contextvars.bound_contextvars(
                queue=self.queue, message_id=message.id, receive_count=message.receive_count):
            if not self._traced:
                return self._handle_bound(handle, message)
            span = self._start_span(message)
            with tracing.current(span):
                return replace(self._handle_bound(handle, message), span=span)

    def _start_span(self, message: Message) -> Any:
        return tracing.start_process(self.queue, message.id, message.attributes,
                                     message.trace_header, message.receive_count)

    def _handle_bound(self, handle: Callable[[Any], Any], message: Message) -> Outcome:
        started = time.perf_counter()
        try:
            event = decode(self.queue, message)
        except Exception as exc:
            outcome = self._failed(message, exc)
            self._handled(outcome, time.perf_counter() - started, {})
            return outcome
        update_id = update_of(event)
        # Bound once here, so every line of the handler and the runtime names its update.
        with structlog.contextvars.bound_contextvars(**_named(update_id)):
            extra: dict[str, Any] = {}
            try:
                extra = handle(event) or {}
                outcome = Outcome(message, SUCCEEDED, event=event)
            except Exception as exc:
                outcome = self._failed(message, exc)
            outcome = replace(outcome, update_id=update_id)
            self._handled(outcome, time.perf_counter() - started, extra)
        return outcome

    def _handle_batch(self, batch: Callable[[Sequence[Any]], Sequence[Any]],
                      messages: list[Message]) -> list[Outcome]:
        """The batch handler, once for the batch's events, on this thread. A body that does
        not decode fails alone; the handler raising fails every event it was given."""
        if self._traced:  # each message's span; the shared work goes under tracing.batch_work
            spans = [self._start_span(m) for m in messages]
            with tracing.batch_work(self.queue, spans):
                outcomes = self._handle_batch_work(batch, messages, spans)
            return [replace(o, span=span) for o, span in zip(outcomes, spans, strict=True)]
        return self._handle_batch_work(batch, messages, [None] * len(messages))

    def _handle_batch_work(self, batch: Callable[[Sequence[Any]], Sequence[Any]],
                           messages: list[Message], spans: list[Any]) -> list[Outcome]:
        started = time.perf_counter()
        outcomes: dict[int, Outcome] = {}
        decoded: list[tuple[int, Event]] = []
        for i, message in enumerate(messages):
            try:
                decoded.append((i, decode(self.queue, message)))
            except Exception as exc:
                outcomes[i] = self._failed(message, exc)
        extras: dict[int, dict[str, Any]] = {}
        if decoded:
            answers: Sequence[object]
            try:
                answers = batch([event for _, event in decoded])
                if len(answers) != len(decoded):
                    raise RuntimeError(f"{len(answers)} results for {len(decoded)} events")
            except Exception as exc:
                answers = [exc] * len(decoded)
            for (i, event), answer in zip(decoded, answers, strict=True):
                update_id = update_of(event)
                if isinstance(answer, Exception):
                    outcomes[i] = replace(self._failed(messages[i], answer, bound=False,
                                                       context=_named(update_id)),
                                          update_id=update_id)
                    extras[i] = _named(update_id)
                else:
                    outcomes[i] = Outcome(messages[i], SUCCEEDED, event=event,
                                          update_id=update_id)
                    extras[i] = {**_named(update_id),
                                 **(answer if isinstance(answer, dict) else {})}
        share = (time.perf_counter() - started) / len(messages)  # each message's part of it
        for i, message in enumerate(messages):  # the fields _handle binds, given directly
            fields = {"message_id": message.id, "receive_count": message.receive_count,
                      **extras.get(i, {})}
            if spans[i] is None:
                self._handled(outcomes[i], share, fields)
                continue
            with tracing.current(spans[i]):  # its log line and exemplar: its own trace
                self._handled(outcomes[i], share, fields)
        return [outcomes[i] for i in range(len(messages))]

    def _failed(self, message: Message, exc: Exception, bound: bool = True,
                context: dict[str, str] | None = None) -> Outcome:
        """What a handler's exception means for its message."""
        if isinstance(exc, PermanentError):
            return Outcome(message, DEAD_LETTERED, exc.reason)
        if isinstance(exc, TransientError):
            return Outcome(message, RETRIED, exc.reason, exc.retry_after, deferred=exc.deferred)
        if isinstance(exc, REDIS_ERRORS):  # Redis away: handlers leave it to us
            return Outcome(message, RETRIED, redis_unavailable(exc))
        # A bug, not the message's fault: retry, then the DLQ.
        if bound:
            self.log.exception("handler.crashed", exc_info=exc)
        else:
            with structlog.contextvars.bound_contextvars(
                    queue=self.queue, message_id=message.id,
                    receive_count=message.receive_count, **(context or {})):
                self.log.exception("handler.crashed", exc_info=exc)
        return Outcome(message, RETRIED, f"unexpected {type(exc).__name__}: {exc}")

    def _handled(self, outcome: Outcome, elapsed: float, extra: dict[str, Any]) -> None:
        """The message's duration, metrics and log line, once its outcome is known."""
        log = self.log
        typical = self.typical_seconds  # threads race here harmlessly: it is an estimate
        self.typical_seconds = elapsed if typical is None else (
            max(elapsed, (1 - TYPICAL_WEIGHT) * typical + TYPICAL_WEIGHT * elapsed))
        if self._traced:  # the exemplar: this message's trace, beside its duration
            self._durations.observe(elapsed, tracing.exemplar())
        else:
            self._durations.observe(elapsed)
        if outcome.kind != SUCCEEDED:
            kind = "permanent" if outcome.kind == DEAD_LETTERED else "transient"
            metrics.FAILED.labels(self.queue, kind).inc()
        level = log.info if outcome.kind == SUCCEEDED else log.warning
        if outcome.reason:
            extra = {**extra, "reason": outcome.reason}
        level("message.handled", outcome=outcome.kind,
              duration_ms=round(elapsed * 1000, 2), **extra)

    def _before_ack(self, handlers: Handlers, outcomes: list[Outcome]) -> list[Outcome]:
        """Runs the queue's before-ack steps once for the batch, in order, with its succeeded
        events, if anything succeeded; if one fails, the successes are retried instead of
        deleted (handling again is harmless)."""
        events = [o.event for o in outcomes if o.kind == SUCCEEDED and o.event is not None]
        succeeded = len(events)
        if not succeeded or not handlers.before_ack:
            return outcomes
        try:
            # Bound so that a step's own log lines (archive.failed...) name the queue.
            with structlog.contextvars.bound_contextvars(queue=self.queue):
                for step in handlers.before_ack:
                    step(events)
            return outcomes
        except TransientError as exc:
            reason = exc.reason
            self.log.warning("before_ack.failed", error=reason, messages=succeeded)
        except REDIS_ERRORS as exc:  # Redis away: steps leave it to us, as handlers do
            reason = redis_unavailable(exc)
            self.log.warning("before_ack.failed", error=reason, messages=succeeded)
        except Exception as exc:  # a bug in a step: retry, as for a handler's
            reason = f"unexpected {type(exc).__name__}: {exc}"
            self.log.exception("before_ack.crashed", messages=succeeded)
        metrics.FAILED.labels(self.queue, "transient").inc(succeeded)
        return [replace(o, kind=RETRIED, reason=reason) if o.kind == SUCCEEDED else o
                for o in outcomes]

    def _before_ack_traced(self, handlers: Handlers, outcomes: list[Outcome]) -> list[Outcome]:
        """``_before_ack``, what its steps send a child of each event's process span (publish
        chains post-sent and analytics); then each span ends with its message's outcome."""
        succeeded = [o for o in outcomes if o.kind == SUCCEEDED and o.span is not None]
        tracing.remember((o.event, o.span) for o in succeeded)
        try:  # the steps' own calls (Redis, Pusher) beneath the span(s) of what they follow
            with tracing.batch_work(self.queue, [o.span for o in succeeded]):
                outcomes = self._before_ack(handlers, outcomes)
        finally:
            for o in outcomes:
                if o.span is not None:
                    tracing.end_process(o.span, o.kind, o.reason, o.deferred, o.event)
        return outcomes

    def _acknowledge(self, outcomes: list[Outcome]) -> BatchResult:
        outcomes = [self._spent(o) for o in outcomes]
        by_kind: dict[str, list[Outcome]] = {SUCCEEDED: [], RETRIED: [], DEAD_LETTERED: [],
                                             RETURNED: []}
        for outcome in outcomes:
            by_kind[outcome.kind].append(outcome)
        updates = {o.message.id: _named(o.update_id) for o in outcomes}
        copied = self._dead_letter(by_kind[DEAD_LETTERED], updates)
        requeued = self._requeue([o for o in by_kind[RETRIED] if o.deferred])
        self._delete([o.message for o in by_kind[SUCCEEDED]] + copied + requeued, updates)
        given_back = by_kind[RETRIED] + by_kind[RETURNED]
        self.heartbeat.untrack([o.message for o in given_back])  # else it undoes the backoff
        waiting = {m.id for m in requeued}
        self._change_visibility(
            [(o.message, self.backoff.visibility(o.message.receive_count, o.retry_after))
             for o in by_kind[RETRIED] if o.message.id not in waiting]
            + [(o.message, 0) for o in by_kind[RETURNED]])
        metrics.SUCCEEDED.labels(self.queue).inc(len(by_kind[SUCCEEDED]))
        metrics.DEAD_LETTERED.labels(self.queue).inc(len(copied))
        metrics.RETURNED.labels(self.queue).inc(len(by_kind[RETURNED]))
        return replace(tally(outcomes), dead_lettered=len(copied),
                       not_dead_lettered=len(by_kind[DEAD_LETTERED]) - len(copied))

    def _requeue(self, waiting: list[Outcome]) -> list[Message]:
        """Messages that only wait their turn (a rate-limit window, another's claim) go back
        as new copies delayed by their wait, the originals then deleted: given back instead,
        each wait would spend a receive, and SQS would dead-letter a message for waiting
        more windows than WORKERS_MAX_RECEIVES. A copy sent twice (the delete failed) is
        harmless: handlers are idempotent. Those SQS refused are given back as usual."""
        if not waiting:
            return []
        waits = [(o.message, min(MAX_DELAY_SECONDS,
                                 self.backoff.visibility(o.message.receive_count, o.retry_after)))
                 for o in waiting]
        try:
            return self.sqs.requeue(waits)
        except AWS_ERRORS as exc:
            self.log.warning("requeue.failed", error=str(exc), messages=len(waits))
            return []

    def _spent(self, outcome: Outcome) -> Outcome:
        """A failure of a re-sent copy whose receives, its earlier copies' added, reach
        WORKERS_MAX_RECEIVES: dead-lettered here, as SQS's redrive would have (SQS counts
        the copy's own receives only)."""
        earlier = earlier_receives(outcome.message)
        receives = earlier + outcome.message.receive_count
        if (outcome.kind != RETRIED or outcome.deferred or not earlier
                or receives < self.settings.max_receives):
            return outcome
        return replace(outcome, kind=DEAD_LETTERED,
                       reason=f"{outcome.reason} (failed {receives} receives)")

    def _dead_letter(self, dead: list[Outcome],
                     updates: dict[str, dict[str, str]]) -> list[Message]:
        """Copies permanent failures to the DLQ; only those copied may then be deleted. One
        SQS refused stays in flight and comes back after its visibility timeout, to be copied
        again (or redriven by SQS after WORKERS_MAX_RECEIVES receives)."""
        if not dead:
            return []
        try:
            copied, refused = self.sqs.dead_letter(
                [(o.message, o.reason or "permanent") for o in dead])
        except AWS_ERRORS as exc:
            copied, refused = [], [(o.message, str(exc)) for o in dead]
        for o in dead:
            if o.message in copied:
                self.log.warning("message.dead_lettered", message_id=o.message.id,
                                 **_named(o.update_id), reason=o.reason)
        for message, why in refused:
            self.log.warning("dlq.refused", message_id=message.id,
                             **updates.get(message.id, {}), error=why)
        return copied

    def _delete(self, messages: list[Message], updates: dict[str, dict[str, str]]) -> None:
        if not messages:
            return
        try:
            failed = self.sqs.delete(messages)
        except AWS_ERRORS as exc:
            failed = messages
            self.log.warning("delete.failed", error=str(exc), messages=len(messages))
        for m in failed:  # it comes back and is handled again, harmlessly: handlers are idempotent
            self.log.warning("message.not_deleted", message_id=m.id, **updates.get(m.id, {}))

    def _change_visibility(self, pairs: list[tuple[Message, int]]) -> None:
        if not pairs:
            return
        try:
            self.sqs.change_visibility(pairs)
        except AWS_ERRORS as exc:  # it comes back after its current timeout instead
            self.log.warning("visibility.failed", error=str(exc), messages=len(pairs))

    def _extend(self, pairs: Sequence[tuple[Message, int]]) -> list[Message]:
        """The heartbeat's extensions; returns the messages SQS refused."""
        refused = self.sqs.change_visibility(pairs)
        metrics.VISIBILITY_EXTENSIONS.labels(self.queue).inc(len(pairs) - len(refused))
        return refused

    def _heartbeat_failed(self, exc: Exception) -> None:
        self.log.warning("heartbeat.failed", error=str(exc))

    def _heartbeat_refused(self, messages: Sequence[Message]) -> None:
        for m in messages:  # tried again at the next beat, while it stays due
            self.log.warning("heartbeat.refused", message_id=m.id)


__all__ = ["BatchResult", "Consumer", "Handled", "Handlers", "Outcome"]
