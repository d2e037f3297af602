"""The daemon around one queue's consumer: lanes, signals, the heartbeat's thread, ``/health``.

``Consumer.process_batch`` is one step; the daemon keeps several of those steps ("lanes") going
until shutdown, so a receive is in flight while another lane's handlers run, and a lane hands
its batch's acknowledgements to a thread of its own and receives again, so its next receive
never waits for SQS to take its deletes (``handle_batch``, then ``acknowledge``). It pauses a lane
while SQS or every handler's peer is away, and exits non-zero if a lane ends any other way
than by a requested stop, so supervisord starts a whole daemon again.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from workers.adapters.aws import AWS_ERRORS
from workers.core import metrics
from workers.core.settings import MIN_RECEIVES_IN_FLIGHT, SQS_BATCH_MAX
from workers.runtime import health
from workers.runtime.consumer import BatchResult, Consumer, Handled
from workers.runtime.liveness import Lanes
from workers.runtime.registry import Registration
from workers.runtime.shutdown import forced_exit

# While SQS or every handler's peer is away, wait between receives: 1 s, doubling, up to this.
MAX_PAUSE_SECONDS = 30
# A daemon whose lane died stops its other lanes warmly for at most this long (supervisord's
# stopwaitsecs for a stop it asks for), then exits whatever still runs.
LANE_DEATH_STOP_SECONDS = 60
# How often an extra lane, idle while receives come back short, says it is alive and looks again.
BACKLOG_POLL_SECONDS = 1.0
# sysexits.h's EX_SOFTWARE: an internal error. Any non-zero status makes supervisord restart it.
EXIT_LANE_DIED = 70


class LaneFailing(Exception):
    """Every step of a lane failed until its liveness deadline passed."""


class Daemon:
    def __init__(self, consumer: Consumer):
        self.consumer = consumer
        self.queue = consumer.queue
        self.settings = consumer.settings
        self.shutdown = consumer.shutdown
        self.log = consumer.log
        self.lanes = Lanes(0, self.settings.wait_seconds)  # run() makes one per lane
        self._lock = threading.Lock()
        self._pause = 0.0
        self._paused_until = 0.0  # by self.clock
        self.clock = time.monotonic
        self._lane_died = False
        # Each lane's acknowledgements (deletes, dead letters, visibility) run here while the
        # lane receives again: a batch's SQS calls never wait for each other. run() sizes it.
        self.acks = ThreadPoolExecutor(1, thread_name_prefix="ack")
        # Lanes past those --concurrency asks for (MIN_RECEIVES_IN_FLIGHT) receive only while
        # receives come back full: on a shallow queue they would split what is there into
        # partial batches, more requests a message for no speed.
        self._own_lanes = 1
        self._backlog = threading.Event()

    def run(self) -> int:
        """Runs until SIGTERM/SIGINT (or its parent is gone), then finishes what it holds and
        returns 0. If a lane ends any other way, the others stop warmly and the process exits
        with EXIT_LANE_DIED, so supervisord starts a whole daemon again."""
        consumer = self.consumer
        self.shutdown.install()
        self.shutdown.watch_parent()
        sizes = lane_sizes(consumer.concurrency, receives_in_flight(consumer.concurrency))
        self.lanes = Lanes(len(sizes), self.settings.wait_seconds)
        self.acks = ThreadPoolExecutor(len(sizes), thread_name_prefix="ack")  # one per lane
        self._own_lanes = len(lane_sizes(consumer.concurrency))
        # The gauge follows the lane that polled least recently: one stuck lane shows.
        metrics.LAST_POLL.labels(self.queue).set_function(self.lanes.oldest_poll)
        self._serve_metrics()
        registration = self._register()
        consumer.heartbeat.on_death = self._heartbeat_died
        consumer.heartbeat.start()
        self.log.info("daemon.started", concurrency=consumer.concurrency, lanes=len(sizes))
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
        self.acks.shutdown(wait=True)  # the lanes waited for theirs: none is left
        consumer.heartbeat.stop()
        # Nothing is queued after a warm stop, unless a lane died meanwhile and left its
        # batch's unstarted handlers behind: those must not run with nobody to acknowledge.
        consumer.pool.shutdown(wait=True, cancel_futures=True)
        registration.stop()  # a warm stop leaves the registry at once
        self.log.info("daemon.stopped", **vars(consumer.totals))
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

    def _register(self) -> Registration:
        """This daemon's entry in the fleet's registry, refreshed by a thread of its own from
        the figures the daemon keeps anyway: nothing of it is on the message path."""
        return Registration(self.settings.redis_url, self.settings.host_name, self.queue,
                            queue=self.queue, snapshot=self.figures, log=self.log).start()

    def figures(self) -> dict[str, Any]:
        totals = self.consumer.totals
        return {"last_poll_at": self.lanes.oldest_poll(),
                "handled": totals.received - totals.returned,
                "failed": totals.retried + totals.not_dead_lettered,
                "dead_lettered": totals.dead_lettered,
                "in_flight": self.consumer.heartbeat.holding()}

    def _stop_after_lane_death(self, lanes: list[threading.Thread]) -> None:
        """The other lanes finish warmly, for as long as supervisord would give a stop; then the
        process exits non-zero whatever still runs (what it holds comes back from SQS)."""
        deadline = time.monotonic() + LANE_DEATH_STOP_SECONDS
        for lane in lanes:
            lane.join(timeout=max(0.0, deadline - time.monotonic()))
        self.consumer.heartbeat.stop()
        self.consumer.pool.shutdown(wait=False, cancel_futures=True)
        self._say("daemon.stopped", exit_status=EXIT_LANE_DIED, **vars(self.consumer.totals))
        # Not sys.exit: it would wait for handler threads still running.
        forced_exit(EXIT_LANE_DIED)

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

    def _heartbeat_died(self, error: BaseException | None) -> None:
        """Without its heartbeat a long handler's messages would be handed out again: the
        daemon stops, as for a lane that died, and supervisord starts a whole one."""
        self._lane_died = True
        self._say("heartbeat.died", exc_info=error, level="error")
        self.shutdown.request("heartbeat.died")

    def _consume(self, index: int, size: int) -> None:
        """Receive and handle a batch, hand its acknowledgements over, receive again. One
        batch's acknowledgements are in flight at a time: the lane waits for them before it
        hands over the next, and before it ends. A lane whose every step fails (a bug, not
        SQS away) until its liveness deadline ends: it would otherwise loop forever."""
        sqs_pause = 0.0
        acking: Future[BatchResult] | None = None
        try:
            while not self.shutdown.requested:
                self.lanes.polling(index)
                if index >= self._own_lanes and not self._backlog.wait(BACKLOG_POLL_SECONDS):
                    continue
                try:
                    # A warm stop waits out this poll (handling what it brings), so
                    # WORKERS_WAIT_SECONDS trades empty receives for a quicker stop.
                    handled = self.consumer.handle_batch(self.settings.wait_seconds, size)
                    sqs_pause = 0.0
                except AWS_ERRORS as exc:
                    sqs_pause = min(max(1.0, sqs_pause * 2), MAX_PAUSE_SECONDS)
                    self.log.warning("sqs.unavailable", error=str(exc), retry_in=sqs_pause)
                    self.lanes.pausing(index, sqs_pause)
                    self.shutdown.wait(sqs_pause)
                    continue
                except Exception:
                    self.log.exception("lane.error")
                    self._failed_step(index)
                    self.lanes.pausing(index, 1)
                    self.shutdown.wait(1)
                    continue
                self._saw(handled, size)
                if self._settle(acking):
                    self.lanes.succeeded(index)
                else:
                    self._failed_step(index)
                acking = self.acks.submit(self.consumer.acknowledge, handled) if handled else None
                self.pause_if_peers_down(handled.tally() if handled else BatchResult(), index)
        finally:
            self._settle(acking)

    def _failed_step(self, index: int) -> None:
        """A step of lane ``index`` failed; past its liveness deadline the lane ends."""
        failing_for = self.lanes.failed(index)
        if failing_for is not None:
            raise LaneFailing(f"every step failed for {failing_for:.1f} s")

    def _saw(self, handled: Handled | None, size: int) -> None:
        """A full receive says a backlog is there for the extra lanes; a short one, not."""
        if handled is not None and len(handled.messages) >= size:
            self._backlog.set()
        else:
            self._backlog.clear()

    def _settle(self, acking: "Future[BatchResult] | None") -> bool:
        """Waits for a batch's acknowledgements; a bug in them is logged, as a lane's error.
        False if there was one."""
        if acking is None:
            return True
        try:
            acking.result()
        except Exception:
            self.log.exception("lane.error")
            return False
        return True

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

    def pause_if_peers_down(self, result: BatchResult, lane: int | None = None) -> None:
        """Every message failed transiently: a peer (Redis, an API) is probably down. Receiving
        more now would only burn their receive counts; wait, doubling, until a batch has a
        success or no transient failure (an empty poll says nothing is failing). Messages that
        only wait their turn (deferred) say nothing about the peers. The lanes share one pause:
        the failures of batches that were in flight together wait out the same one, so the
        pause doubles once a round, however many lanes there are."""
        with self._lock:
            now = self.clock()
            if result.retried > result.deferred and not result.succeeded:
                if now >= self._paused_until:  # the first failure since the last pause ended
                    self._pause = min(max(1.0, self._pause * 2), MAX_PAUSE_SECONDS)
                    self._paused_until = now + self._pause
                pause = self._paused_until - now
            else:
                self._pause = self._paused_until = pause = 0.0
        if pause:
            self.log.warning("consumer.paused", seconds=round(pause, 3))
            if lane is not None:
                self.lanes.pausing(lane, pause)
            self.shutdown.wait(pause)


def lane_sizes(concurrency: int, at_least: int = 1) -> list[int]:
    """Concurrency in lanes of at most 10 (one receive each): 25 -> [10, 10, 5]; then lanes of
    a full receive more, up to ``at_least`` lanes: 20, 4 -> [10, 10, 10, 10]."""
    full, rest = divmod(max(1, concurrency), SQS_BATCH_MAX)
    sizes = [SQS_BATCH_MAX] * full + ([rest] if rest else [])
    return sizes + [SQS_BATCH_MAX] * (at_least - len(sizes))


def receives_in_flight(concurrency: int) -> int:
    """The lanes a daemon keeps at least: MIN_RECEIVES_IN_FLIGHT once ``concurrency`` holds a
    full receive; a daemon asked for fewer handlers than that is held to what it asked."""
    return MIN_RECEIVES_IN_FLIGHT if concurrency >= SQS_BATCH_MAX else 1


__all__ = ["Daemon", "EXIT_LANE_DIED", "lane_sizes"]
