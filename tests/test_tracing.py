"""Tracing (SPEC.md, "Tracing"): spans exported over OTLP/HTTP to a real receiver on a loopback
port (devstack/otlp.py decodes them with opentelemetry-proto), from real daemons against
moto, redis-server and the networks' stand-ins; context carried in message attributes and in
AWSTraceHeader; nothing at all with tracing off.

moto keeps AWSTraceHeader when it is sent with SendMessage, and drops it from SendMessageBatch
(moto 5.x passes no system attributes on from a batch entry): what our batch sends put in the
request is read from the request itself, before it leaves botocore."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any, Iterator

import boto3
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from console_proc import OPERATOR, add_users, start_console
from prometheus_client import REGISTRY

from devstack import free_port
from devstack.networks import Account, Networks
from devstack.otlp import OTLPReceiver, Span, tree
from fakes import FakePusher
from helpers import log_events, queue_depth, wait_until, workers_cmd
from workers.adapters import tracing
from workers.adapters.aws import client
from workers.adapters.producer import Producer
from workers.ops.dlq import DeadLetters
from workers.queues import consumer_of

TOKEN = "x-token-SECRET-tracing"
ACCOUNTS = [Account("twitter", TOKEN, user_id="2244994945", username="buffer")]
# An X-Ray header as an upstream sender (Lambda, the X-Ray SDK) writes it.
XRAY_TRACE, XRAY_PARENT = "5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8"
XRAY_HEADER = f"Root=1-{XRAY_TRACE[:8]}-{XRAY_TRACE[8:]};Parent={XRAY_PARENT};Sampled=1"


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as otlp:
        yield otlp


def otel_env(receiver: OTLPReceiver) -> dict[str, str]:
    """OpenTelemetry's own variables, pointed at the receiver; spans exported within 50 ms."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "50"}


@pytest.fixture
def traced(receiver, monkeypatch) -> Iterator[OTLPReceiver]:
    """Tracing on in this process, exporting to the receiver; off again afterwards."""
    for name, value in otel_env(receiver).items():
        monkeypatch.setenv(name, value)
    assert tracing.configure("test")
    yield receiver
    tracing.shutdown()


def one(spans: list[Span], **match: Any) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.name, s.kind) for s in spans])
    return found[0]


def children(spans: list[Span], parent: Span) -> list[Span]:
    return [s for s in spans if s.parent_id == parent.span_id]


# -- on or off: OpenTelemetry's variables decide -----------------------------------------------

@pytest.mark.parametrize("environ,on", [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "workers", "OTEL_TRACES_SAMPLER": "always_on"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
])
def test_only_opentelemetry_s_own_variables_turn_tracing_on(environ, on):
    assert tracing.requested(environ) is on


@pytest.mark.parametrize("environ,says", [
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "zipkin"),
])
def test_what_this_build_cannot_export_is_refused_by_name(environ, says):
    # (the CLI shows a TracingError as its one line, as every error it knows)
    with pytest.raises(tracing.TracingError, match=says):
        tracing.configure("test", environ)
    assert not tracing.enabled()


def test_with_tracing_off_nothing_is_exported_and_no_attribute_is_added(env, receiver, sqs,
                                                                        settings, queues,
                                                                        prefix):
    event = {"update_id": "u1", "profile_id": "p1", "url": "https://buffer.com"}
    # Given an endpoint, but the exporter set to none: `workers send` enqueues with tracing off
    off = {**env, **otel_env(receiver), "OTEL_TRACES_EXPORTER": "none"}
    done = workers_cmd("send", "post-sent", json.dumps(event), env=off)
    assert done.returncode == 0, done.stderr
    # and so does the producer with no OTEL_* at all (this process's)
    assert not tracing.enabled()
    Producer(settings).send("post-sent", event)
    # Then the messages carry no attribute, user or system, and nothing reached the receiver
    # (a process exports what it holds before it exits: there is nothing to wait for)
    got = sqs.receive_message(QueueUrl=queues[prefix + "post-sent"], MaxNumberOfMessages=10,
                              WaitTimeSeconds=1, MessageAttributeNames=["All"],
                              MessageSystemAttributeNames=["All"])["Messages"]
    assert len(got) == 2
    for message in got:
        assert "MessageAttributes" not in message
        assert "AWSTraceHeader" not in message.get("Attributes", {})
    assert receiver.exports == 0


