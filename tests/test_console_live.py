"""`workers console` as a real process on the local stack: it refuses to start without its
users file, asks SQS once per interval however many pages stream its figures, and a replay
whose console was killed midway is resumed by the next console and loses nothing."""

from __future__ import annotations

import json
import signal
import sys

from console_proc import OPERATOR, add_users, start_console

import devstack
from devstack import awsproxy
from helpers import REPO, queue_depth, wait_until, workers_cmd
from workers import QUEUES
from workers.console.tasks import LEASE_SECONDS

sys.path.insert(0, str(REPO / "bench"))
import consolebench  # noqa: E402


def test_the_console_refuses_to_start_without_a_readable_users_file(env, tmp_path):
    unset = workers_cmd("console", env={**env, "WORKERS_CONSOLE_USERS": ""})
    missing = workers_cmd("console", env={**env, "WORKERS_CONSOLE_USERS": str(tmp_path / "no")})
    for done in (unset, missing):
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "WORKERS_CONSOLE_USERS" in done.stderr


def test_adduser_keeps_only_a_hash_and_a_token_is_printed_once(env, tmp_path):
    users = tmp_path / "users"
    env = {**env, "WORKERS_CONSOLE_USERS": str(users)}
    done = workers_cmd("console", "adduser", "ann", "--role", "viewer", env=env,
                       stdin="s3cret-pw\n")
    assert done.returncode == 0, done.stderr
    token = workers_cmd("console", "token", "ci", "--role", "operator", env=env).stdout.strip()
    text = users.read_text()
    assert "s3cret-pw" not in text and token not in text and "$argon2id$" in text
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    refused = workers_cmd("console", "adduser", "bad name", "--role", "viewer", env=env,
                          stdin="x\n")
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")


def test_sqs_is_asked_once_per_interval_however_many_streams_are_open(env, queues,
                                                                      moto_service, tmp_path):
    users = tmp_path / "users"
    env = {**env, "WORKERS_CONSOLE_USERS": str(users), "WORKERS_CONSOLE_REFRESH": "1"}
    token = workers_cmd("console", "token", "ci", "--role", "viewer", env=env).stdout.strip()
    proxy = awsproxy.service(devstack.free_port(), moto_service.port, tmp_path / "proxy.log",
                             count=True).start()
    console = start_console({**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"},
                            tmp_path / "console.log")
    try:
        one, fifty = (consolebench.count_requests(console.url, token, proxy.port, n,
                                                  snapshots=2) for n in (1, 50))
    finally:
        console.stop()
        proxy.stop()
    # A queue's and its DLQ's depth per snapshot, whether 1 or 50 pages are open
    assert one["requests"] == fifty["requests"] == 2 * 2 * len(QUEUES)
    assert fifty["fewest_events_on_a_stream"] >= 3  # and every stream got every snapshot


def test_a_replay_whose_console_was_killed_is_resumed_and_loses_nothing(env, queues, sqs, dlq,
                                                                         source, redis_client,
                                                                         tmp_path):
    env = {**env, "WORKERS_CONSOLE_USERS": str(tmp_path / "users")}
    add_users(tmp_path / "users")
    for n in range(6):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"update_id": f"k{n}"}))
    first = start_console(env, tmp_path / "console-1.log")
    task = first.session(OPERATOR).post(f"{first.url}/api/dlq/post-sent/replay",
                                        json={"rate": 2}, timeout=60).json()["task"]
    runner = f"console:task:{{{task}}}:runner"
    # (two moved and deleted: the runner waits for its rate of 2 a second)
    wait_until(lambda: int(redis_client.hget(f"console:task:{{{task}}}", "moved") or 0) >= 2
               and queue_depth(sqs, dlq) == 4, 60)
    # When the console is killed midway (kill -9: no warm stop)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    # its runner's lease lapses by itself (shortened here, not waited out)
    assert 0 < redis_client.ttl(runner) <= LEASE_SECONDS
    redis_client.delete(runner)
    second = start_console(env, tmp_path / "console-2.log")
    try:
        operator = second.session(OPERATOR)

        def ended():
            found = operator.get(f"{second.url}/api/tasks/{task}", timeout=10).json()
            return found if found["state"] != "running" else None
        # at once: the killed runner held none hidden while it waited for its rate (else
        # they would come back only after REPLAY_VISIBILITY_SECONDS, 60 s)
        done = wait_until(ended, 40)
    finally:
        second.stop()
    # Then the task completed under the next console: every dead letter is back in the
    # queue (at least once), none left in the DLQ
    assert done["state"] == "completed" and done["moved"] >= 6 and done["total"] == 6
    assert queue_depth(sqs, dlq) == 0
    got = {json.loads(m["Body"])["update_id"] for m in _all(sqs, source)}
    assert got == {f"k{n}" for n in range(6)}


def _all(sqs, url):
    found = {}
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                       VisibilityTimeout=60).get("Messages", []):
        found.update((m["MessageId"], m) for m in batch)
    return list(found.values())


