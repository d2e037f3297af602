"""A real `workers console` process for tests, on a free loopback port, stopped by its PID; and
the users it lets in (written by `workers console adduser`, as an operator would)."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests
from argon2 import PasswordHasher

import devstack
from workers.console import access

OPERATOR, VIEWER = ("olga", "operator-pass-1"), ("victor", "viewer-pass-1")
# Cheap argon2id parameters (each hash carries its own): the tests sign in often, and the
# defaults cost a second of CPU on a loaded machine. `workers console adduser` is tested
# with the defaults in tests/test_console_live.py.
QUICK = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def add_users(path: str | Path) -> None:
    """The operator and the viewer of the tests, in the users file at ``path``."""
    for (name, password), role in ((OPERATOR, "operator"), (VIEWER, "viewer")):
        access.add_user(path, name, role, password, QUICK)


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