HANDLE_ONE = """
import json, sys
from workers.core.settings import Settings
from workers.queues import consumer_of
consumer = consumer_of("post-sent", Settings.from_env())
ours = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation")
print(json.dumps({"succeeded": consumer.process_batch(wait_seconds=1).succeeded,
                  "sdk": sorted(m for m in sys.modules if m.startswith(ours))}))
"""


def test_with_tracing_off_a_consumer_never_loads_the_sdk_s_tracing(env, sqs, queues, prefix):
    # Given a message, and a consumer in a process with no OTEL_*
    sqs.send_message(QueueUrl=queues[prefix + "post-sent"], MessageBody=json.dumps(
        {"update_id": "u1", "profile_id": "p1", "url": "https://buffer.com"}))
    # When it handles the message
    done = subprocess.run([sys.executable, "-c", HANDLE_ONE], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # Then neither the SDK's tracing, an exporter nor an instrumentation was even imported:
    # no span, no export, no patched client (redis-py imports the SDK's metrics itself, for
    # its own observability, off unless an application starts it)
    assert json.loads(done.stdout.splitlines()[-1]) == {"succeeded": 1, "sdk": []}


# -- one publish event, one trace ---------------------------------------------------------------

def metrics_base(port_block: int) -> int:
    """A WORKERS_METRICS_PORT whose port for this queue's process 0 is free."""
    while True:
        port = free_port()
        if port > 100 * port_block + 1024:
            return port - 100 * port_block


def test_one_publish_event_is_one_trace_from_its_enqueue_to_its_analytics(
        daemons, env, receiver, sqs, queues, prefix, redis_client, tmp_path):
    # Given the three daemons, tracing on, against the networks' and Pusher's stand-ins
    redis_client.hset("creds:p1", "twitter", TOKEN)
    pusher = FakePusher().start()
    base = metrics_base(port_block=4)  # publish's
    with Networks(accounts=ACCOUNTS) as networks:
        environment = {**env, **otel_env(receiver), **pusher.env(),
                       "WORKERS_TWITTER_API_URL": networks.url, "WORKERS_ANALYTICS_DELAY": "1",
                       "WORKERS_METRICS_PORT": str(base)}
        publisher = daemons("publish", "--concurrency", "2", environment=environment)
        for queue in ("post-sent", "analytics"):
            daemons(queue, "--concurrency", "2",
                    environment={**environment, "WORKERS_METRICS_PORT": "0"})
        # When the API enqueues one publish event (`workers send`, the producer)
        event = {"update_id": "u1", "profile_id": "p1", "service": "twitter",
                 "text": "Tracing launch https://buffer.com/tracing"}
        sent = workers_cmd("send", "publish", json.dumps(event), env=environment)
        assert sent.returncode == 0, sent.stderr

        def chained_work_done() -> list[Span]:
            spans = receiver.spans()
            names = {s.name for s in spans}
            done = {"process analytics", "process post-sent"} <= names and any(
                s.kind == "CLIENT" and "GET" in s.name for s in spans)
            return spans if done else []
        spans = wait_until(chained_work_done, timeout=60, interval=0.2)
        metrics_text = openmetrics(base + 400)
    pusher.stop()

    # Then every span of it is in one trace, rooted at the enqueue's send span
    root = one(spans, name="send publish")
    assert (root.kind, root.parent_id, root.service) == ("PRODUCER", "", "workers-send")
    assert {s.trace_id for s in spans} == {root.trace_id}  # the daemons' own calls make none
    ours = spans
    # publish's process span: the child of its message's send span, the same message
    publish = one(ours, name="process publish")
    assert (publish.kind, publish.parent_id) == ("CONSUMER", root.span_id)
    assert publish.attributes["messaging.message.id"] == root.attributes["messaging.message.id"]
    for span in (root, publish):
        assert span.attributes["messaging.system"] == "aws_sqs"
        assert span.attributes["messaging.destination.name"] == "publish"
    assert publish.attributes["workers.outcome"] == "succeeded"
    assert publish.service == "workers-publish"
    # beneath it: the network's create, Redis, and the chained sends
    under = children(ours, publish)
    [create] = [s for s in under if s.kind == "CLIENT" and "/2/tweets" in
                str(s.attributes.get("url.full", s.attributes.get("http.url")))]
    assert create.name == "POST"
    assert any(s.attributes.get("db.system") == "redis" or s.attributes.get(
        "db.system.name") == "redis" for s in under)
    for queue in ("post-sent", "analytics"):
        send = one(under, name=f"send {queue}")
        assert send.kind == "PRODUCER"
        process = one(ours, name=f"process {queue}")
        assert (process.kind, process.parent_id) == ("CONSUMER", send.span_id)
        assert process.attributes["messaging.message.id"] == \
            send.attributes["messaging.message.id"]
        assert process.attributes["messaging.destination.name"] == queue
        assert process.attributes["workers.outcome"] == "succeeded"
    analytics = one(ours, name="process analytics")
    assert any(s.kind == "CLIENT" and s.name == "GET" for s in children(ours, analytics))
    # SQS's own calls (receives, deletes) make no spans of botocore's
    assert not [s for s in spans if s.attributes.get("rpc.service") == "SQS"]
    # the publish daemon's log line of that message names its trace and span
    [handled] = [e for e in log_events(publisher.log_path) if e.get("event") ==
                 "message.handled" and e.get("queue") == "publish"]
    assert (handled["trace_id"], handled["span_id"]) == (root.trace_id, publish.span_id)
    # and /metrics' duration histogram carries that trace as an exemplar (OpenMetrics)
    assert re.search(r'workers_handler_duration_seconds_bucket\{[^}]*queue="publish"[^}]*\} '
                     rf'\S+ # \{{trace_id="{root.trace_id}"\}}', metrics_text)
    (tmp_path / "trace.txt").write_text("\n".join(tree(ours, root)) + "\n")
    print("\n".join(tree(ours, root)))


def openmetrics(port: int) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={
        "Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
        return answer.read().decode()


# -- context in and out of a message ------------------------------------------------------------

def test_a_message_carrying_only_aws_trace_header_is_processed_in_that_trace(
        traced, settings, sqs, queues, prefix, redis_client):
    # Given a post-sent message whose only context is AWSTraceHeader (an X-Ray sender's)
    url = queues[prefix + "post-sent"]
    sent = sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
        {"update_id": "u1", "profile_id": "p1", "url": "https://buffer.com/xray"}),
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String",
                                                    "StringValue": XRAY_HEADER}})
    # When a consumer handles it
    consumer = consumer_of("post-sent", settings, concurrency=1)
    assert consumer.process_batch(wait_seconds=1).succeeded == 1
    tracing.shutdown()  # exports what is pending
    # Then its process span is the child of that context, its counting beneath it
    process = one(traced.spans(), name="process post-sent")
    assert (process.trace_id, process.parent_id) == (XRAY_TRACE, XRAY_PARENT)
    assert process.attributes["messaging.message.id"] == sent["MessageId"]
    assert [s for s in traced.spans() if s.parent_id == process.span_id and s.kind == "CLIENT"]


