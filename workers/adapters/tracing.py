"""OpenTelemetry tracing, off unless OpenTelemetry's own variables ask for it.

``configure(program)`` runs once where a process starts (``workers run``, ``send``, ``dlq``);
only when ``OTEL_TRACES_EXPORTER`` names an exporter or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its
traces variant) is set does it build the SDK, and everything else here then works. Until then
``enabled()`` is False, callers skip every hook, and nothing of OpenTelemetry runs on the hot
path: no span, no attribute on any message, no export.

What a trace holds (SPEC.md, "Tracing"): a ``send {queue}`` PRODUCER span per message sent
(``Sends``), a ``process {queue}`` CONSUMER span per message handled, child of the context the
message carries (``start_process``), and beneath it the CLIENT spans of OpenTelemetry's own
instrumentations of requests (the networks, Pusher), redis and botocore (SNS, SES, S3; SQS's
own calls are left out: ``tracing_sdk.MessagesOnly``), and ours for SMTP (``client_span``).

Context travels in ``traceparent``/``tracestate`` message attributes when the message has
room (SQS allows 10, and the sender's own always come first) and always in the
``AWSTraceHeader`` system attribute, which counts towards no quota.
"""

from __future__ import annotations

import contextlib
import os
import threading
import types
from typing import Any, Iterable, Iterator, Mapping, Sequence

from botocore.client import BaseClient
from botocore.exceptions import ClientError
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.aws.aws_xray_propagator import TRACE_HEADER_KEY
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from workers.core import metrics

TRACEPARENT, TRACESTATE = "traceparent", "tracestate"
AWS_TRACE_HEADER = "AWSTraceHeader"
# SQS's limit of message attributes, the sender's own included.
MAX_ATTRIBUTES = 10
SYSTEM = "aws_sqs"  # messaging.system, by the messaging semantic conventions
OUTCOME = "workers.outcome"  # succeeded, retried, deferred, dead_lettered (a process span's)
# A forced stop (a daemon's second SIGTERM) waits at most this long for its batched spans.
FORCED_FLUSH_SECONDS = 2.0

_W3C = TraceContextTextMapPropagator()
_XRAY = AwsXRayPropagator()
_tracer: trace.Tracer | None = None  # set once by configure(): tracing is on
# Each handled event's process span, while the queue's before-ack steps run: what publish's
# chaining sends is the child of the publish message it follows (``parents_of``).
_event_spans: dict[int, Span] = {}


class TracingError(RuntimeError):
    """OTEL_* asks for something this build does not do (one line for the operator)."""


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether OpenTelemetry's variables ask for traces: an exporter named (other than
    ``none``), or an OTLP endpoint given; ``OTEL_SDK_DISABLED=true`` wins over both."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def enabled() -> bool:
    return _tracer is not None


