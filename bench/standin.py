"""The fast SQS stand-in's virtualenv, bench/.sqs-standin: ministack, pinned, installed apart
from the project (it is not one of its dependencies) by `make standin`, which `make bench` and
`make test` depend on. `python bench/standin.py` installs it; the bench only looks for it.

Why ministack and not local-aws-sqs (npm, on Node), the first candidate: local-aws-sqs 2.0.2
ignores ReceiveMessage's ``MessageSystemAttributeNames`` (what boto3 sends now in place of the
deprecated ``AttributeNames``), so our daemon never sees a message's receive count; it counts
every ChangeMessageVisibility as a receive, so a message our heartbeat or backoff touches goes
to its DLQ early (maxReceiveCount 3: received twice, then dead-lettered); and a receive with no
wait takes 10+ ms, which would make it the thing measured."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".sqs-standin"
# Pinned: a figure is only comparable with the next run's if the stand-in is the same.
REQUIREMENT = "ministack==1.5.33"
STAMP = VENV / ".bench-stamp"
INSTALL_TIMEOUT = 600


def installed() -> bool:
    """Installed, and from the pin this checkout names."""
    return STAMP.exists() and STAMP.read_text() == _fingerprint() and (
        VENV / "bin" / "ministack").exists()


def missing_reason() -> str:
    return f"the SQS stand-in ({REQUIREMENT}) is not installed in {VENV}: run `make standin`"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (REQUIREMENT, sys.version):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def ensure(log=print) -> Path:
    """The virtualenv, built first if it is missing or stale. A lock keeps two benches (a test
    run and `make bench`) from building it at once."""
    BENCH_DIR.joinpath(".sqs-standin.lock").touch()
    with open(BENCH_DIR / ".sqs-standin.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():
            return VENV
        log(f"standin: building {VENV.relative_to(BENCH_DIR.parent)} ({REQUIREMENT})...")
        shutil.rmtree(VENV, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(VENV)])
        _run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", REQUIREMENT])
        STAMP.write_text(_fingerprint())
        return VENV


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... failed:\n{proc.stderr[-3000:]}")


if __name__ == "__main__":
    ensure()
