"""A batch handled now and acknowledged later (what a daemon's lane does while it receives
again), and the receives a daemon keeps in flight; against moto and redis-server."""

import json

from helpers import queue_depth
from workers.core.settings import DEFAULT_CONCURRENCY, MIN_RECEIVES_IN_FLIGHT
from workers.queues import consumer_of
from workers.runtime.daemon import lane_sizes, receives_in_flight


def post(update_id: str) -> str:
    return json.dumps({"update_id": update_id, "profile_id": "p1", "url": "https://a.com"})


def test_a_handled_batch_stays_in_flight_and_tracked_until_acknowledged(settings, sqs, source):
    # Given a message handled but not yet acknowledged
    sqs.send_message(QueueUrl=source, MessageBody=post("u1"))
    consumer = consumer_of("post-sent", settings)
    handled = consumer.handle_batch(wait_seconds=1)
    assert handled is not None and handled.tally().succeeded == 1
    # Then it is neither deleted nor given up by the heartbeat yet
    assert queue_depth(sqs, source) == 1
    assert len(consumer.heartbeat._held) == 1
    # When it is acknowledged, it is deleted, untracked and in the totals
    result = consumer.acknowledge(handled)
    assert (result.received, result.succeeded) == (1, 1)
    assert queue_depth(sqs, source) == 0 and not consumer.heartbeat._held
    assert consumer.totals.succeeded == 1


def test_nothing_received_is_nothing_to_acknowledge(settings, source):
    assert consumer_of("post-sent", settings).handle_batch(wait_seconds=0) is None


def test_the_default_daemon_keeps_four_receives_in_flight_and_a_small_one_its_own():
    assert lane_sizes(DEFAULT_CONCURRENCY, receives_in_flight(DEFAULT_CONCURRENCY)) == [10] * 4
    assert MIN_RECEIVES_IN_FLIGHT == 4
    assert lane_sizes(2, receives_in_flight(2)) == [2]  # asked for 2 handlers: holds 2
    assert lane_sizes(25, receives_in_flight(25)) == [10, 10, 5, 10]
    assert lane_sizes(60, receives_in_flight(60)) == [10] * 6


def test_extra_lanes_receive_only_while_receives_come_back_full(settings):
    from workers.core.message import Message
    from workers.runtime.consumer import Handled
    from workers.runtime.daemon import Daemon

    daemon = Daemon(consumer_of("post-sent", settings))
    batch = [Message(f"m{i}", f"r{i}", "{}", 1) for i in range(10)]
    assert not daemon._backlog.is_set()  # until a receive says there is a backlog
    daemon._saw(Handled(batch, []), 10)
    assert daemon._backlog.is_set()
    daemon._saw(Handled(batch[:3], []), 10)  # a shallow queue
    assert not daemon._backlog.is_set()
    daemon._saw(None, 10)  # an empty poll
    assert not daemon._backlog.is_set()
