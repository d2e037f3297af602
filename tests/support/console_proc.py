"""A real `workers console` process for tests, on a free loopback port, stopped by its PID; and
the users it lets in (written by `workers console adduser`, as an operator would)."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from helpers import workers_cmd
from workers import devstack

OPERATOR, VIEWER = ("olga", "operator-pass-1"), ("victor", "viewer-pass-1")


def add_users(env: dict[str, str]) -> None:
    for (name, password), role in ((OPERATOR, "operator"), (VIEWER, "viewer")):
        done = workers_cmd("console", "adduser", name, "--role", role, env=env,
                           stdin=password + "\n")
        assert done.returncode == 0, done.stderr


@dataclass
class ConsoleProcess:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def session(self, user: tuple[str, str] = OPERATOR) -> requests.Session:
        """Signed in as ``user``, its CSRF token sent with every request."""
        s = requests.Session()
        answer = s.post(f"{self.url}/login", data={"username": user[0], "password": user[1]},
                        allow_redirects=False, timeout=10)
        assert answer.status_code == 303, answer.text
        s.headers["X-CSRF-Token"] = s.get(f"{self.url}/api/session", timeout=10
                                          ).json()["csrf_token"]
        return s

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_console(env: dict[str, str], log_path: Path, **extra: str) -> ConsoleProcess:
    port = devstack.free_port()
    env = {**env, "WORKERS_CONSOLE_HOST": "127.0.0.1", "WORKERS_CONSOLE_PORT": str(port),
           **extra}
    out = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "workers", "console"], env=env, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        devstack.wait_for_port(port, proc=proc)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    return ConsoleProcess(proc, port, log_path)