def test_a_replayed_message_with_ten_attributes_keeps_them_and_its_trace_in_aws_trace_header(
        traced, settings, sqs, queues, prefix):
    # Given a dead letter of post-sent with the API's own ten attributes and an X-Ray context
    own = {f"api.{i}": {"DataType": "String", "StringValue": f"value {i}"} for i in range(10)}
    sqs.send_message(QueueUrl=queues[prefix + "post-sent-dlq"], MessageBody=json.dumps(
        {"update_id": "u1", "profile_id": "p1", "url": "https://buffer.com"}),
        MessageAttributes=own, MessageSystemAttributes={
            "AWSTraceHeader": {"DataType": "String", "StringValue": XRAY_HEADER}})
    dropped = REGISTRY.get_sample_value("workers_trace_context_dropped_total",
                                        {"queue": "post-sent"}) or 0
    # When it is replayed (the code `workers dlq replay` and the console share)
    replay_sqs = client(settings)
    requests: list[dict] = []
    replay_sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch",
                                    lambda params, **_: requests.append(params))
    result = DeadLetters(settings, "post-sent", sqs=replay_sqs).replay(method="copy")
    assert result.moved == 1
    tracing.shutdown()
    # Then it is back with the API's ten attributes, and no traceparent squeezed in
    [back] = sqs.receive_message(QueueUrl=queues[prefix + "post-sent"], WaitTimeSeconds=1,
                                 MessageAttributeNames=["All"])["Messages"]
    assert {k: v["StringValue"] for k, v in back["MessageAttributes"].items()} == \
        {k: v["StringValue"] for k, v in own.items()}
    # its send span goes on in the dead letter's trace, and says it dropped traceparent
    send = one(traced.spans(), name="send post-sent")
    assert (send.kind, send.trace_id, send.parent_id) == ("PRODUCER", XRAY_TRACE, XRAY_PARENT)
    assert send.attributes["messaging.message.id"] == back["MessageId"]
    assert send.attributes["workers.traceparent_dropped"] is True
    # the request carried that span's context in AWSTraceHeader (moto drops it from a batch)
    [entry] = requests[0]["Entries"]
    assert entry["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] == (
        f"Root=1-{XRAY_TRACE[:8]}-{XRAY_TRACE[8:]};Parent={send.span_id};Sampled=1")
    # and the drop is counted in /metrics
    assert REGISTRY.get_sample_value("workers_trace_context_dropped_total",
                                     {"queue": "post-sent"}) == dropped + 1


