"""The consumer loop of one queue: receive, handle concurrently, acknowledge in batches.

Handlers that typically take a few milliseconds or more run concurrently on a thread pool;
quicker ones run one after another on the receiving thread, where a hand-off would cost more
CPU than their work.

``process_batch`` is one step (one receive, its handling, its acknowledgements) and is what
tests drive; ``run`` keeps several of those steps ("lanes") going until shutdown, so a receive
is in flight while another lane's handlers run.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from typing import Any, Sequence

import structlog

from workers import handlers, health, logs, metrics
from workers.backoff import ExponentialBackoff
from workers.deps import Deps
from workers.errors import PermanentError, TransientError
from workers.events import Event, decode
from workers.heartbeat import Heartbeat
from workers.liveness import Lanes
from workers.message import Message
from workers.redisconn import REDIS_ERRORS
from workers.settings import (
    DEFAULT_CONCURRENCY,
    LONG_POLL_SECONDS,
    SQS_BATCH_MAX,
    Settings,
)
from workers.shutdown import Shutdown
from workers.sqs import SQS_ERRORS, SQSQueue, client

SUCCEEDED, RETRIED, DEAD_LETTERED, RETURNED = "succeeded", "retried", "dead_lettered", "returned"
# While SQS or every handler's peer is away, wait between receives: 1 s, doubling, up to this.
MAX_PAUSE_SECONDS = 30
# A daemon whose lane died stops its other lanes warmly for at most this long (supervisord's
# stopwaitsecs for a stop it asks for), then exits whatever still runs.
LANE_DEATH_STOP_SECONDS = 60
# sysexits.h's EX_SOFTWARE: an internal error. Any non-zero status makes supervisord restart it.
EXIT_LANE_DIED = 70
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
class Outcome:
    message: Message
    kind: str
    reason: str | None = None
    retry_after: float | None = None
    event: Event | None = None  # the decoded event of a success, for the before-ack steps


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

    def add(self, other: "BatchResult") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Consumer:
    def __init__(
        self,
        queue: str,
        settings: Settings,
        *,
        sqs_queue: SQSQueue | None = None,
        handler: handlers.Handler | None = None,
        deps: Deps | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        shutdown: Shutdown | None = None,
        before_ack: list[handlers.BeforeAck] | None = None,
    ):
        self.queue = queue
        self.settings = settings
        self.concurrency = max(1, concurrency)
        self.sqs = sqs_queue or SQSQueue(
            client(settings, pool=self.concurrency + 4),
            settings.queue_name(queue), settings.dlq_name(queue))
        self.handler = handler or handlers.get(queue)
        self.before_ack = handlers.before_ack_steps(queue) if before_ack is None else before_ack
        self.deps = deps or Deps(settings)
        self.shutdown = shutdown or Shutdown()
        self.backoff = ExponentialBackoff(settings.visibility_timeout)
        self.log = logs.get(queue=queue)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="handler")
        self.heartbeat = Heartbeat(self._extend, settings.visibility_timeout,
                                   on_error=self._heartbeat_failed)
        self.last_poll = 0.0
        self.totals = BatchResult()
        self._lock = threading.Lock()
        self._pause = 0.0
        self.typical_seconds: float | None = None  # a handler's typical duration, once known
        self.lanes = Lanes(0, settings.wait_seconds)  # run() makes one per lane
        self._lane_died = False

    # -- one step -------------------------------------------------------------------------

    def process_batch(self, wait_seconds: int = LONG_POLL_SECONDS,
                      max_messages: int = SQS_BATCH_MAX) -> BatchResult:
        """One receive, its handling and its acknowledgements. SQS errors of the receive raise."""
        if self.shutdown.requested:
            return BatchResult()
        messages = self.sqs.receive(min(max_messages, self.concurrency), wait_seconds)
        self.last_poll = time.time()
        metrics.LAST_POLL.labels(self.queue).set(self.last_poll)
        if not messages:
            return BatchResult()
        metrics.RECEIVED.labels(self.queue).inc(len(messages))
        for m in messages:
            metrics.RECEIVE_COUNT.labels(self.queue).observe(m.receive_count)
        if self.shutdown.requested:  # received during a long poll that outlived the daemon
            result = self._acknowledge([Outcome(m, RETURNED) for m in messages])
        else:
            # Kept invisible until acknowledged, not only while handled: a dead letter's copy
            # and its delete can outlast a short timeout on a loaded SQS, and a redelivery in
            # between would be dead-lettered twice.
            self.heartbeat.track(messages)
            try:
                result = self._acknowledge(self._before_ack(self._handle_all(messages)))
            finally:
                self.heartbeat.untrack(messages)
        with self._lock:
            self.totals.add(result)
        return result

    def _handle_all(self, messages: list[Message]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        while messages and self._quick():
            outcomes.append(self._handle(messages[0]))
            messages = messages[1:]
        return outcomes + self._handle_on_pool(messages) if messages else outcomes

    def _quick(self) -> bool:
        typical = self.typical_seconds
        return typical is not None and typical < QUICK_HANDLER_SECONDS

    def _handle_on_pool(self, messages: list[Message]) -> list[Outcome]:
        futures: dict[Future, Message] = {self.pool.submit(self._handle, m): m for m in messages}
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

    def _handle(self, message: Message) -> Outcome:
        # Bound for this thread, so the handler's own log lines carry the message too.
        with structlog.contextvars.bound_contextvars(
                queue=self.queue, message_id=message.id, receive_count=message.receive_count):
            return self._handle_bound(message)

    def _handle_bound(self, message: Message) -> Outcome:
        started = time.perf_counter()
        log = self.log
        extra: dict[str, Any] = {}
        try:
            event = decode(self.queue, message)
            extra = self.handler(event, self.deps) or {}
            outcome = Outcome(message, SUCCEEDED, event=event)
        except PermanentError as exc:
            outcome = Outcome(message, DEAD_LETTERED, exc.reason)
        except TransientError as exc:
            outcome = Outcome(message, RETRIED, exc.reason, exc.retry_after)
        except REDIS_ERRORS as exc:  # what a handler did not catch: Redis away is transient
            outcome = Outcome(message, RETRIED, f"redis unavailable: {type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug, not the message's fault: retry, then the DLQ
            log.exception("handler.crashed")
            outcome = Outcome(message, RETRIED, f"unexpected {type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - started
        typical = self.typical_seconds  # threads race here harmlessly: it is an estimate
        self.typical_seconds = elapsed if typical is None else (
            max(elapsed, (1 - TYPICAL_WEIGHT) * typical + TYPICAL_WEIGHT * elapsed))
        metrics.DURATION.labels(self.queue).observe(elapsed)
        if outcome.kind != SUCCEEDED:
            kind = "permanent" if outcome.kind == DEAD_LETTERED else "transient"
            metrics.FAILED.labels(self.queue, kind).inc()
        level = log.info if outcome.kind == SUCCEEDED else log.warning
        if outcome.reason:
            extra = {**extra, "reason": outcome.reason}
        level("message.handled", outcome=outcome.kind,
              duration_ms=round(elapsed * 1000, 2), **extra)
        return outcome

    def _before_ack(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Runs the queue's before-ack steps once for the batch, in order, with its succeeded
        events, if anything succeeded; if one fails, the successes are retried instead of
        deleted (handling again is harmless)."""
        events = [o.event for o in outcomes if o.kind == SUCCEEDED and o.event is not None]
        succeeded = len(events)
        if not succeeded or not self.before_ack:
            return outcomes
        try:
            # Bound so that a step's own log lines (archive.failed...) name the queue.
            with structlog.contextvars.bound_contextvars(queue=self.queue):
                for step in self.before_ack:
                    step(self.deps, events)
            return outcomes
        except TransientError as exc:
            reason = exc.reason
            self.log.warning("before_ack.failed", error=reason, messages=succeeded)
        except Exception as exc:  # a bug in a step: retry, as for a handler's
            reason = f"unexpected {type(exc).__name__}: {exc}"
            self.log.exception("before_ack.crashed", messages=succeeded)
        metrics.FAILED.labels(self.queue, "transient").inc(succeeded)
        return [Outcome(o.message, RETRIED, reason) if o.kind == SUCCEEDED else o
                for o in outcomes]

    def _acknowledge(self, outcomes: list[Outcome]) -> BatchResult:
        by_kind: dict[str, list[Outcome]] = {SUCCEEDED: [], RETRIED: [], DEAD_LETTERED: [],
                                             RETURNED: []}
        for outcome in outcomes:
            by_kind[outcome.kind].append(outcome)
        copied = self._dead_letter(by_kind[DEAD_LETTERED])
        self._delete([o.message for o in by_kind[SUCCEEDED]] + copied)
        given_back = by_kind[RETRIED] + by_kind[RETURNED]
        self.heartbeat.untrack([o.message for o in given_back])  # else it undoes the backoff
        self._change_visibility(
            [(o.message, self.backoff.visibility(o.message.receive_count, o.retry_after))
             for o in by_kind[RETRIED]] + [(o.message, 0) for o in by_kind[RETURNED]])
        metrics.SUCCEEDED.labels(self.queue).inc(len(by_kind[SUCCEEDED]))
        metrics.DEAD_LETTERED.labels(self.queue).inc(len(copied))
        metrics.RETURNED.labels(self.queue).inc(len(by_kind[RETURNED]))
        return BatchResult(received=len(outcomes), succeeded=len(by_kind[SUCCEEDED]),
                           retried=len(by_kind[RETRIED]), dead_lettered=len(copied),
                           not_dead_lettered=len(by_kind[DEAD_LETTERED]) - len(copied),
                           returned=len(by_kind[RETURNED]))

    def _dead_letter(self, dead: list[Outcome]) -> list[Message]:
        """Copies permanent failures to the DLQ; only those copied may then be deleted. One
        SQS refused stays in flight and comes back after its visibility timeout, to be copied
        again (or redriven by SQS after WORKERS_MAX_RECEIVES receives)."""
        if not dead:
            return []
        try:
            copied, refused = self.sqs.dead_letter(
                [(o.message, o.reason or "permanent") for o in dead])
        except SQS_ERRORS as exc:
            copied, refused = [], [(o.message, str(exc)) for o in dead]
        for o in dead:
            if o.message in copied:
                self.log.warning("message.dead_lettered", message_id=o.message.id,
                                 reason=o.reason)
        for message, why in refused:
            self.log.warning("dlq.refused", message_id=message.id, error=why)
        return copied

    def _delete(self, messages: list[Message]) -> None:
        if not messages:
            return
        try:
            failed = self.sqs.delete(messages)
        except SQS_ERRORS as exc:
            failed = messages
            self.log.warning("delete.failed", error=str(exc), messages=len(messages))
        for m in failed:  # it comes back and is handled again, harmlessly: handlers are idempotent
            self.log.warning("message.not_deleted", message_id=m.id)

    def _change_visibility(self, pairs: list[tuple[Message, int]]) -> None:
        if not pairs:
            return
        try:
            self.sqs.change_visibility(pairs)
        except SQS_ERRORS as exc:  # it comes back after its current timeout instead
            self.log.warning("visibility.failed", error=str(exc), messages=len(pairs))

    def _extend(self, pairs: Sequence[tuple[Message, int]]) -> None:
        self.sqs.change_visibility(pairs)
        metrics.VISIBILITY_EXTENSIONS.labels(self.queue).inc(len(pairs))

    def _heartbeat_failed(self, exc: Exception) -> None:
        self.log.warning("heartbeat.failed", error=str(exc))

    # -- the daemon -----------------------------------------------------------------------

    def run(self) -> int:
        """Runs until SIGTERM/SIGINT (or its parent is gone), then finishes what it holds and
        returns 0. If a lane ends any other way, the others stop warmly and the process exits
        with EXIT_LANE_DIED, so supervisord starts a whole daemon again."""
        self.shutdown.install()
        self.shutdown.watch_parent()
        sizes = lane_sizes(self.concurrency)
        self.lanes = Lanes(len(sizes), self.settings.wait_seconds)
        # The gauge follows the lane that polled least recently: one stuck lane shows.
        metrics.LAST_POLL.labels(self.queue).set_function(self.lanes.oldest_poll)
        self._serve_metrics()
        self.heartbeat.start()
        self.log.info("daemon.started", concurrency=self.concurrency, lanes=len(sizes))
        lanes = [threading.Thread(target=self._lane, args=(i, size), name=f"lane-{i}")
                 for i, size in enumerate(sizes)]
        for lane in lanes:
            lane.start()
        self._say("shutdown.requested", signal=self.shutdown.watch())
        if self._lane_died:
            self._stop_after_lane_death(lanes)
        for lane in lanes:
            while lane.is_alive():
                lane.join(timeout=0.5)
        self.heartbeat.stop()
        # Nothing is queued after a warm stop, unless a lane died meanwhile and left its
        # batch's unstarted handlers behind: those must not run with nobody to acknowledge.
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.log.info("daemon.stopped", **vars(self.totals))
        return EXIT_LANE_DIED if self._lane_died else 0  # a lane may die during a warm stop too

    def _serve_metrics(self) -> None:
        if not self.settings.metrics_port:
            return
        port = health.port_for(self.settings.metrics_port, self.queue, self.settings.process_num)
        host = self.settings.metrics_host
        try:
            health.serve(port, self.lanes.health, host)
            self.log.info("metrics.serving", host=host, port=port)
        except OSError as exc:  # a taken port costs the metrics, never the daemon
            self.log.error("metrics.unavailable", host=host, port=port, error=str(exc))

    def _stop_after_lane_death(self, lanes: list[threading.Thread]) -> None:
        """The other lanes finish warmly, for as long as supervisord would give a stop; then the
        process exits non-zero whatever still runs (what it holds comes back from SQS)."""
        deadline = time.monotonic() + LANE_DEATH_STOP_SECONDS
        for lane in lanes:
            lane.join(timeout=max(0.0, deadline - time.monotonic()))
        self.heartbeat.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self._say("daemon.stopped", exit_status=EXIT_LANE_DIED, **vars(self.totals))
        os._exit(EXIT_LANE_DIED)  # not sys.exit: it would wait for handler threads still running

    def _lane(self, index: int, size: int) -> None:
        """One lane; however it ends other than by a requested stop, the daemon exits."""
        error: BaseException | None = None
        try:
            self._consume(index, size)
        except BaseException as exc:  # SystemExit from a handler, a log write that failed...
            error = exc
        if error is not None or not self.shutdown.requested:
            self._lane_died = True
            self.lanes.ended(index)
            self._say("lane.died", lane=index, exc_info=error, level="error")
            self.shutdown.request("lane.died")  # wakes the main thread in shutdown.watch()

    def _consume(self, index: int, size: int) -> None:
        sqs_pause = 0.0
        while not self.shutdown.requested:
            self.lanes.polling(index)
            try:
                # A warm stop waits out this poll (giving back what it brings), so
                # WORKERS_WAIT_SECONDS trades empty receives for a quicker stop.
                result = self.process_batch(self.settings.wait_seconds, size)
                sqs_pause = 0.0
            except SQS_ERRORS as exc:
                sqs_pause = min(max(1.0, sqs_pause * 2), MAX_PAUSE_SECONDS)
                self.log.warning("sqs.unavailable", error=str(exc), retry_in=sqs_pause)
                self.lanes.pausing(index, sqs_pause)
                self.shutdown.wait(sqs_pause)
                continue
            except Exception:
                self.log.exception("lane.error")
                self.lanes.pausing(index, 1)
                self.shutdown.wait(1)
                continue
            self._pause_if_peers_down(result, index)

    def _say(self, event: str, level: str = "info", **fields: Any) -> None:
        """Logs, or failing that (stdout gone) writes the event's name to stderr: the daemon
        stops either way, and must not die of its last words."""
        try:
            getattr(self.log, level)(event, **fields)
        except BaseException:
            try:
                os.write(2, f"{event} queue={self.queue} (logging failed)\n".encode())
            except OSError:
                pass

    def _pause_if_peers_down(self, result: BatchResult, lane: int | None = None) -> None:
        # Every message failed transiently: a peer (Redis, an API) is probably down. Receiving
        # more now would only burn their receive counts; wait, doubling, until a batch has a
        # success or no transient failure (an empty poll says nothing is failing).
        with self._lock:
            if result.retried and not result.succeeded:
                self._pause = min(max(1.0, self._pause * 2), MAX_PAUSE_SECONDS)
            else:
                self._pause = 0.0
            pause = self._pause
        if pause:
            self.log.warning("consumer.paused", seconds=pause)
            if lane is not None:
                self.lanes.pausing(lane, pause)
            self.shutdown.wait(pause)


def lane_sizes(concurrency: int) -> list[int]:
    """Concurrency in lanes of at most 10 (one receive each): 25 -> [10, 10, 5]."""
    full, rest = divmod(max(1, concurrency), SQS_BATCH_MAX)
    return [SQS_BATCH_MAX] * full + ([rest] if rest else [])


__all__ = ["BatchResult", "Consumer", "Outcome"]
