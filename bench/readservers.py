"""The read API's servers the bench compares, each started as its own process on a free
loopback port:

* ``granian``: `workers links serve` as shipped (workers.web.server);
* ``uvicorn``: the same app (workers.readapi.serve.build_app) on uvicorn with httptools and
  uvloop, the other well-kept candidate: ``python bench/readservers.py uvicorn``;
* ``handwritten``: the hand-written httptools protocol this replaced, `workers links serve`
  of BASELINE_COMMIT, exported from git into the bench's work directory (the product keeps no
  copy of it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import checkout_path  # noqa: F401  (first: devstack and tests/support on sys.path)

# isort: split
import procstat

import devstack

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The last commit serving the read API with our own HTTP/1.1 protocol (issue 22 replaced it).
BASELINE_COMMIT = "abb20ccdad9d2cdd5d00b47a97032916459f42cf"
SERVERS = ("granian", "uvicorn", "handwritten")
DESCRIPTION = {"granian": "granian (hyper), RSGI: ours",
               "uvicorn": "uvicorn, httptools + uvloop, ASGI",
               "handwritten": "hand-written httptools protocol (before)"}


class ServerError(RuntimeError):
    pass


def baseline_tree(workdir: Path) -> Path:
    """``workers/`` as of BASELINE_COMMIT, exported once into ``workdir``."""
    tree = workdir / "baseline"
    if not (tree / "workers").exists():
        archive = subprocess.run(["git", "-C", str(REPO), "archive", BASELINE_COMMIT, "workers"],
                                 capture_output=True, timeout=60)
        if archive.returncode != 0:
            raise ServerError(f"git archive {BASELINE_COMMIT[:8]}: "
                              f"{archive.stderr.decode(errors='replace').strip()[:200]}")
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
                tar.extractall(tree, filter="data")
            else:
                tar.extractall(tree)
    return tree


def start(server: str, redis_port: int, workdir: Path) -> tuple[subprocess.Popen, int]:
    """One process of ``server`` reading the redis-server on ``redis_port``."""
    port = devstack.free_port()
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "WORKERS_LINKS_API_HOST": "127.0.0.1", "WORKERS_LINKS_API_PORT": str(port)}
    argv, cwd = [sys.executable, "-m", "workers", "links", "serve"], None
    if server == "uvicorn":
        argv = [sys.executable, str(Path(__file__).resolve()), "uvicorn"]
    elif server == "handwritten":
        cwd = baseline_tree(workdir)
        env["PYTHONPATH"] = str(cwd)  # before the editable install's finder
    proc = subprocess.Popen(argv, env=env, cwd=cwd,
                            stdout=open(workdir / f"read-api-{server}.log", "ab"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    procstat.remember(proc.pid)
    devstack.wait_for_port(port, proc=proc)
    return proc, port


def run_uvicorn() -> None:
    import uvicorn

    from workers.core.settings import Settings
    from workers.readapi.serve import build_app

    settings = Settings.from_env()
    uvicorn.run(build_app(settings), host=settings.links_api_host,
                port=settings.links_api_port, http="httptools", loop="uvloop",
                lifespan="on", access_log=False, log_level="warning", server_header=False)


if __name__ == "__main__":
    if sys.argv[1:] != ["uvicorn"]:
        sys.exit("usage: readservers.py uvicorn")
    run_uvicorn()
