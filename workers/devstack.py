"""Local stand-ins for the real stack, each a real process on a free loopback port:
moto's server (SQS, S3, SNS, SES over HTTP) and redis-server. Used by ``make run`` and tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

# Credentials moto accepts; real AWS never sees them.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Service:
    """A server process we started, stopped by its PID."""

    name: str
    argv: Sequence[str]
    port: int
    log_path: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "Service":
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def moto_server(port: int | None = None, log_path: Path | None = None) -> Service:
    port = port or free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return Service("moto", argv, port, log_path)


def redis_server(port: int | None = None, log_path: Path | None = None,
                 extra: Sequence[str] = ()) -> Service:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="workers-redis-")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir, *extra]
    return Service("redis", argv, port, log_path)


def stack_env(moto_port: int, redis_port: int, **extra: str) -> dict[str, str]:
    """The environment that points ``workers`` at the local stack."""
    env = dict(os.environ)
    env.update(FAKE_CREDENTIALS)
    env.update({
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
    })
    env.update(extra)
    return env
