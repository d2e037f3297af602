"""The peers' virtualenv, bench/.venv-peers: Celery, Dramatiq and sqs-workers, with the
project installed beside them so their tasks run our counting code. Never the project's own
dependencies: built by the bench on first use, reused while what it was built from holds."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV = BENCH_DIR / ".venv-peers"
PEERS_DIR = BENCH_DIR / "peers"
# Pinned: a figure is only comparable with the next run's if the peers are the same.
REQUIREMENTS = ("celery[sqs]==5.7.0", "dramatiq==2.2.1", "dramatiq_sqs==0.4.4",
                "sqs-workers==0.7.3")
DISTRIBUTIONS = ("celery", "kombu", "dramatiq", "dramatiq_sqs", "sqs-workers", "boto3")
STAMP = VENV / ".bench-stamp"
INSTALL_TIMEOUT = 600


def python() -> Path:
    return VENV / "bin" / "python"


def _fingerprint() -> str:
    """Rebuilt when the pins, the project's own dependencies or the checkout's place change
    (the project is installed editable, so a clone elsewhere needs its own)."""
    digest = hashlib.sha256()
    for part in (*REQUIREMENTS, str(REPO), sys.version, (REPO / "setup.cfg").read_text()):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def ensure(log=print) -> Path:
    """The peers' python, building the virtualenv first if it is missing or stale. A lock
    keeps two benches (a test run and `make bench`) from building it at once."""
    BENCH_DIR.joinpath(".venv-peers.lock").touch()
    with open(BENCH_DIR / ".venv-peers.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        want = _fingerprint()
        if STAMP.exists() and STAMP.read_text() == want and python().exists():
            return python()
        log(f"peers: building {VENV.relative_to(REPO)} ({', '.join(REQUIREMENTS)})...")
        shutil.rmtree(VENV, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(VENV)])
        _run([str(python()), "-m", "pip", "install", "-q", *REQUIREMENTS, "-e", str(REPO)])
        STAMP.write_text(want)
        return python()


def versions() -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))")
    out = subprocess.run([str(python()), "-c", code, *DISTRIBUTIONS], capture_output=True,
                         text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def encode(kind: str, bodies: list[str]) -> list[dict]:
    """The events as ``kind``'s library would enqueue them (peers/peer_encode.py, run in
    the peers' virtualenv): SendMessageBatch entries without their Id."""
    proc = subprocess.run([str(python()), str(PEERS_DIR / "peer_encode.py"), kind],
                          input="\n".join(bodies) + "\n", capture_output=True, text=True,
                          timeout=300, cwd=PEERS_DIR)
    if proc.returncode != 0:
        raise RuntimeError(f"encoding for {kind} failed: {proc.stderr[-2000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... failed:\n{proc.stderr[-3000:]}")
