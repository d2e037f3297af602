"""`make run`'s script: the local stack comes up, sample events get counted, it all stops."""

import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import requests

from helpers import REPO, alive, wait_until
from workers import QUEUES
from workers.devstack.networks import Control
from workers.settings import Settings


def env_of(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip('"')
    return env


def test_run_local_counts_sample_events_and_stops_what_it_started():
    run_dir = Path(tempfile.mkdtemp(prefix="wrl"))
    # Stopped by Ctrl-C (SIGINT) once the counts are read, by the CLI and by the read API,
    # which supervisord starts last: no duration to guess. --duration is the safety net.
    proc = subprocess.Popen([sys.executable, str(REPO / "bin" / "run-local"), "--duration", "120",
                             "--rate", "10", "--run-dir", str(run_dir),
                             "--api-port", "0", "--console-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    read = lines_of(proc.stdout)
    try:
        wait_until(lambda: (run_dir / "env").exists(), timeout=60)
        env = {**env_of(run_dir / "env"), "PATH": "/usr/bin:/bin"}

        def counted() -> bool:
            out = subprocess.run([sys.executable, "-m", "workers", "links", "count",
                                  "https://buffer.com", "https://buffer.com/blog"],
                                 env=env, capture_output=True, text=True).stdout
            return all(int(line.split("\t")[0]) > 0 for line in out.splitlines()) and bool(out)

        # Eight programs (the console too) start at once: on a loaded machine, a while
        wait_until(counted, timeout=120, interval=0.5)

        def served() -> bool:  # the read API, under the same supervisord, reads the same count
            api = f"http://127.0.0.1:{env['WORKERS_LINKS_API_PORT']}/1/links/shares.json"
            try:
                return requests.get(api, params={"url": "buffer.com"}, timeout=5
                                    ).json()["shares"] > 0
            except requests.RequestException:
                return False

        wait_until(served, timeout=60, interval=0.5)
        # The console runs too, its sample operator's password printed once
        password = wait_until(lambda: next((m[1] for line in read if (m := re.search(
            r"as operator, password (\S+)", line))), None), timeout=10)
        console = f"http://127.0.0.1:{env['WORKERS_CONSOLE_PORT']}"

        def signed_in() -> bool:
            try:
                session = requests.Session()
                session.post(f"{console}/login", data={"username": "operator",
                                                       "password": password}, timeout=10)
                return session.get(f"{console}/api/queues", timeout=10).status_code == 200
            except requests.RequestException:
                return False

        wait_until(signed_in, timeout=60, interval=0.5)
        # The counts came from publish events: posts went out on the networks' stand-ins, each
        # update once though every 5th event repeats one.
        posts = Control(env["WORKERS_TWITTER_API_URL"]).posts()
        texts = [p["text"].split(" http")[0] for p in posts]
        assert texts and len(texts) == len(set(texts))
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        stop(proc)
    out = "".join(read)
    assert proc.returncode == 0, out
    assert "daemon.stopped" in out
    pids = [int(pid) for pid in re.findall(r"with pid (\d+)",
                                           (run_dir / "supervisord.log").read_text())]
    assert pids and not any(alive(pid) for pid in pids)
    # moto, redis-server and the networks' stand-ins stopped
    for url in (env["AWS_ENDPOINT_URL"], env["REDIS_URL"], env["WORKERS_TWITTER_API_URL"]):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def stop(proc: subprocess.Popen) -> None:
    """After a failure too: SIGTERM, on which run-local stops all it started (a SIGKILL would
    leave its moto and redis-server behind), then SIGKILL if it does not end."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def lines_of(pipe) -> list[str]:
    """The lines ``pipe`` gives, read on a thread of their own (as ``tee`` would) until the
    pipe is closed."""
    read: list[str] = []

    def pump() -> None:
        try:
            for line in pipe:
                read.append(line.decode(errors="replace"))
        except (OSError, ValueError):  # closed under us: the test's "tee" died
            pass

    threading.Thread(target=pump, daemon=True).start()
    return read


@pytest.mark.parametrize("how", ["SIGINT", "SIGHUP"])
def test_a_stop_with_a_dead_stdout_still_stops_everything(how):
    # Given `make run | tee run.log`, the fleet up and logging through the pipe
    run_dir = Path(tempfile.mkdtemp(prefix="wrl"))
    proc = subprocess.Popen([sys.executable, str(REPO / "bin" / "run-local"), "--rate", "5",
                             "--run-dir", str(run_dir), "--console-port", "0"],
                            stdout=subprocess.PIPE,
                            stderr=open(run_dir / "stderr.log", "ab"), start_new_session=True)
    try:
        log = run_dir / "supervisord.log"
        # Up means every daemon said so (its SIGTERM handler is in place by then): supervisord's
        # "RUNNING" only says a process lived a second, which a loaded machine spends importing.
        read = lines_of(proc.stdout)
        wait_until(lambda: (run_dir / "env").exists(), timeout=90)
        env = env_of(run_dir / "env")
        settings = Settings.from_env(env)
        daemons = sum(settings.procs_for(queue) for queue in QUEUES)
        wait_until(lambda: sum('"daemon.started"' in line for line in read) >= daemons,
                   timeout=90, interval=0.5)
        supervisord = int((run_dir / "supervisord.pid").read_text())
        # When tee dies (the pipe's reader is gone) and then Ctrl-C, or the terminal closes
        proc.stdout.close()
        proc.send_signal(getattr(signal, how))
        # Then run-local still stops supervisord, every daemon, moto and redis-server
        assert proc.wait(timeout=150) == 0, (run_dir / "stderr.log").read_text()[-3000:]
    finally:
        stop(proc)
    text = log.read_text()
    pids = [int(pid) for pid in re.findall(r"with pid (\d+)", text)]
    assert pids and not any(alive(pid) for pid in [supervisord, *pids])
    # ... supervisord itself stopped each daemon warmly (no orphan had to notice on its own)
    for name in re.findall(r"spawned: '((?:post-sent|analytics|push|email)_\d+)'", text):
        assert f"stopped: {name} (exit status 0)" in text, text[-3000:]
    for url in (env["AWS_ENDPOINT_URL"], env["REDIS_URL"]):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