def configure(program: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Turns tracing on for this process when the environment asks; whether it is on. The
    default service name is ``workers-{program}`` (OTEL_SERVICE_NAME overrides it)."""
    global _tracer
    if _tracer is not None or not requested(environ):
        return _tracer is not None
    # Imported here, not at the top: a process with tracing off never loads the SDK, the
    # exporter (protobuf) or the instrumentations.
    from workers.adapters import tracing_sdk

    provider = tracing_sdk.provider(program, environ)
    trace.set_tracer_provider(provider)
    tracing_sdk.instrument(provider)
    _tracer = provider.get_tracer("workers")
    return True


def flush(timeout: float = FORCED_FLUSH_SECONDS) -> None:
    """Exports the spans still batched, waiting ``timeout`` at most; nothing with tracing off.
    For a forced exit, maybe from a signal handler: the export runs on a thread of its own, so
    a lock the interrupted thread holds (or an unreachable collector) costs the wait, never
    the exit."""
    if _tracer is None:
        return
    force = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force is None:
        return
    exporting = threading.Thread(target=force, args=(int(timeout * 1000),), daemon=True,
                                 name="span-flush")
    exporting.start()
    exporting.join(timeout)


def shutdown() -> None:
    """Exports what is pending and turns tracing off in this process (a process's exit does
    the export by itself: the SDK flushes at exit)."""
    global _tracer
    if _tracer is None:
        return
    from workers.adapters import tracing_sdk

    _tracer = None
    _event_spans.clear()
    tracing_sdk.uninstrument()


# -- consuming ----------------------------------------------------------------------------------

def extract(attributes: Mapping[str, Any], trace_header: str | None) -> Context | None:
    """The context a received message carries: its ``traceparent`` attribute (with
    ``tracestate``), else its ``AWSTraceHeader``; None when it carries neither."""
    traceparent = _string(attributes.get(TRACEPARENT))
    if traceparent:
        carrier = {TRACEPARENT: traceparent}
        state = _string(attributes.get(TRACESTATE))
        if state:
            carrier[TRACESTATE] = state
        context = _W3C.extract(carrier)
        if trace.get_current_span(context).get_span_context().is_valid:
            return context
    if trace_header:
        context = _XRAY.extract({TRACE_HEADER_KEY: trace_header})
        if trace.get_current_span(context).get_span_context().is_valid:
            return context
    return None


def start_process(queue: str, message_id: str, attributes: Mapping[str, Any],
                  trace_header: str | None, receive_count: int) -> Span:
    """The ``process {queue}`` span of one received message, not yet current."""
    assert _tracer is not None
    return _tracer.start_span(
        f"process {queue}", context=extract(attributes, trace_header) or Context(),
        kind=SpanKind.CONSUMER,
        attributes={"messaging.system": SYSTEM, "messaging.destination.name": queue,
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "process",
                    "messaging.message.id": message_id,
                    "workers.receive_count": receive_count})


@contextlib.contextmanager
def batch_work(queue: str, spans: Sequence[Span]) -> Iterator[None]:
    """Where a batch handler's shared work goes: the message's own process span for a batch
    of one; for more, a ``process {queue}`` span of the batch, linked to each message's."""
    if len(spans) <= 1:
        with current(spans[0] if spans else None):
            yield
        return
    assert _tracer is not None
    with _tracer.start_as_current_span(
            f"process {queue}", context=Context(), kind=SpanKind.CONSUMER,
            links=[Link(s.get_span_context()) for s in spans],
            attributes={"messaging.system": SYSTEM, "messaging.destination.name": queue,
                        "messaging.operation.type": "process",
                        "messaging.operation.name": "process",
                        "messaging.batch.message_count": len(spans)}):
        yield


def current(span: Span | None) -> contextlib.AbstractContextManager[Any]:
    """``span`` made current (not ended on exit); nothing when there is none."""
    return trace.use_span(span, end_on_exit=False) if span is not None else contextlib.nullcontext()


def remember(pairs: Iterable[tuple[object, Span | None]]) -> None:
    """Each succeeded event's process span, for ``parents_of`` while before-ack steps run."""
    for event, span in pairs:
        if event is not None and span is not None:
            _event_spans[id(event)] = span


def parents_of(events: Iterable[object]) -> list[Context | None] | None:
    """The context each event's follow-up messages are sent in (its process span's); None
    when tracing is off, which sends them as before."""
    if _tracer is None:
        return None
    spans = [_event_spans.get(id(event)) for event in events]
    return [trace.set_span_in_context(s) if s is not None else None for s in spans]


def carried(messages: Iterable[Any]) -> list[Context | None] | None:
    """The context each received message carries (``extract``); None when tracing is off."""
    if _tracer is None:
        return None
    return [extract(m.attributes, m.trace_header) for m in messages]


def end_process(span: Span, kind: str, reason: str | None, deferred: bool,
                event: object = None) -> None:
    """Ends a process span with its outcome: a failure is an error, unless the message only
    waits its turn (deferred)."""
    _event_spans.pop(id(event), None)
    outcome = "deferred" if deferred else kind
    span.set_attribute(OUTCOME, outcome)
    if outcome in ("retried", "dead_lettered"):
        span.set_attribute("error.type", "permanent" if outcome == "dead_lettered"
                           else "transient")
        span.set_status(Status(StatusCode.ERROR, reason))
    span.end()


def ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the current span, for a log line; empty outside one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"),
            "span_id": format(context.span_id, "016x")}


