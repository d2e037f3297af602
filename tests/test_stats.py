"""`workers stats`: the numbers against moto's server, the scaling advice as pure functions."""

import json
import signal
import subprocess
import sys
import threading

import boto3
import pytest

from helpers import queue_depth, wait_until, workers_cmd
from workers.adapters.sqs import Depth
from workers.ops.stats import (
    QueueSample,
    Sample,
    Sampler,
    drain_rate,
    eta_seconds,
    processes_needed,
    rate_of,
    render,
    report,
)


def test_processes_needed_drain_the_backlog_within_the_target():
    # 100 msgs/s per process for 300 s: 30,000 messages per process
    assert processes_needed(30_000, 300, 100) == 1
    assert processes_needed(30_001, 300, 100) == 2
    assert processes_needed(90_000, 300, 100) == 3
    assert processes_needed(10_000, 60, 50) == 4  # 3,000 per process
    assert processes_needed(0, 300, 100) == 1  # one stays, to pick up what comes
    with pytest.raises(ValueError):
        processes_needed(10, 0, 100)


def test_drain_rate_and_eta_come_from_two_samples():
    assert drain_rate(100, 40, 2.0) == 30.0
    assert drain_rate(40, 100, 2.0) == -30.0  # growing
    assert drain_rate(100, 40, 0.0) is None
    assert eta_seconds(60, 30.0) == 2.0
    assert eta_seconds(60, -30.0) is None and eta_seconds(60, 0.0) is None
    assert eta_seconds(0, None) == 0.0


def sample(at: float, backlog: int | None, processes: int = 0,
           rate: float | None = None) -> Sample:
    depth = Depth(backlog, 0, 0) if backlog is not None else None
    return Sample(1e9 + at, at, [QueueSample("post-sent", "p-post-sent", depth, Depth(2, 1, 0),
                                             42.0, processes, rate)])


def test_the_rate_is_the_mean_of_what_the_registry_says_each_daemon_handled():
    # Three daemons of the fleet handled 100, 50 and 0 msgs/s over their last refresh
    assert rate_of([100.0, 50.0, 0.0]) == (3, 50.0)
    # An idle queue's daemons say nothing about how fast they could go
    assert rate_of([0.0, 0.0]) == (2, None)
    assert rate_of([]) == (0, None)


def test_the_advice_uses_the_rate_the_daemons_measured():
    # Given three daemons in the fleet handling 75 msgs/s each
    before, after = sample(0.0, 5000, 3, 75.0), sample(4.0, 4400, 3, 75.0)
    # Then 4400 messages within 10 s need 6 of them
    [row] = report(after, before, 10, 20)["queues"]
    assert (row["rate_per_process"], row["rate_measured"]) == (75.0, True)
    assert (row["processes"], row["processes_needed"]) == (3, 6)
    assert render(report(after, before, 10, 20)).splitlines()[2].split()[-4:] == [
        "75", "6", "(now", "3)"]
    # And where nothing was handled, --rate stands in
    [idle] = report(sample(4.0, 4400, 3), None, 10, 20)["queues"]
    assert (idle["rate_per_process"], idle["rate_measured"]) == (20, False)


def test_report_measures_the_drain_between_samples_and_advises():
    before, after = sample(0.0, 1000), sample(4.0, 600)
    [first] = report(before, None, 10, 20)["queues"]
    assert (first["drain_per_second"], first["eta_seconds"]) == (None, None)
    assert first["processes_needed"] == 5  # 1000 / (20 × 10)
    [row] = report(after, before, 10, 20)["queues"]
    assert (row["backlog"], row["dlq"], row["oldest_seconds"]) == (600, 3, 42.0)
    assert (row["drain_per_second"], row["eta_seconds"]) == (100.0, 6.0)
    assert row["processes_needed"] == 3  # 600 / (20 × 10)
    table = render(report(after, before, 10, 20))
    assert table.splitlines()[1].split()[:2] == ["QUEUE", "VISIBLE"]
    assert table.splitlines()[2].split() == ["post-sent", "600", "0", "0", "3", "42s", "100",
                                             "6s", "20*", "3"]
    assert "missing" in render(report(sample(0.0, None), None, 10, 20))


