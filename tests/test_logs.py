"""The log lines a pipeline reads: each a whole JSON object with its level and time, from our
loggers and the standard library's, and a message's lines naming the update it is about."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading

import pytest
import structlog

from helpers import log_events, wait_until
from links_api import start_api
from workers.core.errors import PermanentError
from workers.queues import consumer_of
from workers.runtime import logs
from workers.runtime.consumer import Consumer, Handlers


class Recorder(io.StringIO):
    """A stdout that keeps each write apart, as a pipe to supervisord sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in "".join(self.writes).splitlines()]


@pytest.fixture
def stdout(monkeypatch) -> Recorder:
    """logs.configure() writing to a Recorder; the default configuration again afterwards."""
    recorder = Recorder()
    monkeypatch.setattr(sys, "stdout", recorder)
    logs.configure("info")
    yield recorder
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logs._StdlibHandler)]:
        root.removeHandler(handler)


def test_each_line_and_its_newline_are_one_write_whatever_the_threads(stdout):
    # Given several threads logging at once
    def chatter(n: int) -> None:
        log = logs.get(thread=n)
        for i in range(50):
            log.info("chatter.said", i=i)

    threads = [threading.Thread(target=chatter, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every write is one whole JSON line, its newline included
    assert len(stdout.writes) == 8 * 50
    for write in stdout.writes:
        assert write.endswith("\n") and write.count("\n") == 1, repr(write)
        assert json.loads(write)["event"] == "chatter.said"


def test_a_standard_library_logger_s_lines_carry_level_and_time(stdout):
    # When a library, or a server of ours, logs through the standard library
    logging.getLogger("workers.readapi").info("links_api.listening",
                                               extra={"url": "http://127.0.0.1:8080/"})
    logging.getLogger("botocore.credentials").info("Found credentials in environment")
    logging.getLogger("urllib3.connectionpool").warning("Connection pool is full")
    # Then each line it shows is JSON with its level and time, as ours are; a library's
    # chatter below a warning is not shown
    [listening, full] = stdout.lines()
    assert {k: listening[k] for k in ("event", "level", "url", "logger")} == {
        "event": "links_api.listening", "level": "info", "url": "http://127.0.0.1:8080/",
        "logger": "workers.readapi"}
    assert (full["event"], full["level"]) == ("Connection pool is full", "warning")
    assert listening["ts"].endswith("Z") and full["ts"].endswith("Z")


# -- a message's lines name its update ---------------------------------------------------------

def test_every_line_of_a_message_names_its_update(stdout, settings, sqs, queues, prefix):
    # Given an analytics message whose handler logs, then fails for good
    def handler(event):
        logs.get().info("handler.said")
        raise PermanentError("the post is gone")

    sqs.send_message(QueueUrl=queues[prefix + "analytics"], MessageBody=json.dumps(
        {"update_id": "u-42", "profile_id": "p1", "service": "twitter",
         "service_update_id": "t1"}))
    consumer = Consumer("analytics", settings, handlers=Handlers(handler))
    # When it is handled
    assert consumer.process_batch(wait_seconds=1).dead_lettered == 1
    # Then the handler's line and the runtime's lines about it all name the update
    lines = {line["event"]: line for line in stdout.lines()}
    for event in ("handler.said", "message.handled", "message.dead_lettered"):
        assert lines[event].get("update_id") == "u-42", lines[event]


def test_a_batch_handler_s_messages_name_their_updates(stdout, settings, sqs, queues, prefix):
    # Given two post-sent messages, which a batch handler counts together
    for update_id in ("u-1", "u-2"):
        sqs.send_message(QueueUrl=queues[prefix + "post-sent"], MessageBody=json.dumps(
            {"update_id": update_id, "profile_id": "p1", "url": "https://a.com"}))
    consumer = consumer_of("post-sent", settings)
    # When they are handled
    received = 0
    while received < 2:
        received += consumer.process_batch(wait_seconds=1).received
    # Then each message's line names its own update
    handled = [line for line in stdout.lines() if line["event"] == "message.handled"]
    assert sorted(line["update_id"] for line in handled) == ["u-1", "u-2"]


def test_the_read_api_s_listening_line_has_level_and_time(env, tmp_path):
    # Given a real `workers links serve`
    api = start_api(env, tmp_path / "api.log")
    try:
        # Then the line saying where it listens carries its level and time like every other
        [listening] = wait_until(lambda: [e for e in log_events(api.log_path)
                                          if e["event"] == "links_api.listening"], timeout=30)
        assert (listening["level"], listening["url"]) == ("info", api.url + "/")
        assert listening["ts"].endswith("Z")
    finally:
        api.stop()
