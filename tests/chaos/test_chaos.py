"""The chaos suite: the fleet under a real supervisord, fed post-sent events with duplicates
and poison among them, while daemons are SIGKILLed, redis-server is killed and restarted and
the SQS endpoint goes away for seconds, and S3 refuses some archive writes. At the end every
valid event counts exactly once, every poison message is in the DLQ with a reason, nothing is
left in the source queue and every daemon runs. See tests/chaos/chaos.py for how.

`make test` runs a short run (1,500 messages, each fault at least once); `make chaos` sets
WORKERS_CHAOS_EVENTS=20000.
"""

from __future__ import annotations

import json
import os

import pytest

import chaos
from chaos_workload import workload
from workers.core.errors import PermanentError
from workers.core.events import decode
from workers.core.message import Message
from workers.queues.post_sent import distinct_keys
from workers.queues.publish import post_urls

CHAOS_EVENTS = int(os.environ.get("WORKERS_CHAOS_EVENTS", "1500"))
# After the last send: what is left of the backlog, and the messages still in their backoff.
CONVERGE_SECONDS = 150


def decoded(body: str):
    return decode("post-sent", Message(id="m", receipt_handle="r", body=body, receive_count=1))


def test_the_chaos_workload_is_what_it_says():
    # Given a workload
    work = workload(2000)
    # Then its valid messages name exactly the pairs it expects counted (in whatever spelling),
    pairs = set()
    valid = [b for b in work.bodies if b not in work.poison]
    for body in valid:
        event = decoded(body)
        pairs.update((event.update_id, key) for key in distinct_keys(event.all_urls)[0])
    # its publish events' links too, through the post-sent each chains once posted,
    for body in work.publish:
        event = decode("publish", Message(id="m", receipt_handle="r", body=body,
                                          receive_count=1))
        urls = post_urls(event.text, event.link)
        pairs.update((event.update_id, key) for key in distinct_keys(urls)[0])
    assert {json.loads(b)["update_id"] for b in work.publish} == set(work.published)
    assert len(work.publish) > len(work.published)  # some enqueued twice
    assert pairs == work.pairs and len(valid) == work.valid
    # and each poison message is refused for good, with a reason
    for body in work.poison:
        with pytest.raises(PermanentError) as refused:
            decoded(body)
        assert refused.value.reason.strip()
    assert work.duplicates and sum(work.poison.values()) + work.valid == len(work.bodies)


@pytest.fixture
def stack():
    stack = chaos.Stack().start()
    stack.passed = False
    yield stack
    stack.close(keep_logs=not stack.passed)


def test_under_chaos_every_valid_event_counts_once_and_every_poison_is_dead_lettered(
        stack, capsys):
    # Given thousands of events, a tenth duplicates and a tenth poison
    work = workload(CHAOS_EVENTS)
    # When the fleet consumes them while daemons, Redis, the SQS endpoint and S3 fail
    figures = chaos.run(stack, work, chaos.Plan.for_events(CHAOS_EVENTS), CONVERGE_SECONDS)
    with capsys.disabled():
        print("\n" + figures.render())
    # Then nothing differs from what the fleet promises
    problems = figures.problems()
    assert not problems, f"{problems} (logs kept in {stack.run_dir})"
    stack.passed = True