def test_a_message_with_room_carries_traceparent_and_the_consumer_continues_it(
        traced, settings, sqs, queues, prefix):
    # Given a message sent by the producer with tracing on, with the API's own attribute
    from workers.adapters.sqs import SQSQueue

    queue = SQSQueue(client(settings), settings.queue_name("post-sent"), topic="post-sent")
    own = {"api.origin": {"DataType": "String", "StringValue": "scheduler"}}
    assert queue.send_failures([json.dumps({"update_id": "u1", "profile_id": "p1"})],
                               attributes=[own]) == {}
    # When a consumer handles it
    consumer = consumer_of("post-sent", settings, concurrency=1)
    assert consumer.process_batch(wait_seconds=1).succeeded == 1
    tracing.shutdown()
    # Then its process span is the send span's child: moto drops AWSTraceHeader from a
    # batch, so the context came in traceparent, beside the API's attribute
    spans = traced.spans()
    send, process = one(spans, name="send post-sent"), one(spans, name="process post-sent")
    assert (process.trace_id, process.parent_id) == (send.trace_id, send.span_id)
    assert "workers.traceparent_dropped" not in send.attributes


def test_a_dead_lettered_message_s_process_span_says_so_and_its_copy_stays_in_its_trace(
        traced, settings, sqs, queues, prefix):
    # Given a post-sent message that can never succeed, sent in an X-Ray sender's trace
    sqs.send_message(QueueUrl=queues[prefix + "post-sent"], MessageBody="not json",
                     MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String",
                                                                 "StringValue": XRAY_HEADER}})
    # When a consumer handles it
    consumer = consumer_of("post-sent", settings, concurrency=1)
    assert consumer.process_batch(wait_seconds=1).dead_lettered == 1
    tracing.shutdown()
    # Then its process span has that outcome, as an error, with the reason
    spans = traced.spans()
    process = one(spans, name="process post-sent")
    assert process.attributes["workers.outcome"] == "dead_lettered"
    assert process.attributes["error.type"] == "permanent"
    assert process.status == "ERROR" and "not JSON" in process.status_message
    # and its copy in the DLQ was sent in the same trace, carrying it for a replay
    copy = one(spans, name="send post-sent-dlq")
    assert (copy.kind, copy.trace_id, copy.parent_id) == ("PRODUCER", XRAY_TRACE, XRAY_PARENT)
    [dead] = sqs.receive_message(QueueUrl=queues[prefix + "post-sent-dlq"], WaitTimeSeconds=1,
                                 MessageAttributeNames=["All"])["Messages"]
    assert dead["MessageAttributes"]["traceparent"]["StringValue"] == \
        f"00-{XRAY_TRACE}-{copy.span_id}-01"


def replay_by_cli(env: dict[str, str], _tmp_path) -> str:
    done = workers_cmd("dlq", "replay", "post-sent", env=env)
    assert done.returncode == 0, done.stderr
    return "workers-dlq"


