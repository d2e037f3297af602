"""A daemon that can no longer consume does not stay alive, and says so: real `workers run`
processes whose lane dies, stalls, or whose parent dies; /health from start-up; /metrics and
/health against clients that never finish their request."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import devstack
from helpers import REPO, alive, log_events, wait_until
from workers.runtime.health import MAX_CONNECTIONS, REQUEST_SECONDS, port_for

RIGGED = REPO / "tests" / "support" / "rigged_daemon.py"
# sysexits.h's EX_SOFTWARE: what a daemon whose lane died exits with, so supervisord restarts it.
EX_SOFTWARE = 70


def get(url: str) -> tuple[int, dict]:
    """(status, JSON body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


@pytest.fixture
def rigged(daemons):
    """Starts `workers run QUEUE` with a handler of tests/support/rigged_daemon.py; kills what is
    left."""
    def start(rig: str, queue: str, *args: str, environment: dict[str, str] | None = None):
        return daemons(queue, *args, environment=environment, launcher=(str(RIGGED), rig))
    return start


@pytest.fixture
def metrics_env(env) -> tuple[dict[str, str], str]:
    """The daemon's environment with /metrics and /health on a free port, and their URL."""
    port = devstack.free_port()
    return ({**env, "WORKERS_METRICS_PORT": str(port), "WORKERS_PROCESS_NUM": "0"},
            f"http://127.0.0.1:{port_for(port, 'post-sent', 0)}")


def send_post(sqs, queues, prefix, update_id: str = "u1") -> None:
    sqs.send_message(QueueUrl=queues[prefix + "post-sent"], MessageBody=json.dumps(
        {"update_id": update_id, "profile_id": "p1", "url": "https://a.com"}))


# -- a lane that ends ----------------------------------------------------------------------

@pytest.mark.parametrize("rig", ["exits", "breaks_logging"])
def test_a_lane_that_dies_makes_the_daemon_exit_non_zero(rigged, sqs, queues, prefix, rig):
    # Given a daemon of two lanes whose handler raises SystemExit, or fails while stdout is gone
    proc = rigged(rig, "post-sent", "--concurrency", "20")
    # When a message reaches it
    send_post(sqs, queues, prefix)
    # Then the whole process exits non-zero (supervisord restarts it), saying why if it can
    assert proc.wait(timeout=60) == EX_SOFTWARE
    text = proc.log_path.read_text()
    assert "lane.died" in text, text[-3000:]
    if rig == "exits":
        died = [e for e in log_events(proc.log_path) if e["event"] == "lane.died"]
        assert died and "SystemExit" in died[0]["exception"]
        assert log_events(proc.log_path)[-1]["event"] == "daemon.stopped"


def test_a_heartbeat_that_dies_makes_the_daemon_exit_non_zero(rigged, sqs, queues, prefix):
    # Given a daemon whose heartbeat thread ends at its first beat, while a handler runs long
    proc = rigged("heartbeat_dies", "post-sent")
    send_post(sqs, queues, prefix)
    # Then it does not run on without one: it exits non-zero, saying why
    assert proc.wait(timeout=90) == EX_SOFTWARE
    assert any(e["event"] == "heartbeat.died" for e in log_events(proc.log_path))


def test_a_lane_that_dies_during_a_warm_stop_still_makes_the_exit_non_zero(rigged, sqs, queues,
                                                                          prefix):
    # Given a daemon whose handler raises SystemExit a few seconds in
    proc = rigged("exits_later", "post-sent")
    send_post(sqs, queues, prefix)
    source = queues[prefix + "post-sent"]
    wait_until(lambda: sqs.get_queue_attributes(
        QueueUrl=source, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1", timeout=30)
    # When it is asked to stop while that handler runs
    proc.send_signal(signal.SIGTERM)
    # Then it still says the lane died
    assert proc.wait(timeout=60) == EX_SOFTWARE
    assert any(e["event"] == "lane.died" for e in log_events(proc.log_path))


def test_a_lane_whose_every_step_fails_makes_the_daemon_exit_non_zero(rigged, env):
    # Given a daemon polling every second whose every step raises (a bug, not SQS away)
    proc = rigged("step_fails", "post-sent", environment={**env, "WORKERS_WAIT_SECONDS": "1"})
    # Then, once its lanes have failed past their liveness deadline (twice the long poll;
    # /health is 503 from then: test_health), it exits non-zero, so supervisord restarts it
    assert proc.wait(timeout=60) == EX_SOFTWARE
    assert any(e["event"] == "lane.died" and "LaneFailing" in e.get("exception", "")
               for e in log_events(proc.log_path))


# -- /health ---------------------------------------------------------------------------------

def test_a_fresh_daemon_is_healthy_at_once(daemons, metrics_env):
    # Given a daemon just started on an empty queue (its first long poll takes 20 s)
    environment, url = metrics_env
    proc = daemons("post-sent", environment=environment)
    # When /health first answers, Then it answers 200
    status, body = wait_until(lambda: (got := get(url + "/health"))[0] and got, timeout=30,
                              interval=0.05)
    assert (status, body["status"]) == (200, "ok"), body
    assert proc.poll() is None


def test_a_stalled_lane_makes_health_503_while_the_other_polls(rigged, sqs, queues, prefix,
                                                               metrics_env):
    # Given a daemon of two lanes polling every second
    environment, url = metrics_env
    environment = {**environment, "WORKERS_WAIT_SECONDS": "1"}
    proc = rigged("hangs", "post-sent", "--concurrency", "20", environment=environment)
    wait_until(lambda: get(url + "/health")[0] == 200, timeout=30)
    # When one lane's handler hangs
    send_post(sqs, queues, prefix)
    # Then /health says 503 within twice the long poll (plus the scrape), naming that lane
    status, body = wait_until(lambda: (got := get(url + "/health"))[0] == 503 and got,
                              timeout=15)
    assert len(body["stale_lanes"]) == 1, body
    # ... and the last-poll gauge is the stuck lane's, not the live one's
    metrics = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    [last_poll] = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("workers_last_poll_timestamp_seconds{")]
    assert time.time() - last_poll > 2
    assert proc.poll() is None


def test_metrics_bind_to_workers_metrics_host(daemons, metrics_env):
    # Given WORKERS_METRICS_HOST, a loopback address other than 127.0.0.1
    environment, url = metrics_env
    proc = daemons("post-sent", environment={**environment, "WORKERS_METRICS_HOST": "127.0.0.2"})
    # Then /health answers there, and not on 127.0.0.1
    wait_until(lambda: get(url.replace("127.0.0.1", "127.0.0.2") + "/health")[0] == 200,
               timeout=30)
    assert get(url + "/health")[0] == 0
    assert proc.poll() is None


def test_clients_that_never_finish_their_request_are_dropped(daemons, metrics_env):
    # Given a daemon serving /health
    environment, url = metrics_env
    proc = daemons("post-sent", environment=environment)
    wait_until(lambda: get(url + "/health")[0] == 200, timeout=30)
    port = int(url.rsplit(":", 1)[1])
    # When many clients send half a request, and one sends a byte a second
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3 * MAX_CONNECTIONS)]
    for sock in held:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never the blank line
    drip = socket.create_connection(("127.0.0.1", port))
    threading.Thread(target=drip_feed, args=(drip,), daemon=True).start()
    opened = time.monotonic()
    # Then a whole request is still answered within the few seconds a client gets
    wait_until(lambda: get(url + "/health")[0] == 200, timeout=REQUEST_SECONDS + 5)
    # ... and the server closes every held connection, the slow one too, within those seconds
    for sock in [*held, drip]:
        sock.settimeout(max(0.1, opened + REQUEST_SECONDS + 5 - time.monotonic()))
        assert dropped(sock)
        sock.close()
    assert proc.poll() is None