def add_ids(_logger: object, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: the current span's ids on every line written inside one."""
    event.update(ids())
    return event


def exemplar() -> dict[str, str] | None:
    """The current span's trace id, as a Prometheus exemplar of an observation."""
    found = ids()
    return {"trace_id": found["trace_id"]} if found else None


# -- sending ------------------------------------------------------------------------------------

class Sends:
    """The ``send {queue}`` spans of one send call, one per message, and the attributes that
    carry each one's context. Made only when tracing is on."""

    def __init__(self, queue: str, attributes: Sequence[Mapping[str, Any]],
                 parents: Sequence[Context | None] | None = None):
        assert _tracer is not None
        self.queue = queue
        self.spans: list[Span] = []
        self.attributes: list[dict[str, Any]] = []
        self.headers: list[str] = []
        self._open: set[int] = set()
        for i, own in enumerate(attributes):
            # A message sent again (a dead letter replayed) goes on in the trace it carries.
            parent = (parents[i] if parents else None) or extract(own, None)
            span = _tracer.start_span(
                f"send {queue}", context=parent, kind=SpanKind.PRODUCER,
                attributes={"messaging.system": SYSTEM, "messaging.destination.name": queue,
                            "messaging.operation.type": "send",
                            "messaging.operation.name": "send"})
            self.spans.append(span)
            self._open.add(i)
            self.attributes.append(self._with_context(own, span))
            carrier: dict[str, str] = {}
            _XRAY.inject(carrier, context=trace.set_span_in_context(span))
            self.headers.append(carrier.get(TRACE_HEADER_KEY, ""))

    def _with_context(self, own: Mapping[str, Any], span: Span) -> dict[str, Any]:
        """The sender's attributes, then ``traceparent`` and ``tracestate`` as room allows;
        an older context of ours (a replayed message's) is replaced, never kept twice."""
        kept = {k: v for k, v in own.items() if k not in (TRACEPARENT, TRACESTATE)}
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, context=trace.set_span_in_context(span))
        for name in (TRACEPARENT, TRACESTATE):
            if name not in carrier:
                continue
            if len(kept) >= MAX_ATTRIBUTES:
                if name == TRACEPARENT:
                    metrics.TRACE_CONTEXT_DROPPED.labels(self.queue).inc()
                    span.set_attribute("workers.traceparent_dropped", True)
                break
            kept[name] = {"DataType": "String", "StringValue": carrier[name]}
        return kept

    def calling(self, send: Any, group: Sequence[int]) -> Any:
        """``send`` (SendMessageBatch) for the entries of ``group``, with each entry's
        AWSTraceHeader, ending their spans with SQS's answer."""
        def call(**request: Any) -> Any:
            entries = [{**entry, "MessageSystemAttributes": {AWS_TRACE_HEADER: {
                "DataType": "String", "StringValue": self.headers[group[int(entry["Id"])]]}}}
                for entry in request.pop("Entries")]
            try:
                response = send(Entries=entries, **request)
            except Exception as exc:
                self._fail(group, exc)
                raise
            self._answered(group, response)
            return response
        return call

    def _answered(self, group: Sequence[int], response: Mapping[str, Any]) -> None:
        for sent in response.get("Successful", []):
            span = self.spans[group[int(sent["Id"])]]
            span.set_attribute("messaging.message.id", sent["MessageId"])
        for failed in response.get("Failed", []):
            span = self.spans[group[int(failed["Id"])]]
            span.set_attribute("error.type", failed.get("Code", "Failed"))
            span.set_status(Status(StatusCode.ERROR, failed.get("Message")))
        self._end(group)

    def _fail(self, group: Sequence[int], exc: Exception) -> None:
        """A call that raised: the group's spans end failed; so do the others when the error
        leaves the send (not an answer of SQS's)."""
        ending = group if isinstance(exc, ClientError) else sorted(self._open)
        for i in ending:
            self.spans[i].record_exception(exc)
            self.spans[i].set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        self._end(ending)

    def _end(self, indexes: Iterable[int]) -> None:
        for i in indexes:
            if i in self._open:
                self._open.discard(i)
                self.spans[i].end()


def system_attribute_names(names: Sequence[str]) -> list[str]:
    """What a receive asks for: ``names``, and AWSTraceHeader when tracing is on."""
    return [*names, AWS_TRACE_HEADER] if _tracer is not None else list(names)


def without_instrumentation(sqs: Any) -> Any:
    """An SQS client that skips botocore's instrumentation, tracing on: its span of an SQS call
    is dropped anyway (``tracing_sdk.MessagesOnly``), and making it cost about as much CPU as
    the call itself (measured: 250 µs a call), a daemon's receives and deletes included."""
    if _tracer is None:
        return sqs
    patched = BaseClient.__dict__.get("_make_api_call")
    original = getattr(patched, "__wrapped__", None)  # wrapt's, while it is instrumented
    if original is not None:
        sqs._make_api_call = types.MethodType(original, sqs)
    return sqs


# -- calls with no instrumentation of their own ------------------------------------------------

def client_span(name: str, attributes: Mapping[str, Any]) -> contextlib.AbstractContextManager:
    """A CLIENT span around a call (SMTP); nothing at all when tracing is off."""
    if _tracer is None:
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=dict(attributes))


def _string(value: Any) -> str | None:
    return value.get("StringValue") if isinstance(value, Mapping) else None


__all__ = ["Sends", "TracingError", "configure", "enabled", "extract", "requested"]