def replay_by_console(env: dict[str, str], tmp_path) -> str:
    users = tmp_path / "users"
    add_users(users)
    console = start_console({**env, "WORKERS_CONSOLE_USERS": str(users)},
                            tmp_path / "console.log")
    try:
        operator = console.session(OPERATOR)
        started = operator.post(f"{console.url}/api/dlq/post-sent/replay", json={}, timeout=30)
        assert started.status_code == 202, started.text
        task = started.json()["task"]
        wait_until(lambda: operator.get(f"{console.url}/api/tasks/{task}", timeout=10
                                        ).json()["state"] == "completed", timeout=60)
    finally:
        stopped = console.stop()
    assert stopped == 0  # a warm stop: its spans are exported at exit
    return "workers-console"


@pytest.mark.parametrize("replay", [replay_by_cli, replay_by_console], ids=["cli", "console"])
def test_a_replayed_dead_letter_is_sent_and_processed_in_the_trace_it_carries(
        replay, traced, env, settings, sqs, queues, prefix, redis_client, tmp_path):
    # Given a dead letter whose only context is AWSTraceHeader (SQS's redrive of an X-Ray
    # sender's message keeps it; no traceparent of ours)
    sqs.send_message(QueueUrl=queues[prefix + "post-sent-dlq"], MessageBody=json.dumps(
        {"update_id": "u1", "profile_id": "p1", "url": "https://buffer.com/replayed"}),
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String",
                                                    "StringValue": XRAY_HEADER}})
    # When an operator replays it (`workers dlq replay`, or the console's replay task: on
    # moto, with no move task, both send it themselves), tracing on in that process
    service = replay({**env, **otel_env(traced)}, tmp_path)
    # and a consumer handles it
    consumer = consumer_of("post-sent", settings, concurrency=1)
    assert consumer.process_batch(wait_seconds=1).succeeded == 1
    tracing.shutdown()
    # Then the replay's send span goes on in the dead letter's trace, and the process span of
    # the replayed message is its child
    spans = wait_until(lambda: (found := traced.spans()) and
                       {"send post-sent", "process post-sent"} <= {s.name for s in found}
                       and found, timeout=10)
    send = one(spans, name="send post-sent")
    assert (send.kind, send.service) == ("PRODUCER", service)
    assert (send.trace_id, send.parent_id) == (XRAY_TRACE, XRAY_PARENT)
    process = one(spans, name="process post-sent")
    assert (process.trace_id, process.parent_id) == (XRAY_TRACE, send.span_id)
    assert process.attributes["messaging.message.id"] == send.attributes["messaging.message.id"]


def test_a_push_s_sns_publish_is_a_span_of_botocore_s_beneath_its_process_span(
        traced, settings, sqs, queues, prefix):
    # Given a push message to a platform endpoint of moto's SNS
    sns = boto3.client("sns", region_name=settings.region, endpoint_url=settings.endpoint_url)
    app = sns.create_platform_application(
        Name=f"{prefix}gcm", Platform="GCM",
        Attributes={"PlatformCredential": "test-credential"})["PlatformApplicationArn"]
    target = sns.create_platform_endpoint(PlatformApplicationArn=app,
                                          Token=uuid.uuid4().hex)["EndpointArn"]
    sqs.send_message(QueueUrl=queues[prefix + "push"], MessageBody=json.dumps(
        {"user_id": "u1", "target_arn": target, "title": "Post sent", "body": "It went out"}))
    # When a consumer pushes it
    assert consumer_of("push", settings, concurrency=1).process_batch(wait_seconds=1).succeeded == 1
    tracing.shutdown()
    # Then SNS's Publish is a span of botocore's instrumentation, the child of the message's
    # process span (a PRODUCER: botocore follows the messaging conventions for SNS's Publish)
    spans = traced.spans()
    process = one(spans, name="process push")
    [publish] = [s for s in spans if s.attributes.get("rpc.service") == "SNS"]
    assert (publish.attributes["rpc.method"], publish.kind) == ("Publish", "PRODUCER")
    assert (publish.parent_id, publish.trace_id) == (process.span_id, process.trace_id)
    assert publish.attributes["messaging.destination.name"] == target


