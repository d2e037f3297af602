"""What the throughput runs compare: each consumer's command line, how many messages it holds
at once (the feeder keeps that many queued, plus the backlog), its settings as the results
state them, and the format its queue is fed in."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import peervenv
from scenario import QUEUE, Consumer

from workers.runtime.daemon import lane_sizes, receives_in_flight

BENCH_DIR = Path(__file__).resolve().parent
BASELINES = BENCH_DIR / "baselines"
# In the order the table shows them: ours, the hand-written loops, the peers, moto's ceiling.
KINDS = ("ours", "batch", "naive", "celery", "celery-prefork", "dramatiq", "sqsworkers", "bare")
PEERS = ("celery", "celery-prefork", "dramatiq", "sqsworkers")
# The order they run in: moto's ceiling right before ours, so the two figures the ceiling
# goal compares are taken as close together as they can be on a machine others share.
RUN_ORDER = ("bare", *(k for k in KINDS if k != "bare"))
BATCH_THREADS = 2  # 2 receives of 10 in flight: holds 20, as ours at --concurrency 20
BARE_THREADS = 4
WAIT = 20  # long poll, seconds


def of(kind: str, concurrency: int) -> Consumer:
    """The consumer called ``kind``; the peers' virtualenv must exist for a peer."""
    return BUILDERS[kind](concurrency)


def _ours(concurrency: int) -> Consumer:
    lanes = lane_sizes(concurrency, receives_in_flight(concurrency))  # as the daemon plans them
    # Each lane holds a batch it handles and, until SQS answers, the one it acknowledges.
    return Consumer("ours", [sys.executable, "-m", "workers", "run", QUEUE,
                             "--concurrency", str(concurrency)], 2 * sum(lanes),
                    {"processes": 1, "concurrency": concurrency,
                     "receives_in_flight": len(lanes), "delete": "batch"})


def _naive(_concurrency: int) -> Consumer:
    return Consumer("naive", [sys.executable, str(BASELINES / "naive_consumer.py")], 1,
                    {"processes": 1, "threads": 1, "receive": 1, "wait_seconds": WAIT,
                     "delete": "one by one"})


def _batch(_concurrency: int) -> Consumer:
    return Consumer("batch", [sys.executable, str(BASELINES / "batch_consumer.py"),
                              "--threads", str(BATCH_THREADS)], 10 * BATCH_THREADS,
                    {"processes": 1, "threads": BATCH_THREADS, "receive": 10,
                     "wait_seconds": WAIT, "delete": "batch"})


def _bare(_concurrency: int) -> Consumer:
    return Consumer("bare", [sys.executable, str(BASELINES / "bare_consumer.py"),
                             "--threads", str(BARE_THREADS)], 10 * BARE_THREADS,
                    {"processes": 1, "threads": BARE_THREADS, "receive": 10,
                     "wait_seconds": WAIT, "delete": "batch", "handler": "none"},
                    counts=False)


def _celery(concurrency: int) -> Consumer:
    """One process, like ours: the threads pool, holding as many messages as ours."""
    return _celery_worker("celery", "threads", concurrency, 1)


def _celery_prefork(concurrency: int) -> Consumer:
    """Celery's default pool, a child per core (its default concurrency), with a prefetch
    multiplier that makes it hold as many messages as ours: 1 + cores processes."""
    children = len(os.sched_getaffinity(0))
    return _celery_worker("celery-prefork", "prefork", children, max(1, concurrency // children))


def _celery_worker(kind: str, pool: str, concurrency: int, multiplier: int) -> Consumer:
    py = peervenv.python()
    return Consumer(
        kind,
        [str(py), "-m", "celery", "-A", "peer_celery", "worker", "-Q", QUEUE,
         "--pool", pool, "--concurrency", str(concurrency),
         "--prefetch-multiplier", str(multiplier),
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
        concurrency * multiplier,
        {"processes": 1 + concurrency if pool == "prefork" else 1, "pool": pool,
         "concurrency": concurrency, "prefetch_multiplier": multiplier,
         "prefetch": concurrency * multiplier, "wait_time_seconds": WAIT, "polling_interval": 0,
         "acks_late": False, "delete": "one by one (kombu)"},
        peer=True, encoder="celery")


def _dramatiq(concurrency: int) -> Consumer:
    py = peervenv.python()
    return Consumer(
        "dramatiq",
        [str(py), "-m", "dramatiq", "peer_dramatiq", "--processes", "1",
         "--threads", str(concurrency)],
        10,
        {"processes": 1, "threads": concurrency, "prefetch": 10,
         "note": "dramatiq prefetches 2 x threads, dramatiq_sqs caps it at 10",
         "wait_seconds": "1 (dramatiq's worker_timeout of 1000 ms)", "delete": "one by one"},
        peer=True, queue_separator="_")


def _sqsworkers(_concurrency: int) -> Consumer:
    py = peervenv.python()
    return Consumer(
        "sqsworkers", [str(py), str(peervenv.PEERS_DIR / "peer_sqsworkers.py")], 10,
        {"processes": 1, "threads": 1, "receive": 10, "wait_seconds": 10, "codec": "json",
         "delete": "batch"},
        peer=True)


BUILDERS: dict[str, Any] = {"ours": _ours, "naive": _naive, "batch": _batch, "bare": _bare,
                            "celery": _celery, "celery-prefork": _celery_prefork,
                            "dramatiq": _dramatiq,
                            "sqsworkers": _sqsworkers}
