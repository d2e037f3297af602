"""Helpers for tests that drive real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
# Runs a test twice: against one redis-server, and against a real three-master Redis Cluster.
ON_SINGLE_AND_CLUSTER = pytest.mark.parametrize("redis_url", ["single", "cluster"],
                                                indirect=True)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Polls ``predicate`` until it is truthy; returns its value, or fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"not true after {timeout}s: {getattr(predicate, '__name__', predicate)}"
            return value
        time.sleep(interval)


def workers_cmd(*args: str, env: dict[str, str], stdin: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def start_daemon(queue: str, env: dict[str, str], log_path: Path, *args: str,
                 launcher: Sequence[str] = ("-m", "workers")) -> subprocess.Popen:
    """`workers run QUEUE`; ``launcher`` is what Python runs in place of ``-m workers``."""
    out = open(log_path, "ab")
    return subprocess.Popen([sys.executable, *launcher, "run", queue, *args], env=env,
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def log_events(log_path: Path) -> list[dict[str, Any]]:
    events = []
    for line in log_path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events


def queue_depth(sqs: Any, url: str) -> int:
    """Visible + in flight + delayed."""
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return sum(int(v) for v in attrs.values())


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message now visible in ``url`` (received, not deleted), with its attributes."""
    got: dict[str, dict[str, Any]] = {}
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                    VisibilityTimeout=60, MessageAttributeNames=["All"]
                                    ).get("Messages", [])
        if not batch:
            return list(got.values())
        got.update((m["MessageId"], m) for m in batch)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def send(sqs: Any, url: str, *events: dict[str, Any]) -> None:
    """Enqueues each event as JSON with plain boto3, as the API would."""
    for event in events:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))


def process_all(consumer: Any) -> Any:
    """Runs ``consumer.process_batch`` until a receive comes back empty; the summed result."""
    from workers.runtime.consumer import BatchResult

    total = BatchResult()
    while (result := consumer.process_batch(wait_seconds=1)).received:
        total.add(result)
    return total


def feed(sqs, url: str, bodies: list[str], backlog: int = 150) -> threading.Thread:
    """Sends ``bodies`` in batches of 10 from a thread, keeping at most ``backlog`` queued
    (moto slows with depth), as the API would under steady load."""

    def run() -> None:
        for start in range(0, len(bodies), 10):
            while queue_depth(sqs, url) > backlog:
                time.sleep(0.05)
            sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(bodies[start:start + 10])])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class DeadLetters:
    """Takes dead letters out of the DLQ as they come (moto slows with a queue's depth, and
    big bad bodies pile up), keeping each with its attributes."""

    def __init__(self, sqs, url: str):
        self.sqs, self.url = sqs, url
        self.got: dict[str, dict] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self) -> list[dict]:
        self.done.set()
        self.thread.join()
        self.got.update((m["MessageId"], m) for m in drain(self.sqs, self.url))
        return list(self.got.values())

    def _run(self) -> None:
        while not self.done.is_set():
            batch = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                             WaitTimeSeconds=1, MessageAttributeNames=["All"]
                                             ).get("Messages", [])
            if batch:
                self.got.update((m["MessageId"], m) for m in batch)
                self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(batch)])


class Fleet:
    """The fleet under a real supervisord, run from conf/supervisord.conf as in production;
    ``env`` gives WORKERS_RUN_DIR, WORKERS_BIN and the stack's variables."""

    def __init__(self, env: dict[str, str]):
        # A host of its own in the fleet's registry and wanted counts: other tests' processes
        # on the same Redis (a read API, daemons) are other hosts'.
        self.env = {"WORKERS_HOST_NAME": f"host-{uuid.uuid4().hex[:8]}", **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Fleet":
        self.start_any()
        wait_until(lambda: len(self.pids()) == int(self.env["WORKERS_POST_SENT_PROCS"]),
                   timeout=30, interval=0.3)
        return self

    def start_any(self) -> None:
        """supervisord, without waiting for any process."""
        log = open(Path(self.env["WORKERS_RUN_DIR"]) / "out.log", "ab")
        self.proc = subprocess.Popen([str(REPO / "bin" / "workers-supervisord")], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def ctl(self, *args: str) -> str:
        return self.supervisorctl(*args).stdout

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / "bin" / "workers-supervisorctl"), *args], env=self.env,
                              capture_output=True, text=True, timeout=30)

    def pids(self, program: str = "post-sent") -> dict[str, int]:
        """RUNNING processes of ``program`` (by default the queue these tests load), each a
        supervisord program of its own (post-sent_00): name -> pid; of every program but
        workers-scale with ``program=""``."""
        return {m[0]: int(m[1]) for m in
                re.findall(rf"^({re.escape(program) if program else '[^ ]+'}_\d\d)\s+RUNNING"
                           r"\s+pid (\d+)", self.ctl("status"), re.M)}

    def scale(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(self.env["WORKERS_BIN"])), "scale", *args],
                              env=self.env, capture_output=True, text=True, timeout=150)

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
            try:
                if b"workers" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass  # gone already

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=90)
