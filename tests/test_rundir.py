"""The run directory and the scale file: private, never written through a planted symlink."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import REPO, workers_cmd
from workers import QUEUES
from workers.core.settings import Settings
from workers.ops.fleet import set_wanted
from workers.ops.rundir import RunDirError, ensure_private, write_json
from workers.ops.scale import Scaler


class FakeSupervisor:
    """supervisord's XML-RPC interface, in memory: two stopped slots per queue."""

    def __init__(self):
        self.state = {(q, f"{q}_{i:02d}"): "STOPPED" for q in QUEUES for i in range(2)}
        self.supervisor = SimpleNamespace(getAllProcessInfo=self.all, startProcess=self.start,
                                          stopProcess=self.stop)

    def all(self):
        return [{"group": g, "name": n, "statename": s} for (g, n), s in self.state.items()]

    def start(self, name, wait):
        self.state[tuple(name.split(":"))] = "RUNNING"

    def stop(self, name, wait):
        self.state[tuple(name.split(":"))] = "STOPPED"


@pytest.fixture
def planted(tmp_path) -> Path:
    """Where another user's symlink points: a directory we must never write into."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    return target


def test_scale_refuses_a_run_dir_that_is_a_symlink_and_writes_nothing(tmp_path, planted):
    # Given the run directory's name taken by a symlink to someone else's directory
    run_dir = tmp_path / "run"
    run_dir.symlink_to(planted)
    # When `workers scale` is asked to remember a count
    with pytest.raises(RunDirError, match="it is a symlink"):
        Scaler(Settings(run_dir=str(run_dir)), FakeSupervisor())
    # Then nothing was written through it
    assert list(planted.iterdir()) == []


def test_the_cli_refuses_a_symlinked_run_dir_in_one_line(env, tmp_path, planted):
    run_dir = tmp_path / "run"
    run_dir.symlink_to(planted)
    done = workers_cmd("scale", env={**env, "WORKERS_RUN_DIR": str(run_dir)})
    assert done.returncode == 1
    assert done.stderr == f"error: refusing run directory {run_dir}: it is a symlink\n"
    assert list(planted.iterdir()) == []


def test_a_planted_scale_file_symlink_is_refused(env, tmp_path, planted):
    run_dir = ensure_private(tmp_path / "run")
    (run_dir / "scale.json").symlink_to(planted / "scale.json")
    (planted / "scale.json").write_text('{"post-sent": 9}')
    done = workers_cmd("scale", env={**env, "WORKERS_RUN_DIR": str(run_dir),
                                     "WORKERS_HOST_NAME": "new-host"})  # no counts in Redis
    assert done.returncode == 1
    assert done.stderr == f"error: refusing to read {run_dir}/scale.json: it is a symlink\n"
    with pytest.raises(RunDirError, match="it is a symlink"):
        write_json(run_dir / "scale.json", {"post-sent": 1})
    assert (planted / "scale.json").read_text() == '{"post-sent": 9}'


def test_the_scale_file_is_never_written_through_a_planted_temporary(tmp_path, planted,
                                                                     redis_client, redis_url):
    # Given the name the old code wrote its temporary file to, planted as a symlink
    run_dir = ensure_private(tmp_path / "run")
    (run_dir / "scale.tmp").symlink_to(planted / "victim")
    # When workers-scale reads a count from Redis (and keeps it for a start without Redis)
    set_wanted(redis_client, "h1", "post-sent", 1)
    settings = Settings(run_dir=str(run_dir), redis_url=redis_url, host_name="h1")
    Scaler(settings, FakeSupervisor(), timeout=5).wanted()
    # Then it is in the scale file, and nothing went through the symlink
    assert json.loads((run_dir / "scale.json").read_text())["post-sent"] == 1
    assert not (run_dir / "scale.json").is_symlink()
    assert list(planted.iterdir()) == []


def test_a_run_dir_others_may_write_to_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(RunDirError, match="writable by group or others"):
        ensure_private(shared)


def test_the_default_run_dir_is_one_per_user_and_created_private(tmp_path):
    assert Settings().run_dir == f"/tmp/workers-{os.getuid()}"
    assert Settings.from_env({}).run_dir == f"/tmp/workers-{os.getuid()}"
    made = ensure_private(tmp_path / "a" / "run")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


def supervisorctl(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "bin" / "workers-supervisorctl"), "pid"],
                          env={"PATH": os.environ["PATH"], "WORKERS_RUN_DIR": str(run_dir)},
                          capture_output=True, text=True, timeout=30)


def test_supervisor_env_refuses_a_symlinked_run_dir_before_supervisord_writes(tmp_path,
                                                                              planted):
    run_dir = tmp_path / "run"
    run_dir.symlink_to(planted)
    done = supervisorctl(run_dir)
    assert done.returncode == 1
    assert done.stderr == f"error: refusing run directory {run_dir}: it is a symlink\n"
    assert list(planted.iterdir()) == []


def test_supervisor_env_creates_the_run_dir_private_and_refuses_a_shared_one(tmp_path):
    fresh = tmp_path / "fresh" / "run"
    supervisorctl(fresh)  # supervisord is not running: only the directory matters here
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    done = supervisorctl(shared)
    assert done.returncode == 1 and "writable by group or others" in done.stderr
