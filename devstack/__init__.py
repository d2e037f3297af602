"""Local stand-ins for the real stack, each a real process on a free loopback port:
moto's server (SQS, S3, SNS, SES over HTTP), redis-server, the social networks' stand-ins
(``networks/``) and, for the bench, ministack (an SQS much faster than moto's). Used by
``make run``, the tests and the bench.

Not part of the product: this package sits beside ``workers/`` in the checkout, and the wheel
leaves it out. The tests find it through pytest's ``pythonpath``, bin/ and bench/ scripts put
the checkout on ``sys.path``, and the stand-ins started as ``python -m devstack...`` get it on
``PYTHONPATH`` (``module_env``)."""

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

# The checkout that holds this package (it is not installed).
CHECKOUT = Path(__file__).resolve().parent.parent
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
            name = str(proc.args[0])  # type: ignore[index]  # every caller passes a list of str
            raise RuntimeError(f"{name} exited with {proc.returncode} before listening")
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
    workdir: Path | None = None  # scratch space of its own, removed once it has stopped
    env: dict[str, str] | None = None  # its environment, when not ours
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "Service":
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=self.env)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stops the process; ``start`` may run it again, on the same port and files."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def discard(self) -> None:
        """Stops it for good, and removes its scratch space."""
        self.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def module_env() -> dict[str, str]:
    """Our environment with the checkout first on PYTHONPATH: what a ``python -m devstack.X``
    process needs to import this package, which is not installed."""
    path = os.pathsep.join(filter(None, (str(CHECKOUT), os.environ.get("PYTHONPATH"))))
    return {**os.environ, "PYTHONPATH": path}


def moto_server(port: int | None = None, log_path: Path | None = None) -> Service:
    port = port or free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return Service("moto", argv, port, log_path)


def networks_server(accounts: Path | None = None, port: int | None = None,
                    log_path: Path | None = None, extra: Sequence[str] = ()) -> Service:
    """The stand-ins of X, Facebook and LinkedIn on one port (``devstack.networks``),
    driven through ``networks.Control``; ``accounts`` is a JSON file (default: samples)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "devstack.networks", "--port", str(port), *extra]
    if accounts is not None:
        argv += ["--accounts", str(accounts)]
    return Service("networks", argv, port, log_path, env=module_env())


def ministack_server(venv: Path, port: int | None = None,
                     log_path: Path | None = None) -> Service:
    """ministack (PyPI) from its own virtualenv ``venv``: the bench's fast SQS stand-in, whose
    ceiling is well above moto's (moto's SQS does work linear in a queue's depth on every
    call). It also emulates S3 and the rest, but only its SQS is used here."""
    port = port or free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1",
           # A log line per request would cost it more than answering.
           "LOG_LEVEL": "WARNING"}
    return Service("ministack", [str(venv / "bin" / "ministack")], port, log_path, env=env)


def redis_server(port: int | None = None, log_path: Path | None = None,
                 extra: Sequence[str] = ()) -> Service:
    binary = _binary("redis-server")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="workers-redis-")
    # A replica's first sync starts at once, not after the default 5 s of waiting for others.
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir, "--repl-diskless-sync-delay", "0", *extra]
    return Service("redis", argv, port, log_path, Path(workdir))


def redis_replica(primary_port: int, log_path: Path | None = None,
                  extra: Sequence[str] = ()) -> Service:
    """A redis-server replicating the one on ``primary_port``."""
    return redis_server(log_path=log_path,
                        extra=("--replicaof", "127.0.0.1", str(primary_port), *extra))


def redis_sentinel(primary_port: int, service: str = "counters",
                   log_path: Path | None = None) -> Service:
    """A Redis Sentinel watching the primary on ``primary_port`` as ``service``; a quorum of
    one, and a primary it cannot reach for a second is failed over."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="workers-sentinel-"))
    conf = workdir / "sentinel.conf"  # Sentinel rewrites its file as it learns: its own copy
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                    f"sentinel monitor {service} 127.0.0.1 {primary_port} 1\n"
                    f"sentinel down-after-milliseconds {service} 1000\n"
                    f"sentinel failover-timeout {service} 10000\n")
    return Service("sentinel", [_binary("redis-server"), str(conf), "--sentinel"], port,
                   log_path, workdir)


@dataclass
class Cluster:
    """A Redis Cluster of redis-servers in cluster mode: masters, and ``replicas`` of each."""

    nodes: list[Service]
    replicas: int = 0

    @property
    def url(self) -> str:
        """REDIS_URL for it: any node; the client finds the others."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> "Cluster":
        try:
            for node in self.nodes:
                node.start()
            subprocess.run([_binary("redis-cli"), "--cluster", "create",
                            *(f"127.0.0.1:{n.port}" for n in self.nodes),
                            "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                           check=True, capture_output=True, timeout=60)
            self._wait_ok()
            self._wait_synced()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.discard()

    def _wait_ok(self, timeout: float = 30.0) -> None:
        """Until every node says cluster_state:ok (slots assigned and agreed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [subprocess.run([_binary("redis-cli"), "-p", str(n.port), "cluster", "info"],
                                     capture_output=True, text=True, timeout=10).stdout
                      for n in self.nodes]
            if all("cluster_state:ok" in state for state in states):
                return
            time.sleep(0.1)
        raise TimeoutError(f"the cluster is not ok after {timeout}s")


    def _wait_synced(self, timeout: float = 30.0) -> None:
        """Until every replica has made its first sync (a WAIT counts it from then on)."""
        deadline = time.monotonic() + timeout
        while self.replicas and time.monotonic() < deadline:
            states = [subprocess.run([_binary("redis-cli"), "-p", str(n.port), "info",
                                      "replication"], capture_output=True, text=True,
                                     timeout=10).stdout for n in self.nodes]
            if all("role:master" in s or "master_link_status:up" in s for s in states):
                return
            time.sleep(0.1)
        if self.replicas:
            raise TimeoutError(f"the cluster's replicas are not in sync after {timeout}s")


def redis_cluster(masters: int = 3, log_dir: Path | None = None, replicas: int = 0,
                  node_timeout_ms: int = 5000, extra: Sequence[str] = ()) -> Cluster:
    """A local Redis Cluster, as Redis's own tools make one (redis-cli --cluster create).
    ``node_timeout_ms`` is how long a master may be unreachable before its replica takes
    over."""
    return Cluster([redis_server(
        log_path=log_dir / f"redis-cluster-{i}.log" if log_dir else None,
        # The cluster bus port defaults to port + 10000, past 65535 for a high free port.
        extra=("--cluster-enabled", "yes", "--cluster-port", str(free_port()),
               "--cluster-node-timeout", str(node_timeout_ms), *extra))
        for i in range(masters * (1 + replicas))], replicas)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server)")
    return path


def stack_env(moto_port: int, redis_port: int, **extra: str) -> dict[str, str]:
    """The environment that points ``workers`` at the local stack."""
    env = dict(os.environ)
    env.update(FAKE_CREDENTIALS)
    env.update({
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        # Each local stack's read API on a port of its own: fleets started side by side (the
        # tests') never contend for 8080; `make run` sets 8080 itself.
        "WORKERS_LINKS_API_PORT": str(free_port()),
    })
    env.update(extra)
    return env