def test_stats_json_matches_what_is_in_the_queues(env, sqs, queues, prefix):
    # Given 7 visible in post-sent, 2 of 5 in flight in push, 3 delayed in analytics, 4 dead
    url = {q: queues[prefix + q] for q in ("post-sent", "analytics", "push", "email-dlq")}
    for queue, count, delay in (("post-sent", 7, 0), ("push", 5, 0), ("analytics", 3, 600),
                                ("email-dlq", 4, 0)):
        sqs.send_message_batch(QueueUrl=url[queue], Entries=[
            {"Id": str(i), "MessageBody": "{}", "DelaySeconds": delay} for i in range(count)])
    got = sqs.receive_message(QueueUrl=url["push"], MaxNumberOfMessages=2, VisibilityTimeout=600)
    in_flight = len(got["Messages"])
    # When stats runs
    done = workers_cmd("stats", "--json", "--rate", "1", "--target", "2", env=env)
    # Then each number is what we put there
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    rows = {r["queue"]: r for r in data["queues"]}
    assert [(rows[q]["visible"], rows[q]["in_flight"], rows[q]["delayed"], rows[q]["dlq"])
            for q in ("post-sent", "push", "analytics", "email")] == [
        (7, 0, 0, 0), (5 - in_flight, in_flight, 0, 0), (0, 0, 3, 0), (0, 0, 0, 4)]
    assert rows["post-sent"]["processes_needed"] == 4  # 7 / (1 msg/s × 2 s)
    assert rows["post-sent"]["oldest_seconds"] is None  # moto's CloudWatch has no datapoint
    assert (data["target_seconds"], data["rate_per_process"]) == (2, 1)
    text = workers_cmd("stats", env=env).stdout
    assert "post-sent  7 " in text and "PROCS: processes to drain" in text


def test_stats_shows_cloudwatch_age_of_the_oldest_message(settings, env, queues, prefix):
    cloudwatch = boto3.client("cloudwatch", region_name=settings.region,
                              endpoint_url=settings.endpoint_url)
    cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=[{
        "MetricName": "ApproximateAgeOfOldestMessage", "Value": 123.0, "Unit": "Seconds",
        "Dimensions": [{"Name": "QueueName", "Value": prefix + "post-sent"}]}])
    done = workers_cmd("stats", "--json", env=env)
    rows = {r["queue"]: r for r in json.loads(done.stdout)["queues"]}
    assert (rows["post-sent"]["oldest_seconds"], rows["push"]["oldest_seconds"]) == (123.0, None)


def test_stats_watch_measures_the_drain_and_ends_on_ctrl_c(env, sqs, queues, prefix):
    url = queues[prefix + "post-sent"]
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": "{}"} for i in range(6)])
    proc = subprocess.Popen([sys.executable, "-m", "workers", "stats", "--watch", "0.2",
                             "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["queues"][0]["drain_per_second"] is None  # one sample: no rate yet
        # When 6 messages are handled, a later sample sees the backlog shrink
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
        drains = []
        while not any(d and d > 0 for d in drains):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            drains.append(json.loads(line)["queues"][0]["drain_per_second"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert proc.stderr.read() == ""


def test_stats_explains_itself(env):
    done = workers_cmd("stats", "--help", env=env)
    assert done.returncode == 0 and "--watch [SECONDS]" in done.stdout


def test_stats_measures_the_rate_of_the_fleets_daemons_from_any_host(settings, env, sqs, queues,
                                                                      prefix, daemons,
                                                                      redis_client):
    # Given a daemon on one host, idle at first, and stats on another
    source = queues[prefix + "post-sent"]
    daemons("post-sent", environment={**env, "WORKERS_HOST_NAME": "worker-1"})
    sampler = Sampler(settings.model_copy(update={"host_name": "ops-1"}))

    def rows():
        return {r["queue"]: r for r in report(sampler.sample(), None, 300, 20)["queues"]}

    wait_until(lambda: rows()["post-sent"]["processes"] == 1, timeout=30)
    assert rows()["post-sent"]["rate_measured"] is False  # nothing handled: --rate stands in
    # When events flow
    stop = threading.Event()
    producer = threading.Thread(target=trickle, args=(sqs, source, stop), daemon=True)
    producer.start()
    try:
        # Then the advice rests on the rate the daemon reported; other queues have no daemon
        measured = wait_until(lambda: (r := rows())["post-sent"]["rate_measured"] and r,
                              timeout=60, interval=0.5)
        assert measured["post-sent"]["processes"] == 1
        assert measured["post-sent"]["rate_per_process"] > 0
        assert (measured["analytics"]["processes"], measured["analytics"]["rate_measured"]) == (
            0, False)
        # And the command says the same, from the other host
        done = workers_cmd("stats", "--json", env={**env, "WORKERS_HOST_NAME": "ops-1"})
        assert json.loads(done.stdout)["queues"][0]["processes"] == 1
    finally:
        stop.set()
        producer.join(timeout=60)


def trickle(sqs, url: str, stop: threading.Event) -> None:
    """post-sent events, a few dozen queued at a time, until ``stop``."""
    sent = 0
    while not stop.is_set():
        if queue_depth(sqs, url) > 50:
            stop.wait(0.05)
            continue
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": json.dumps(
            {"update_id": f"u{sent + i}", "profile_id": "p", "url": "https://a.com"})}
            for i in range(10)])
        sent += 10
