"""A real `workers links serve` process for tests: started on a free loopback port, stopped by
its PID."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import devstack


@dataclass
class API:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_api(env: dict[str, str], log_path: Path, **extra: str) -> API:
    port = devstack.free_port()
    env = {**env, "WORKERS_LINKS_API_HOST": "127.0.0.1", "WORKERS_LINKS_API_PORT": str(port),
           **extra}
    out = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "workers", "links", "serve"], env=env,
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        devstack.wait_for_port(port, proc=proc)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    return API(proc, port, log_path)
