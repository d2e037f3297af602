"""`make bench`'s read part in its quick mode: one `links serve` process under wrk, paced and
flat out, beside redis-benchmark's HGET, then a fresh process under each hostile client;
every answer a 200, every figure a sane number, and everything it started stopped. No timing
is asserted: that depends on the machine."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from helpers import REPO


def sane(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_the_read_part_runs_in_quick_mode_and_reports_sane_figures(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench.py"), "--quick",
                           "--only", "read", "--json-out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(Path(out).read_text())
    read = result["read_api"]
    assert read["urls"] == 20_000 and read["errors"] == 0
    for run in ("throughput", "paced"):
        figures = read[run]
        assert figures["requests"] > 0 and figures["socket_errors"] == 0, figures
        for name in ("requests_per_s", "p50_ms", "p99_ms"):
            assert sane(figures[name]), (run, name, figures)
        assert figures["p50_ms"] <= figures["p99_ms"], figures
    assert sane(read["throughput"]["server_cpu_us_per_request"])
    assert set(read["hostile"]) == {"pipeliner", "endless_header", "padded_urls"}
    for kind, run in read["hostile"].items():
        assert sane(run["rest_mib"]) and run["peak_mib"] >= run["rest_mib"], (kind, run)
        assert run["other_requests"] > 0 and run["hostile_total"] > 0, (kind, run)
    assert list(read["servers"]) == ["granian"]  # --quick: ours alone
    assert sane(read["redis_benchmark"]["requests_per_s"])
    assert {g["met"] for g in read["goals"].values()} <= {True, False}
    assert "read API (one `links serve` process" in proc.stderr
    assert "redis-benchmark, the same HGET" in proc.stderr
    assert "granian (hyper), RSGI: ours" in proc.stderr
    # redis-server, the process under load, and one fresh process for each hostile client
    assert result["still_running"] == [] and len(result["started_pids"]) == 5