@pytest.mark.parametrize("backend", ["ses", "smtp"])
def test_an_email_s_send_is_a_client_span_beneath_its_process_span(traced, settings, sqs,
                                                                   queues, prefix, backend):
    # Given an email message, and SES (moto's) or an SMTP server (aiosmtpd's) to send it
    sender = "no-reply@workers.example.com"
    boto3.client("ses", region_name=settings.region, endpoint_url=settings.endpoint_url
                 ).verify_email_identity(EmailAddress=sender)
    smtp = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        chosen = settings.model_copy(update={
            "email_from": sender, "email_backend": backend, "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port, "smtp_starttls": False})
        sqs.send_message(QueueUrl=queues[prefix + "email"], MessageBody=json.dumps(
            {"to": "ada@example.com", "subject": "Weekly report", "text": "hello"}))
        # When a consumer sends it
        consumer = consumer_of("email", chosen, concurrency=1)
        assert consumer.process_batch(wait_seconds=1).succeeded == 1
    finally:
        smtp.stop()
    tracing.shutdown()
    # Then the send is a CLIENT span of the message's process span: botocore's for SES, ours
    # for SMTP (OpenTelemetry instruments no SMTP client)
    spans = traced.spans()
    process = one(spans, name="process email")
    name = {"ses": "SES.SendRawEmail", "smtp": "smtp send"}[backend]
    call = one(spans, name=name)
    assert (call.kind, call.parent_id, call.trace_id) == ("CLIENT", process.span_id,
                                                          process.trace_id)


# -- a forced stop ------------------------------------------------------------------------------

def stopped_now(daemon) -> float:
    """A warm stop (SIGTERM: it waits out its 20 s long poll), then a second SIGTERM, which
    stops it at once; how long the daemon took to exit after the second."""
    daemon.send_signal(signal.SIGTERM)
    wait_until(lambda: any(e.get("event") == "shutdown.requested"
                           for e in log_events(daemon.log_path)), timeout=30, interval=0.05)
    daemon.send_signal(signal.SIGTERM)
    asked = time.monotonic()
    daemon.wait(timeout=30)
    return time.monotonic() - asked


def forced_stop_env(env: dict[str, str], endpoint: str) -> dict[str, str]:
    """Tracing on, spans held in their batch for a minute: only an exit's flush exports them."""
    return {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "60000",
            "WORKERS_WAIT_SECONDS": "20", "WORKERS_METRICS_PORT": "0"}


def test_a_daemon_stopped_at_once_by_a_second_signal_still_exports_its_spans(
        daemons, env, receiver, sqs, source):
    # Given a daemon, tracing on, that handled a message whose spans are still batched
    daemon = daemons("post-sent", "--concurrency", "1",
                     environment=forced_stop_env(env, receiver.url))
    sent = sqs.send_message(QueueUrl=source, MessageBody=json.dumps(
        {"update_id": "u1", "profile_id": "p1", "url": "https://buffer.com/forced"}))
    wait_until(lambda: queue_depth(sqs, source) == 0, timeout=60, interval=0.1)
    assert receiver.exports == 0
    # When it is stopped at once (a second signal: os._exit, which skips the SDK's flush)
    took = stopped_now(daemon)
    # Then it exited at once, and the message's process span reached the collector first
    assert daemon.returncode == 1 and took < 5, took
    process = one(receiver.spans(), name="process post-sent")
    assert process.attributes["messaging.message.id"] == sent["MessageId"]
    assert process.attributes["workers.outcome"] == "succeeded"


def test_a_forced_stop_waits_for_a_collector_that_never_answers_two_seconds_at_most(
        daemons, env, sqs, source):
    # Given a daemon whose collector accepts connections and never answers
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        daemon = daemons("post-sent", "--concurrency", "1",
                         environment=forced_stop_env(env, endpoint))
        sqs.send_message(QueueUrl=source, MessageBody=json.dumps(
            {"update_id": "u1", "profile_id": "p1", "url": "https://buffer.com/silent"}))
        wait_until(lambda: queue_depth(sqs, source) == 0, timeout=60, interval=0.1)
        # When it is stopped at once
        took = stopped_now(daemon)
    finally:
        silent.close()
    # Then the flush gave up after its 2 s: a forced stop stays a prompt one
    assert daemon.returncode == 1
    assert tracing.FORCED_FLUSH_SECONDS <= took < tracing.FORCED_FLUSH_SECONDS + 2.5, took
