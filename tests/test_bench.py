"""`make bench` in its quick mode: it runs end to end, reports every figure, counts every
message and stops everything it started; so do the peers (Celery, Dramatiq, sqs-workers, from
bench/.venv-peers, which the bench builds on first use), the boto3 loops and moto's bare loop,
direct to moto and behind the delaying proxy; and ours and the bare loop on the fast SQS
stand-in (ministack, from `make standin`), or that row skipped, and said so, without it. No
timing or ratio is asserted: those depend on the machine, and the project does not gate on
them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

CONSUMERS = ("ours", "batch", "naive", "celery", "celery-prefork", "dramatiq", "sqsworkers",
             "bare")
PEERS = ("celery", "celery-prefork", "dramatiq", "sqsworkers")
FIGURES = ("msgs_per_s", "sqs_requests_per_msg", "cpu_s_per_1000_msgs", "peak_rss_mb",
           "redis_bytes_per_url", "redis_bytes_per_idempotency_key", "backfill_records_per_s",
           "backfill_records_per_s_batch_objects", "cluster_pairs_per_s",
           "cluster_daemon_msgs_per_s")


def sane(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# The quick run is one process of minutes (every part, small), done once for the module, on one
# pytest worker while the other runs the rest of the suite.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench.py"), "--quick",
                           "--json-out", str(out)],
                          # Building the peers' virtualenv on a fresh clone is part of it.
                          capture_output=True, text=True, timeout=840, cwd=REPO,
                          env={k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(Path(out).read_text()), proc.stdout


def test_every_figure_has_a_sane_value_for_ours_and_the_baseline(quick_run):
    result, _ = quick_run
    for name in FIGURES:
        row = result["figures"][name]
        assert sane(row["ours"]), (name, row)
        assert sane(row["naive"]), (name, row)
        assert sane(row["ratio"]), (name, row)


def test_every_message_is_counted_and_deleted_by_both_consumers(quick_run):
    result, _ = quick_run
    assert result["all_counted"] is True
    for kind in ("ours", "naive"):
        run = result["throughput"][kind]
        assert run["messages"] == result["params"]["messages"] == 200
        assert run["all_counted"] is True
        assert run["counted"]["wrong"] == 0
        assert run["counted"]["left_in_queue"] == run["counted"]["dead_letters"] == 0
        assert run["deleted"] >= run["messages"]
        assert run["sqs_requests_by_action"]["ReceiveMessage"] > 0


def test_the_table_names_each_figure_and_its_goal(quick_run):
    _, table = quick_run
    for label in ("throughput", "SQS requests / msg", "CPU s / 1000 msgs", "peak RSS",
                  "bytes / counted URL", "bytes / idempotency mark"):
        assert label in table
    assert "≥ 10× naive" in table and "≤ 0.21" in table and "≤ 40" in table
    assert "backfill records/s" in table and "≥ 250,000" in table


def test_both_backfills_rebuild_the_same_distinct_pairs(quick_run):
    result, _ = quick_run
    for name in ("large_objects", "batch_objects"):
        run = result["backfill"][name]
        assert run["same_pairs"] is True and run["ours"]["pairs"] > 0, (name, run)
        assert run["objects"] * run["records_per_object"] >= run["records"]


def test_it_stops_everything_it_started(quick_run):
    result, _ = quick_run
    # moto (twice), redis-server (four times, three more for the cluster), a proxy and a
    # consumer (and its children) per scenario, the count reader, and the cluster figure's
    # counting processes.
    assert len(result["started_pids"]) >= 2 * 2 * len(CONSUMERS) + 2 + 9
    assert result["still_running"] == []


def test_the_cluster_figure_counts_every_pair_on_both(quick_run):
    result, _ = quick_run
    for target in ("single", "cluster"):
        run = result["cluster"][target]
        assert run["updates"] == 4000 and run["pairs"] > 7900, run
        assert run["pairs_in_counters"] == run["pairs"], run  # each pair counted once
        fleet = run["daemons"]
        assert fleet["daemons"] == 4 and fleet["messages"] == 200, fleet
        assert fleet["wrong_counts"] == 0 and sane(fleet["msgs_per_s"]), fleet


@pytest.mark.parametrize("flow", ["throughput", "throughput_delayed"])
def test_every_consumer_counts_every_message_direct_and_behind_the_delay(quick_run, flow):
    result, _ = quick_run
    messages = {"throughput": 200, "throughput_delayed": 60}[flow]
    assert set(result[flow]) == set(CONSUMERS)
    for kind, run in result[flow].items():
        assert run["messages"] == messages, kind
        assert run["all_counted"] is True, kind
        assert run["counted"]["wrong"] == 0, kind
        assert run["counted"]["left_in_queue"] == run["counted"]["dead_letters"] == 0, kind
        assert run["deleted"] >= messages, kind
        assert run["proxy_delay_ms"] == (10 if flow == "throughput_delayed" else 0), kind
        # Counting consumers were checked link by link, on the same seeded events (1 to 3
        # links each); the bare loop has no handler.
        ours = result[flow]["ours"]["counted"]["pairs"]
        assert run["counted"]["pairs"] == (0 if kind == "bare" else ours), kind
    assert messages <= result[flow]["ours"]["counted"]["pairs"] <= 3 * messages


@pytest.mark.parametrize("flow", ["direct", "delayed"])
def test_every_consumer_has_its_four_figures_and_a_ratio_to_ours(quick_run, flow):
    result, _ = quick_run
    rows = result["comparison"][flow]
    for kind in CONSUMERS:
        row = rows[kind]
        for name in ("msgs_per_s", "sqs_requests_per_msg", "cpu_s_per_1000_msgs",
                     "peak_rss_mb"):
            assert sane(row[name]), (kind, name, row)
            assert sane(row["ours_times_better"][name]), (kind, name, row)
        assert row["processes"] >= row["config"]["processes"] >= 1, (kind, row)


def test_on_the_sqs_standin_ours_is_measured_beside_its_bare_ceiling(quick_run):
    result, table = quick_run
    standin = result["standin"]
    if "skipped" in standin:  # not installed (`make standin`; `make test` does it first)
        assert f"on the SQS stand-in: skipped: {standin['skipped']}" in table
        pytest.skip(standin["skipped"])
    runs = standin["runs"]
    assert set(runs) == {"bare", "ours"}
    for kind, run in runs.items():
        assert run["sqs_server"] == "ministack", kind
        assert run["messages"] == 200 and run["deleted"] >= 200, kind
        assert run["all_counted"] is True and run["counted"]["wrong"] == 0, kind
        assert run["counted"]["left_in_queue"] == run["counted"]["dead_letters"] == 0, kind
    assert runs["ours"]["counted"]["pairs"] == result["throughput"]["ours"]["counted"]["pairs"]
    ceiling = standin["ceiling"]["standin"]
    for name in ("bare_msgs_per_s", "ours_msgs_per_s", "ours_share"):
        assert sane(ceiling[name]), (name, ceiling)
    assert sane(standin["ceiling"]["standin_over_moto_ceiling"])
    assert f"on the SQS stand-in ({standin['server']}): bare loop" in table
    assert "bare loop: ministack's ceiling" in table
    for kind in ("bare", "ours"):
        assert sane(result["comparison"]["standin"][kind]["msgs_per_s"]), kind


def test_each_peer_ran_from_its_own_virtualenv_and_says_how_it_was_set(quick_run):
    result, _ = quick_run
    versions = result["params"]["peer_versions"]
    assert {"celery", "kombu", "dramatiq", "dramatiq_sqs", "sqs-workers"} <= set(versions)
    for kind in PEERS:
        assert result["throughput"][kind]["config"], kind
    # Each library's own encoding reached its worker: Celery and Dramatiq delete one by one,
    # sqs-workers in batches, as their code does.
    assert result["throughput"]["celery"]["sqs_requests_by_action"]["DeleteMessage"] >= 200
    assert result["throughput"]["sqsworkers"]["sqs_requests_by_action"]["DeleteMessageBatch"]


def test_counts_are_read_from_a_second_process_while_ours_drains(quick_run):
    result, _ = quick_run
    reads = result["read_latency"]
    assert reads["reads"] > 0 and 0 < reads["p50_ms"] <= reads["p99_ms"], reads
    assert reads["while"]["all_counted"] is True


def test_the_tables_name_every_consumer_and_every_goal(quick_run):
    result, table = quick_run
    for label in ("boto3 batch loop", "boto3 naive loop", "Celery", "Dramatiq", "sqs-workers",
                  "moto's ceiling", "+10 ms a call", "ahead of every peer",
                  "less CPU per message", "emulator's ceiling", "p50", "p99"):
        assert label in table, label
    assert set(result["goals"]) >= {"direct_fastest", "delayed_fastest", "direct_least_cpu",
                                    "direct_requests", "direct_ceiling"}


def test_a_hot_links_counting_cost_is_measured_after_each_number_of_shares(quick_run):
    result, table = quick_run
    hot = result["hot_url"]
    assert [r["shares"] for r in hot["runs"]] == [1_000, 20_000]
    for run in hot["runs"]:
        assert sane(run["usec_per_new_count"]) and sane(run["usec_per_redelivery"])
        assert run["window_type"] == "hash"  # a link this shared has its marks in a hash
    assert sane(hot["ratio_last_to_first"])
    assert "hot link: Redis time per count" in table


def test_each_way_of_running_redis_in_production_is_measured_per_message(quick_run):
    result, table = quick_run
    setups = result["redis_production"]
    assert set(setups) == {"no persistence", "AOF everysec", "AOF always", "replica, no WAIT",
                           "replica, WAIT 1", "AOF always + replica, WAIT 1"}
    for name, row in setups.items():
        assert sane(row["ms_per_message"]), name
    assert "Redis in production, ms per message" in table


def test_publish_is_measured_beside_the_hand_written_publisher_and_posts_each_once(quick_run):
    result, _ = quick_run
    [part] = result["publish"]
    for kind in ("ours", "naive"):
        run = part["runs"][kind]
        assert run["each_once"] is True, (kind, run)
        for figure in ("posts_per_second", "cpu_ms_per_post", "redis_round_trips_per_post",
                       "redis_commands_per_post"):
            assert sane(run[figure]), (kind, figure, run)
    assert part["runs"]["ours"]["create_calls_per_post"] == 1.0  # no fault: one call a post
    assert sane(part["ratios"]["posts_per_second"]) and sane(part["ratios"]["cpu_ms_per_post"])


def test_the_soak_counts_every_message_and_reports_the_growth_after_warm_up(quick_run):
    result, _ = quick_run
    soak = result["soak"]
    if "skipped" in soak:  # no stand-in: `make test` installs it first
        pytest.skip(soak["skipped"])
    assert soak["run"]["all_counted"] is True and soak["run"]["deleted"] >= soak["messages"]
    growth = soak["growth"]
    assert growth["rss_at_end_mib"] > 0 and growth["warm_up_messages"] > 0
    assert len(soak["samples"]) >= 2


def test_the_tracing_part_measures_ours_before_off_and_on_and_exports_spans(quick_run):
    result, _ = quick_run
    tracing = result["tracing"]
    assert tracing["all_counted"] is True
    for mode in ("off", "on"):
        assert all(sane(cpu) for cpu in tracing["cpu_s_per_1000_msgs"][mode])
    assert sane(tracing["ratio"])
    # the code before tracing too, beside off, in the same run: from the git history, which
    # a shallow clone lacks (the part then says so, and measures off and on only)
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO,
                             capture_output=True, text=True).stdout.strip() == "true"
    if shallow:
        assert tracing["before"] is None and tracing["before_missing"]
    else:
        assert tracing["before_missing"] is None and len(tracing["before_commit"]) == 40
        assert all(sane(cpu) for cpu in tracing["cpu_s_per_1000_msgs"]["before"])
        assert sane(tracing["off_over_before"])
    # the "on" runs exported to the bench's receiver
    assert tracing["spans_exported"] > 0
