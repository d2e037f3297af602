"""The fleet under a real supervisord, run from conf/supervisord.conf as in production."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from helpers import Fleet, alive, feed, queue_depth, wait_until
from workers.domain.links.counter import LinkCounter


@pytest.fixture
def fleet(env, queues):
    run_dir = tempfile.mkdtemp(prefix="wsv")  # short: a unix socket path is at most 107 bytes
    fleet = Fleet({**env, "WORKERS_RUN_DIR": run_dir,
                   "WORKERS_BIN": str(Path(sys.executable).parent / "workers"),
                   "WORKERS_POST_SENT_PROCS": "2", "WORKERS_CONCURRENCY": "10",
                   # a host of its own in the fleet's registry and wanted counts
                   "WORKERS_HOST_NAME": f"host-{uuid.uuid4().hex[:8]}",
                   "WORKERS_STOPWAITSECS": "60",
                   # short polls: each idle daemon's warm stop waits out its poll, and
                   # supervisord stops one program after another
                   "WORKERS_WAIT_SECONDS": "2"})
    yield fleet
    fleet.teardown()


def test_kill_9_mid_batch_loses_nothing_and_counts_nothing_twice(fleet, sqs, queues, prefix,
                                                                  redis_client):
    source = queues[prefix + "post-sent"]
    total, sites = 2000, 11
    keys = [f"site{i}.com/page" for i in range(sites)]
    bodies = [json.dumps({"update_id": f"u{i}", "profile_id": "p",
                          "urls": [f"https://site{i % sites}.com/page"]}) for i in range(total)]
    bodies += bodies[:100]  # the API enqueued some twice
    counter = LinkCounter(redis_client)
    fleet.start()
    producer = feed(sqs, source, bodies)
    killed = []
    for victim in ("post-sent_00", "post-sent_01"):
        pid = fleet.pids()[victim]
        before = sum(counter.counts(keys))
        wait_until(lambda before=before: sum(counter.counts(keys)) > before + 50,
                   timeout=60, interval=0.01)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        assert producer.is_alive()  # killed while work was flowing
        wait_until(lambda victim=victim, pid=pid: fleet.pids().get(victim, pid) != pid,
                   timeout=30, interval=0.2)
    producer.join(timeout=300)
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=180, interval=0.5)
    expected = [sum(1 for i in range(total) if i % sites == s) for s in range(sites)]
    assert counter.counts(keys) == expected
    assert queue_depth(sqs, queues[prefix + "post-sent-dlq"]) == 0
    running = fleet.pids()
    assert len(running) == 2 and not set(running.values()) & set(killed)
    assert fleet.stop() == 0
    assert not any(alive(pid) for pid in running.values())


def test_supervisorctl_status_shows_what_runs_and_exits_0(fleet):
    # Given a host that wants 3 post-sent daemons and one of every other program
    fleet.env["WORKERS_POST_SENT_PROCS"] = "3"
    fleet.start()
    wait_until(lambda: len(fleet.pids("")) == 8, timeout=30, interval=0.3)
    # Then supervisorctl lists exactly what runs, every line RUNNING, and all is well
    status = fleet.supervisorctl("status")
    assert status.returncode == 0, status.stdout
    assert sorted(line.split()[:2] for line in status.stdout.splitlines()) == [
        [name, "RUNNING"] for name in sorted(
            ["workers-scale", "post-sent_00", "post-sent_01", "post-sent_02", "publish_00",
             "analytics_00", "push_00", "email_00", "links-api_00"])]
    assert fleet.stop() == 0


def test_scale_changes_exactly_that_queues_processes(fleet, sqs, queues, prefix, redis_client):
    # Given a fleet running 2 post-sent daemons, one of every other queue and one links-api
    fleet.start()
    everything = {"post-sent_00", "post-sent_01", "publish_00", "analytics_00", "push_00",
                  "email_00", "links-api_00"}
    wait_until(lambda: set(fleet.pids("")) == everything, timeout=30, interval=0.3)
    others = {n: p for n, p in fleet.pids("").items() if not n.startswith("post-sent")}
    first = fleet.pids()["post-sent_00"]
    host = fleet.env["WORKERS_HOST_NAME"]
    # When post-sent is scaled to 4
    up = fleet.scale("post-sent", "4")
    # Then two more run, and nothing that ran was restarted
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"post-sent on {host}: 4 processes running"
    assert sorted(fleet.pids()) == [f"post-sent_0{i}" for i in range(4)]
    assert fleet.pids()["post-sent_00"] == first
    # When it is scaled to 1 while events flow
    source = queues[prefix + "post-sent"]
    bodies = [json.dumps({"update_id": f"s{i}", "profile_id": "p1", "created_at": "1480431305",
                          "service": "twitter", "url": "https://scale.example.com"})
              for i in range(400)]
    producer = feed(sqs, source, bodies)
    down = fleet.scale("post-sent", "1")
    # Then only post-sent_00 is left (supervisorctl shows no stopped process), every event
    # counts once, and other queues never noticed
    assert down.returncode == 0, down.stderr
    assert fleet.pids() == {"post-sent_00": first}
    status = fleet.supervisorctl("status")
    assert status.returncode == 0 and "STOPPED" not in status.stdout, status.stdout
    producer.join(timeout=120)
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=120, interval=0.5)
    assert LinkCounter(redis_client).counts(["scale.example.com"]) == [400]
    assert queue_depth(sqs, queues[prefix + "post-sent-dlq"]) == 0
    assert {n: p for n, p in fleet.pids("").items() if not n.startswith("post-sent")} == others
    # And the count outlives supervisord: a restart brings back 1, not WORKERS_POST_SENT_PROCS
    assert fleet.stop() == 0
    fleet.start_any()
    wait_until(lambda: len(fleet.pids("")) == 6, timeout=30, interval=0.3)
    assert sorted(fleet.pids()) == ["post-sent_00"]


def test_scale_with_redis_away_says_so_in_one_line(env, redis_servers):
    gone = redis_servers()
    gone.stop()
    done = subprocess.run([sys.executable, "-m", "workers", "scale", "post-sent", "2"],
                          env={**env, "REDIS_URL": f"redis://127.0.0.1:{gone.port}/0"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: Redis is not reachable (")
    assert done.stderr.strip().endswith("the wanted counts are kept there")
    assert "\n" not in done.stderr.strip()


def test_scale_says_when_supervisord_is_not_running(env, tmp_path):
    done = subprocess.run([sys.executable, "-m", "workers", "scale"],
                          env={**env, "WORKERS_RUN_DIR": str(tmp_path)}, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.startswith("error: supervisord is not reachable (")
    assert "\n" not in done.stderr.strip()
