"""The fleet under a real supervisord, run from conf/supervisord.conf as in production."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import REPO, alive, feed, queue_depth, wait_until
from workers.links import LinkCounter


class Fleet:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Fleet":
        log = open(Path(self.env["WORKERS_RUN_DIR"]) / "out.log", "ab")
        self.proc = subprocess.Popen([str(REPO / "bin" / "workers-supervisord")], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: len(self.pids()) == int(self.env["WORKERS_POST_SENT_PROCS"]),
                   timeout=30, interval=0.3)
        return self

    def ctl(self, *args: str) -> str:
        return subprocess.run([str(REPO / "bin" / "workers-supervisorctl"), *args], env=self.env,
                              capture_output=True, text=True, timeout=30).stdout

    def pids(self) -> dict[str, int]:
        """RUNNING post-sent processes (the queue these tests load): name -> pid."""
        return {m[0]: int(m[1]) for m in
                re.findall(r"^(post-sent:\S+)\s+RUNNING\s+pid (\d+)", self.ctl("status"),
                           re.M)}

    def teardown(self) -> None:
        """Stops what a test left running, even after a failure. supervisord gives each
        daemon its own process group, so killing supervisord's group would orphan them."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log = Path(self.env["WORKERS_RUN_DIR"]) / "supervisord.log"
        spawned = re.findall(r"with pid (\d+)", log.read_text()) if log.exists() else []
        for pid in map(int, spawned):
            if alive(pid) and b"workers" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=90)


@pytest.fixture
def fleet(env, queues):
    run_dir = tempfile.mkdtemp(prefix="wsv")  # short: a unix socket path is at most 107 bytes
    fleet = Fleet({**env, "WORKERS_RUN_DIR": run_dir,
                   "WORKERS_BIN": str(Path(sys.executable).parent / "workers"),
                   "WORKERS_POST_SENT_PROCS": "2", "WORKERS_CONCURRENCY": "10",
                   "WORKERS_STOPWAITSECS": "60"})
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
    for victim in ("post-sent:post-sent_00", "post-sent:post-sent_01"):
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


def test_supervisorctl_sees_one_process_per_numprocs(fleet):
    fleet.env["WORKERS_POST_SENT_PROCS"] = "3"
    fleet.start()
    assert sorted(fleet.pids()) == [f"post-sent:post-sent_0{i}" for i in range(3)]
    assert fleet.stop() == 0
