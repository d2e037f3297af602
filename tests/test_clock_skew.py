"""Workers whose clocks are off by days or weeks still count a redelivery once: real daemons
under libfaketime (Debian's faketime) against moto's server and a redis-server on time."""

from __future__ import annotations

import glob
import json
import subprocess
import sys

from helpers import log_events, queue_depth, wait_until
from workers.domain.links.counter import LinkCounter

EVENT = json.dumps({"update_id": "u1", "profile_id": "p1", "created_at": 1480431305,
                    "url": "https://skewed.example.com/post"})


def start_skewed(offset: str, env: dict[str, str], log_path) -> subprocess.Popen:
    """`workers run post-sent` with libfaketime preloaded: its clock is off by ``offset``."""
    [library] = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")  # Debian's libfaketime
    return subprocess.Popen(
        [sys.executable, "-m", "workers", "run", "post-sent"],
        env={**env, "WORKERS_WAIT_SECONDS": "1", "LD_PRELOAD": library, "FAKETIME": offset,
             "DONT_FAKE_MONOTONIC": "1"},
        stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)


def handled(log_path) -> int:
    return sum(e.get("event") == "message.handled" for e in log_events(log_path))


def test_daemons_days_fast_and_weeks_slow_count_the_same_event_once(env, queues, prefix, sqs,
                                                                    redis_client, tmp_path):
    source = queues[prefix + "post-sent"]
    counter = LinkCounter(redis_client)
    procs = []
    try:
        for offset, expected in (("+5d", 1), ("-40d", 1)):
            # Given the same event, handled by a daemon whose clock is off by ``offset``
            log_path = tmp_path / f"daemon{offset}.log"
            proc = start_skewed(offset, env, log_path)
            procs.append(proc)
            sqs.send_message(QueueUrl=source, MessageBody=EVENT)
            wait_until(lambda log=log_path: handled(log) == 1, timeout=60)
            wait_until(lambda: queue_depth(sqs, source) == 0, timeout=30)
            proc.terminate()
            assert proc.wait(30) == 0
            # Then the link counted once, whichever daemon saw it first
            assert counter.counts(["skewed.example.com/post"]) == [expected]
        # And the faked clocks were in force: each daemon's log lines carry its own time
        stamps = [log_events(tmp_path / f"daemon{o}.log")[0]["ts"] for o in ("+5d", "-40d")]
        assert stamps[0] > stamps[1]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
