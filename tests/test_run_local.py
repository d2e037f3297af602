"""`make run`'s script: the local stack comes up, sample events get counted, it all stops."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from devstack import free_port
from devstack.networks import Control
from helpers import REPO, alive, wait_until
from workers.core.events import DECLARED
from workers.core.settings import Settings

# A 1 s long poll: each idle daemon's warm stop waits out its poll (run-local's default 5 s,
# one queue after another); what is asserted is that they all stop warmly, not how long a
# poll lasts.
QUICK_STOP = ("--wait-seconds", "1")


def env_of(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip('"')
    return env


def test_run_local_counts_sample_events_and_signals_together_stop_all_it_started():
    run_dir = Path(tempfile.mkdtemp(prefix="wrl"))
    # Stopped by Ctrl-C, hangup and TERM together once the counts are read, by the CLI and by
    # the read API, which supervisord starts last: no duration to guess. --duration is the
    # safety net.
    tag = new_tag()
    proc = run_local(run_dir, tag, "--duration", "120", "--rate", "10", "--api-port", "0",
                     "--console-port", "0")
    try:
        wait_until(lambda: (run_dir / "env").exists(), timeout=90)
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

        wait_until(served, timeout=90, interval=0.5)
        # The console runs too, its sample operator's password printed once
        password = wait_until(lambda: next((m[1] for line in out_lines(run_dir) if (
            m := re.search(r"as operator, password (\S+)", line))), None), timeout=10)
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
        started = started_by(proc, tag)
        # When Ctrl-C, the terminal closing and a kill reach it at once, again and again
        signal_until_exit(proc)
    finally:
        stop(proc)
    out = (run_dir / "out.log").read_text(errors="replace")
    assert proc.returncode == 0, out[-3000:]
    assert "daemon.stopped" in out
    # Then every process it started is gone, the whole fleet down to the read API ...
    assert any("supervisord" in argv for argv in started.values()), started
    assert any("links serve" in argv for argv in started.values()), started
    assert any(argv.strip().endswith("workers console") for argv in started.values()), started
    assert tagged(tag) == {}, out[-3000:]
    pids = [int(pid) for pid in re.findall(r"with pid (\d+)",
                                           (run_dir / "supervisord.log").read_text())]
    assert pids and not any(alive(pid) for pid in pids)
    # ... and nothing listens any more where moto, redis-server, the networks' stand-ins and
    # the read API did: the next run finds no stale server on its ports
    for url in (env["AWS_ENDPOINT_URL"], env["REDIS_URL"], env["WORKERS_TWITTER_API_URL"],
                f"http://127.0.0.1:{env['WORKERS_LINKS_API_PORT']}"):
        assert not listens(int(url.rsplit(":", 1)[1].split("/")[0])), url


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
                             "--run-dir", str(run_dir), "--console-port", "0", *QUICK_STOP],
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
        daemons = sum(settings.procs_for(q.name, q.procs) for q in DECLARED)
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


def tagged(tag: str) -> dict[int, str]:
    """Every live process whose environment holds ``tag``, with its command line: all that one
    run-local started (its environment is passed down to each), whatever became of their
    parents or sessions."""
    found = {}
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if tag.encode() in environ.read_bytes().split(b"\0"):
                argv = (environ.parent / "cmdline").read_bytes().split(b"\0")
                found[int(environ.parent.name)] = " ".join(a.decode() for a in argv)
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def out_lines(run_dir: Path) -> list[str]:
    """What run-local printed so far."""
    return (run_dir / "out.log").read_text(errors="replace").splitlines()


def run_local(run_dir: Path, tag: str, *args: str) -> subprocess.Popen:
    """bin/run-local as a terminal's foreground job: a process group of its own."""
    name, _, value = tag.partition("=")
    return subprocess.Popen([sys.executable, str(REPO / "bin" / "run-local"), "--rate", "5",
                             "--run-dir", str(run_dir), *QUICK_STOP, *args],
                            env={**os.environ, name: value}, stdin=subprocess.DEVNULL,
                            stdout=open(run_dir / "out.log", "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def new_tag() -> str:
    """An environment variable to pass to one run-local, and so to all it starts."""
    return f"RUN_LOCAL_TEST_TAG={uuid.uuid4().hex}"


def started_by(proc: subprocess.Popen, tag: str) -> dict[int, str]:
    return {pid: argv for pid, argv in tagged(tag).items() if pid != proc.pid}


def signal_until_exit(proc: subprocess.Popen, deadline_s: float = 240) -> None:
    """SIGINT, SIGHUP and SIGTERM to its process group back to back (Ctrl-C as the terminal
    closes, and a kill), again every 0.2 s until it has exited: each burst lands wherever
    the start or the stop then is."""
    deadline = time.monotonic() + deadline_s
    while proc.poll() is None and time.monotonic() < deadline:
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass


def test_signals_together_while_it_starts_stop_all_it_started():
    # Given run-local, its first server (moto) just started, the others not yet
    run_dir = Path(tempfile.mkdtemp(prefix="wrl"))
    tag, port = new_tag(), free_port()
    proc = run_local(run_dir, tag, "--api-port", str(port), "--duration", "300")
    try:
        started = wait_until(lambda: started_by(proc, tag), timeout=60, interval=0.02)
        # When Ctrl-C, the terminal closing and a kill reach it at once, again and again
        signal_until_exit(proc)
    finally:
        stop(proc)
    out = (run_dir / "out.log").read_text(errors="replace")[-3000:]
    # Then it exits cleanly, and nothing it started is left: not the server it was
    # starting, and none it might have gone on to start
    assert proc.returncode == 0, out
    assert started and tagged(tag) == {}, out
    assert not listens(port)


def test_a_taken_api_port_is_refused_in_one_line_before_anything_starts():
    # Given a server of an earlier run still listening on the read API's port
    run_dir = Path(tempfile.mkdtemp(prefix="wrl"))
    tag = new_tag()
    with socket.socket() as stale:
        stale.bind(("127.0.0.1", 0))
        stale.listen()
        port = stale.getsockname()[1]
        # When run-local is asked to serve there (--duration: today's would run on)
        proc = run_local(run_dir, tag, "--api-port", str(port), "--duration", "20")
        try:
            proc.wait(timeout=120)
        finally:
            stop(proc)
        # Then it refuses in one line naming the port and who holds it, and starts nothing
        out = (run_dir / "out.log").read_text()
        assert proc.returncode == 1, out
        assert out.startswith(f"error: 127.0.0.1:{port} is already taken by pid {os.getpid()} ")
        assert out.count("\n") == 1, out
        assert tagged(tag) == {}


def test_a_supervisord_left_in_the_run_dir_is_refused_in_one_line():
    # Given the run directory's supervisord socket still answering (an earlier run's)
    run_dir = Path(tempfile.mkdtemp(prefix="wrl"))
    tag = new_tag()
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(run_dir / "supervisor.sock"))
        stale.listen()
        (run_dir / "supervisord.pid").write_text(f"{os.getpid()}\n")
        # When run-local is started there
        proc = run_local(run_dir, tag, "--api-port", "0", "--duration", "20")
        try:
            proc.wait(timeout=120)
        finally:
            stop(proc)
    # Then it refuses in one line naming that supervisord, and starts nothing
    out = (run_dir / "out.log").read_text()
    assert proc.returncode == 1, out
    assert out.startswith(f"error: a supervisord of an earlier run (pid {os.getpid()}) still "
                          f"runs in {run_dir}: "), out
    assert out.count("\n") == 1, out
    assert tagged(tag) == {}
