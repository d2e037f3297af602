"""A running daemon's /metrics and /health endpoint."""

import json
import urllib.error
import urllib.request

import pytest

import devstack
from helpers import log_events, start_daemon, wait_until
from workers.runtime.health import port_for, serve
from workers.runtime.liveness import Lanes


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and 'queue="post-sent"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def base_port() -> int:
    # post-sent's process 3 listens at base + 3: a port found free just now (a fixed block
    # of ports could be any other test's connection's at that moment)
    return devstack.free_port() - 3


def test_metrics_show_what_the_daemon_processed(env, queues, prefix, sqs, tmp_path, base_port):
    env = {**env, "WORKERS_METRICS_PORT": str(base_port), "WORKERS_PROCESS_NUM": "3"}
    source = queues[prefix + "post-sent"]
    for i in range(5):
        sqs.send_message(QueueUrl=source, MessageBody=json.dumps(
            {"update_id": f"u{i}", "profile_id": "p", "url": "https://a.com"}))
    sqs.send_message(QueueUrl=source, MessageBody="not json")
    proc = start_daemon("post-sent", env, tmp_path / "d.log")
    try:
        url = f"http://127.0.0.1:{port_for(base_port, 'post-sent', 3)}"

        def settled() -> str | None:
            """The metrics once all six are handled and none is in hand. SQS delivers at least
            once: under load a message can come back before its delete, and is counted again."""
            assert proc.poll() is None, (tmp_path / "d.log").read_text()[-3000:]
            text = get(url + "/metrics")[1]
            done = (metric(text, "workers_messages_succeeded_total")
                    + metric(text, "workers_messages_dead_lettered_total"))
            handled = metric(text, "workers_handler_duration_seconds_count")
            received = metric(text, "workers_messages_received_total")
            return text if done >= 6 and done == handled == received else None

        text = wait_until(settled, timeout=30)
        assert metric(text, "workers_messages_succeeded_total") >= 5
        assert metric(text, "workers_messages_dead_lettered_total") >= 1
        status, body = get(url + "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        proc.kill()
        proc.wait()


def test_a_taken_port_costs_the_metrics_not_the_daemon(env, queues, tmp_path):
    taken = devstack.redis_server().start()  # something already listens there
    try:
        env = {**env, "WORKERS_METRICS_PORT": str(taken.port), "WORKERS_PROCESS_NUM": "0"}
        proc = start_daemon("post-sent", env, tmp_path / "d.log")
        wait_until(lambda: any(e["event"] == "metrics.unavailable"
                               for e in log_events(tmp_path / "d.log")), timeout=30)
        assert proc.poll() is None
        proc.kill()
        proc.wait()
    finally:
        taken.discard()


def test_ports_differ_across_queues_and_processes():
    ports = {port_for(9100, q, n) for q in ("post-sent", "analytics", "push", "email")
             for n in range(10)}
    assert len(ports) == 40


def test_health_is_503_once_any_lane_is_past_twice_the_long_poll():
    # Given two lanes of a daemon polling every 20 s, on a clock the test moves
    now = [1000.0]
    lanes = Lanes(2, wait_seconds=20, clock=lambda: now[0])
    port = devstack.free_port()
    server = serve(port, lanes.health)
    try:
        # Then it is healthy from the start, before any poll
        assert get(f"http://127.0.0.1:{port}/health")[0] == 200
        # When lane 0 keeps polling and lane 1 does not for just over 40 s
        now[0] += 30
        lanes.polling(0)
        assert get(f"http://127.0.0.1:{port}/health")[0] == 200
        now[0] += 10.5
        lanes.polling(0)
        status, body = get(f"http://127.0.0.1:{port}/health")
        assert status == 503 and json.loads(body) == {
            "status": "stale", "stale_lanes": [1], "seconds_since_poll": 40.5}
        # ... and a lane pausing on purpose (every peer down) is not stale during its pause
        lanes.polling(1)
        lanes.pausing(1, 30)
        now[0] += 60
        lanes.polling(0)
        assert get(f"http://127.0.0.1:{port}/health")[0] == 200
        lanes.ended(0)
        assert json.loads(get(f"http://127.0.0.1:{port}/health")[1])["stale_lanes"] == [0]
    finally:
        server.shutdown()


def test_a_lane_whose_every_step_fails_is_stale_after_twice_the_long_poll():
    # Given a lane polling every 20 s, on a clock the test moves
    now = [1000.0]
    lanes = Lanes(1, wait_seconds=20, clock=lambda: now[0])
    lanes.polling(0)
    # When each of its steps fails, a second apart, though it keeps beginning receives
    failing_for = []
    for _ in range(42):
        now[0] += 1
        lanes.polling(0)
        failing_for.append(lanes.failed(0))
        lanes.pausing(0, 1)
    # Then it is stale once twice the long poll has passed since its first failing step began,
    # and the lane is told how long it has been failing
    assert lanes.health()[0] is False
    assert failing_for[:41] == [None] * 41 and failing_for[-1] == 41
    # ... and one good step makes it live again
    now[0] += 1
    lanes.polling(0)
    lanes.succeeded(0)
    assert lanes.health()[0] is True
