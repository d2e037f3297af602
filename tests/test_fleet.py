"""The fleet's registry (workers.runtime.registry, workers.ops.fleet) against a real Redis and a
real Redis Cluster: what every process writes, what `workers fleet` and the console read."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import pytest
import redis

from helpers import ON_SINGLE_AND_CLUSTER, queue_depth, wait_until, workers_cmd
from workers.core.settings import Settings
from workers.ops import fleet
from workers.ops.scale import Scaler
from workers.runtime.registry import PROCS, REFRESH_SECONDS, TAG, Registration, entry_key, version

FIGURES = {"last_poll_at": 1_796_000_000.5, "handled": 120, "failed": 3, "dead_lettered": 2,
           "in_flight": 7}


@pytest.fixture
def registrations():
    """Starts Registrations; stops what a test left running."""
    started: list[Registration] = []

    def start(*args, **kwargs) -> Registration:
        registration = Registration(*args, **kwargs).start()
        started.append(registration)
        return registration

    yield start
    for registration in started:
        registration._stop.set()


@ON_SINGLE_AND_CLUSTER
def test_a_process_is_listed_with_its_figures_and_a_warm_stop_removes_it(redis_url,
                                                                         redis_client,
                                                                         registrations):
    # Given a daemon's registration on host h1
    daemon = registrations(redis_url, "h1", "post-sent", queue="post-sent",
                           snapshot=lambda: FIGURES, interval=0.2)
    # Then the registry lists it with every field the SPEC names
    [entry] = wait_until(lambda: fleet.processes(redis_client), timeout=10)
    assert {k: entry[k] for k in ("host", "pid", "program", "queue", "version", *FIGURES)} == {
        "host": "h1", "pid": os.getpid(), "program": "post-sent", "queue": "post-sent",
        "version": version(), **FIGURES}
    assert entry["started_at"] > 0 and entry["stale"] is False
    # When it stops warmly, it is gone at once
    daemon.stop()
    assert fleet.processes(redis_client) == []
    assert not redis_client.exists(entry_key(daemon.id))


@ON_SINGLE_AND_CLUSTER
def test_a_vanished_process_shows_stale_then_drops_out_after_three_refreshes(redis_url,
                                                                             redis_client,
                                                                             registrations):
    # Given a registered process refreshing every 0.3 s
    gone = registrations(redis_url, "h1", "analytics", queue="analytics", interval=0.3)
    wait_until(lambda: fleet.processes(redis_client), timeout=10)
    # Then its entry expires three refreshes after its last, by Redis's clock
    [(member, expiry)] = redis_client.zrange(PROCS, 0, -1, withscores=True)
    seen = float(redis_client.hget(entry_key(gone.id), "seen_at"))
    assert round(expiry - seen, 3) == 0.9
    # When it vanishes (no warm stop: it stops refreshing)
    gone._stop.set()
    # Then it shows stale first, and never as live again; then it drops out
    wait_until(lambda: [e["stale"] for e in fleet.processes(redis_client)] == [True],
               timeout=10, interval=0.02)
    wait_until(lambda: fleet.processes(redis_client) == [], timeout=10, interval=0.02)


def test_redis_away_never_stops_the_refreshes(redis_servers, registrations):
    # Given a registration whose Redis is down
    server = redis_servers()
    url = f"redis://127.0.0.1:{server.port}/0"
    server.stop()
    registration = registrations(url, "h1", "push", queue="push", interval=0.2)
    wait_until(lambda: registration.failing, timeout=20)
    # When Redis is back, the entry is there again without a restart
    server.start()
    client = fleet.connect(url)
    wait_until(lambda: fleet.processes(client), timeout=20)
    assert registration.failing is False


@ON_SINGLE_AND_CLUSTER
def test_hosts_show_wanted_and_running_counts(redis_url, redis_client, registrations):
    # Given two daemons of post-sent and the read API on h1, and push wanted on h2
    for program in ("post-sent", "post-sent", "links-api"):
        registrations(redis_url, "h1", program, queue="" if program == "links-api" else program,
                      interval=0.2)
    fleet.set_wanted(redis_client, "h1", "post-sent", 2)
    fleet.set_wanted(redis_client, "h2", "push", 3)
    # Then each host has its wanted and running counts (the same pid twice is one entry)
    wait_until(lambda: len(fleet.processes(redis_client)) == 2, timeout=10)
    assert fleet.hosts(redis_client) == [
        {"host": "h1", "wanted": {"post-sent": 2}, "running": {"links-api": 1, "post-sent": 1}},
        {"host": "h2", "wanted": {"push": 3}, "running": {}}]
    # And seeding never overwrites a count that was set
    assert fleet.seed_wanted(redis_client, "h2", {"push": 1, "email": 1}) == {"email": 1,
                                                                              "push": 3}


def test_workers_fleet_lists_every_process_by_host(env, redis_url, redis_client, registrations):
    registrations(redis_url, "web-2", "links-api", interval=0.5)
    registrations(redis_url, "worker-1", "post-sent", queue="post-sent",
                  snapshot=lambda: FIGURES, interval=0.5)
    fleet.set_wanted(redis_client, "worker-1", "post-sent", 4)
    wait_until(lambda: len(fleet.processes(redis_client)) == 2, timeout=10)
    # The table: a section per host, its running/wanted counts, a row per process
    text = workers_cmd("fleet", env=env)
    assert text.returncode == 0, text.stderr
    sections = text.stdout.split("\n\n")
    assert [s.splitlines()[0] for s in sections] == [
        "web-2  (running/wanted: none in Redis)",
        "worker-1  (running/wanted: post-sent 1/4)"]
    row = sections[1].splitlines()[2].split()
    assert row[:4] == ["post-sent", "post-sent", str(os.getpid()), version()]
    assert ["120", "3", "2", "7", "live"] == row[-5:]
    # --json: what the console's /api/fleet answers
    data = json.loads(workers_cmd("fleet", "--json", env=env).stdout)
    assert [(p["host"], p["program"]) for p in data["processes"]] == [
        ("web-2", "links-api"), ("worker-1", "post-sent")]
    assert data["hosts"][1] == {"host": "worker-1", "wanted": {"post-sent": 4},
                                "running": {"post-sent": 1}}


def test_workers_fleet_without_redis_says_so_in_one_line(env, redis_servers):
    server = redis_servers()
    server.stop()
    done = workers_cmd("fleet", env={**env, "REDIS_URL": f"redis://127.0.0.1:{server.port}/0"})
    assert done.returncode == 1
    assert done.stderr.startswith("error: Redis is not reachable (")
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_scale_file_stands_in_only_while_redis_is_away_at_start(tmp_path, redis_servers):
    server = redis_servers()
    url = f"redis://127.0.0.1:{server.port}/0"
    settings = Settings(run_dir=str(tmp_path / "run"), redis_url=url, host_name="h1",
                        procs={"post-sent": 2})
    # Given a host whose counts Redis does not have yet: WORKERS_POST_SENT_PROCS, put there
    assert Scaler(settings, rpc=None).wanted()["post-sent"] == 2
    client = fleet.connect(url)
    assert fleet.wanted(client, "h1")["post-sent"] == 2
    # When an operator scales it to 5, then Redis is away as workers-scale starts again
    fleet.set_wanted(client, "h1", "post-sent", 5)
    assert Scaler(settings, rpc=None).wanted()["post-sent"] == 5
    server.stop()
    restarted = Scaler(settings, rpc=None)
    # Then it runs the counts it last read from Redis
    assert restarted.wanted()["post-sent"] == 5 and restarted.source == "file"
    # And once Redis answers, Redis's count wins
    server.start()
    fleet.set_wanted(fleet.connect(url), "h1", "post-sent", 3)
    assert restarted.wanted()["post-sent"] == 3 and restarted.source == "redis"


def test_scaling_a_host_the_fleet_does_not_know_is_refused(redis_url, redis_client):
    fleet.set_wanted(redis_client, "worker-1", "push", 1)
    with pytest.raises(fleet.FleetError, match=r"no host 'wroker-1' in the fleet \(known: "
                                               r"worker-1\)"):
        fleet.scale(redis_url, "wroker-1", "push", 2, timeout=1)
    assert fleet.wanted(redis_client, "wroker-1") is None


class Monitor:
    """Every command a Redis server runs (its MONITOR), with its time and connection."""

    def __init__(self, url: str):
        self.commands: list[dict[str, Any]] = []
        self.error: Exception | None = None  # why it stopped reading, before stop()
        self._stopped = False
        self._monitor = redis.Redis.from_url(url).monitor()
        self._monitor.__enter__()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self._stopped:
            try:
                self.commands.append(self._monitor.next_command())
            except redis.TimeoutError:
                # A quiet spell (nothing runs between two refreshes) timed the read out with
                # nothing half read: MONITOR goes on, and so does the reading (it stopped here
                # once in a clean run, and the test waited for refreshes it no longer saw).
                continue
            except Exception as exc:  # the monitor closed by stop(), or a line it could not parse
                self.error = exc
                return

    def stop(self) -> list[dict[str, Any]]:
        self._stopped = True
        self._monitor.__exit__(None, None, None)
        return list(self.commands)


def bursts(commands: list[dict[str, Any]], gap: float = 1.0) -> list[list[dict[str, Any]]]:
    """Commands grouped by time: a pause longer than ``gap`` begins a new group."""
    groups: list[list[dict[str, Any]]] = []
    for command in commands:
        if not groups or command["time"] - groups[-1][-1]["time"] > gap:
            groups.append([])
        groups[-1].append(command)
    return groups


def test_the_registry_costs_one_redis_call_a_refresh_and_none_on_the_message_path(
        daemons, env, sqs, source, redis_servers):
    # Given a post-sent daemon on a Redis of its own, whose every command is watched
    server = redis_servers()
    url = f"redis://127.0.0.1:{server.port}/0"
    monitor = Monitor(url)
    daemon = daemons("post-sent", "--concurrency", "10", environment={
        **env, "REDIS_URL": url, "WORKERS_METRICS_PORT": "0", "WORKERS_WAIT_SECONDS": "1"})
    # When it handles 200 events, and then three more refreshes pass
    for start in range(0, 200, 10):
        sqs.send_message_batch(QueueUrl=source, Entries=[{"Id": str(i), "MessageBody": json.dumps(
            {"update_id": f"u{start + i}", "profile_id": "p", "url": f"https://site{i}.com"})}
            for i in range(10)])
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=60, interval=0.2)

    def registry_calls() -> list[dict[str, Any]]:
        return [c for c in monitor.commands if c["client_type"] != "lua"
                and TAG in c["command"]]
    try:
        wait_until(lambda: len(bursts(registry_calls())) >= 4, timeout=4 * REFRESH_SECONDS + 10,
                   interval=0.2)
    except AssertionError:  # say which of the two stopped: the daemon, or our watching
        raise AssertionError(
            f"{len(bursts(registry_calls()))} refreshes seen; daemon exit status "
            f"{daemon.poll()}, monitor {monitor.error!r}; registry calls "
            f"{[c['command'][:60] for c in registry_calls()]}") from None
    commands = [c for c in monitor.stop() if c["client_type"] != "lua"]
    daemon.terminate()
    # Then the registry's calls come from one connection of their own, where nothing else goes
    mine = [c for c in commands if TAG in c["command"]]
    [registry] = {(c["client_address"], c["client_port"]) for c in mine}
    on_its_connection = [c["command"] for c in commands
                         if (c["client_address"], c["client_port"]) == registry]
    first = next(i for i, c in enumerate(on_its_connection) if TAG in c)
    connecting, calls = on_its_connection[:first], on_its_connection[first:]
    assert {c.split()[0] for c in connecting} <= {"PING", "HELLO", "CLIENT"}, connecting
    assert [c.split()[:2] for c in calls if TAG not in c] == [["SCRIPT", "LOAD"]], calls
    # the message path (every other connection: 200 events counted, in batches) never touches
    # the registry
    others = [c for c in commands if (c["client_address"], c["client_port"]) != registry]
    assert len(others) >= 20 and not [c for c in others if TAG in c["command"]]
    # and past the first (which loads the script), each refresh is one call, an interval apart
    groups = bursts(mine)
    assert len(groups[0]) <= 3, groups[0]
    for group in groups[1:]:
        assert [c["command"].split()[0] for c in group] == ["EVALSHA"], group
    starts = [g[0]["time"] for g in groups]
    for earlier, later in zip(starts, starts[1:], strict=False):
        assert REFRESH_SECONDS - 0.5 <= later - earlier <= REFRESH_SECONDS + 2.5, starts