def drip_feed(sock: socket.socket) -> None:
    """A request a byte at a time, each well within any per-read socket timeout."""
    for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n":
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return  # dropped
        time.sleep(0.5)


def dropped(sock: socket.socket) -> bool:
    """The server closed ``sock``; a server still holding it makes recv time out (raises)."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


# -- an orphan -------------------------------------------------------------------------------

def test_a_daemon_whose_parent_is_killed_stops_warmly(env, queues, tmp_path):
    # Given a daemon started by a process standing in for supervisord
    log = tmp_path / "orphan.log"
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys\n"
         f"p = subprocess.Popen([sys.executable, '-m', 'workers', 'run', 'post-sent'],"
         f" stdout=open({str(log)!r}, 'ab'), stderr=subprocess.STDOUT)\n"
         "print(p.pid, flush=True)\n"
         "p.wait()\n"],
        env={**env, "WORKERS_WAIT_SECONDS": "1"}, stdout=subprocess.PIPE, text=True,
        start_new_session=True)
    daemon_pid = int(parent.stdout.readline())
    try:
        wait_until(lambda: any(e["event"] == "daemon.started" for e in log_events(log)),
                   timeout=30)
        # When that parent is SIGKILLed
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # Then the daemon stops by itself, warmly
        wait_until(lambda: not alive(daemon_pid) or _zombie(daemon_pid), timeout=30)
        events = log_events(log)
        assert {"event": "shutdown.requested", "signal": "parent.died"}.items() <= next(
            e for e in events if e["event"] == "shutdown.requested").items()
        assert events[-1]["event"] == "daemon.stopped"
    finally:
        if alive(daemon_pid):
            os.kill(daemon_pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    """Exited, waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True
