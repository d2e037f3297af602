"""Hosts for real: Linux network namespaces, each with a veth pair to the root namespace, where
the tests' moto and redis-server listen. A host runs its own supervisord (bin/workers-supervisord,
inside the namespace), with its own run directory and WORKERS_HOST_NAME; it can be cut off (its
link set down) or die at once (every process in it SIGKILLed, the namespace removed).

Names and addresses are unique per test run (the pid): namespace ``wf<pid>n<i>``, link
``wf<pid>r<i>`` on the root side, addresses 10.231.<pid % 250>.<4i+1> (root) and <4i+2>
(host), a /30 each. Creating them needs root (CAP_NET_ADMIN); where that fails, ``Hosts``
raises ``RigError`` with one line saying why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class RigError(Exception):
    """The namespaces cannot be made here; one line."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=check)


@dataclass
class Host:
    index: int
    run_id: int
    env: dict[str, str] = field(default_factory=dict)
    supervisord: subprocess.Popen | None = None
    run_dir: str = ""

    @property
    def name(self) -> str:
        return f"host-{self.index}"

    @property
    def ns(self) -> str:
        return f"wf{self.run_id}n{self.index}"

    @property
    def link(self) -> str:
        return f"wf{self.run_id}r{self.index}"

    @property
    def peer(self) -> str:
        return f"wf{self.run_id}h{self.index}"

    @property
    def root_ip(self) -> str:
        return f"10.231.{self.run_id % 250}.{4 * self.index + 1}"

    @property
    def host_ip(self) -> str:
        return f"10.231.{self.run_id % 250}.{4 * self.index + 2}"

    def create(self) -> None:
        ip("netns", "add", self.ns)
        ip("link", "add", self.link, "type", "veth", "peer", "name", self.peer)
        ip("link", "set", self.peer, "netns", self.ns)
        ip("addr", "add", f"{self.root_ip}/30", "dev", self.link)
        ip("link", "set", self.link, "up")
        self.exec_ip("addr", "add", f"{self.host_ip}/30", "dev", self.peer)
        self.exec_ip("link", "set", self.peer, "up")
        self.exec_ip("link", "set", "lo", "up")
        self.run_dir = tempfile.mkdtemp(prefix=f"wf{self.index}")  # short: a socket path

    def exec_ip(self, *args: str) -> None:
        ip("netns", "exec", self.ns, "ip", *args)

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def start(self, env: dict[str, str]) -> None:
        """Its supervisord (and so its workers-scale and daemons), in the namespace."""
        self.env = {**env, "WORKERS_RUN_DIR": self.run_dir, "WORKERS_HOST_NAME": self.name}
        log = open(Path(self.run_dir) / "out.log", "ab")
        self.supervisord = subprocess.Popen(
            self.command(str(REPO / "bin" / "workers-supervisord")), env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / "bin" / "workers-supervisorctl"), *args],
                              env=self.env, capture_output=True, text=True, timeout=30)

    def pids(self) -> list[int]:
        found = ip("netns", "pids", self.ns, check=False).stdout.split()
        return [int(p) for p in found]

    def cut(self) -> None:
        """Cut off: its link down, so nothing it sends arrives, and nothing reaches it."""
        ip("link", "set", self.link, "down")

    def reconnect(self) -> None:
        ip("link", "set", self.link, "up")

    def die(self) -> None:
        """The whole host at once: every process in it SIGKILLed, its namespace removed."""
        for _ in range(5):  # supervisord may be spawning as we kill
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        if self.supervisord is not None:
            self.supervisord.wait(timeout=30)
        self.remove()

    def stop(self) -> None:
        """A warm stop of its supervisord (which stops every daemon), then the namespace."""
        if self.supervisord is not None and self.supervisord.poll() is None:
            self.supervisord.send_signal(signal.SIGTERM)
            try:
                self.supervisord.wait(timeout=90)
            except subprocess.TimeoutExpired:
                pass
        self.die()

    def remove(self) -> None:
        ip("netns", "del", self.ns, check=False)  # its end of the pair goes with it
        ip("link", "del", self.link, check=False)

    def discard(self, warm: bool = True) -> None:
        """Stopped (warmly, or killed at once), removed, and its run directory (logs, socket)
        gone."""
        self.stop() if warm else self.die()
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)


class Hosts:
    """``count`` hosts of this run; ``close`` removes every one, whatever happened."""

    def __init__(self, count: int):
        if os.geteuid() != 0:
            raise RigError(f"the fleet's host tests need root to create network namespaces "
                           f"(ip netns add); running as uid {os.geteuid()}")
        self.run_id = os.getpid()
        self.hosts = [Host(i, self.run_id) for i in range(count)]
        try:
            for host in self.hosts:
                host.create()
        except (subprocess.CalledProcessError, OSError) as exc:
            self.close()
            why = getattr(exc, "stderr", "") or str(exc)
            raise RigError(f"cannot create network namespaces ({' '.join(why.split())}); "
                           "the fleet's host tests need CAP_NET_ADMIN and iproute2") from None

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def close(self, warm: bool = True) -> None:
        for host in self.hosts:
            host.discard(warm)
