"""The OpenTelemetry SDK as ``tracing.configure`` builds it: imported only when tracing is on.

The exporter is OTLP over HTTP (protobuf), the SDK's own; it reads its endpoint, headers,
timeout and compression from OTEL_EXPORTER_OTLP_*. The sampler is the one OTEL_TRACES_SAMPLER
names (parent-based, always on, by default), for what messages do only (``MessagesOnly``).
"""

from __future__ import annotations

import sys
from typing import Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.threading import ThreadingInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from workers.adapters.tracing import TracingError

EXPORTERS = ("otlp", "console")
_providers: list[TracerProvider] = []  # made by provider(): uninstrument() shuts them down


class MessagesOnly(Sampler):
    """The configured sampler, for what a message does. Never a span of botocore's
    instrumentation for an SQS call: a daemon's receives, deletes and visibility changes would
    each be a trace of its own, every long poll, and its sends would repeat our ``send`` spans
    (it names them ``aws.sqs`` and gives only a batch's first message id). Never a CLIENT span
    that no span contains either: a daemon's own calls between messages (Redis's checks at
    start, registry refreshes) would each be a trace of one span."""

    def __init__(self, inner: Sampler):
        self.inner = inner

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: TraceState | None = None) -> SamplingResult:
        if attributes and attributes.get("rpc.system") == "aws-api" \
                and attributes.get("rpc.service") == "SQS":
            return SamplingResult(Decision.DROP)
        if kind == SpanKind.CLIENT and \
                not get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes,
                                        links, trace_state)

    def get_description(self) -> str:
        return f"MessagesOnly{{{self.inner.get_description()}}}"


def provider(program: str, environ: Mapping[str, str]) -> TracerProvider:
    attributes = {}
    resource_attrs = environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not environ.get("OTEL_SERVICE_NAME") and f"{SERVICE_NAME}=" not in resource_attrs:
        attributes[SERVICE_NAME] = f"workers-{program}"
    # The sampler OTEL_TRACES_SAMPLER (and _ARG) name, as the SDK reads them.
    configured = TracerProvider(shutdown_on_exit=False).sampler
    tracer_provider = TracerProvider(resource=Resource.create(attributes),
                                     sampler=MessagesOnly(configured))
    for exporter in exporters(environ):
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    _providers.append(tracer_provider)
    return tracer_provider


def exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")
             if n.strip() and n.strip() != "none"] or ["otlp"]
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        raise TracingError(f"OTEL_TRACES_EXPORTER={','.join(unknown)} is not supported here: "
                           f"use {' or '.join(EXPORTERS)}")
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    if "otlp" in names and protocol != "http/protobuf":
        raise TracingError(f"OTLP protocol {protocol} is not supported here: traces go out "
                           "over http/protobuf (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)")
    out: list[SpanExporter] = []
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
            out.append(OTLPSpanExporter())
        else:  # console: stderr, since stdout carries the JSON log lines
            out.append(ConsoleSpanExporter(out=sys.stderr))
    return out


def instrument(tracer_provider: TracerProvider) -> None:
    """OpenTelemetry's own instrumentations of what handlers call: requests (the networks,
    Pusher), redis, botocore (SNS, SES, S3), and threading, so a handler's context follows the
    work it hands to a thread pool (Pusher's notifications of a batch)."""
    requests = RequestsInstrumentor()
    if not requests.is_instrumented_by_opentelemetry:
        requests.instrument(tracer_provider=tracer_provider, request_hook=_no_query)
    for instrumentor in (RedisInstrumentor(), BotocoreInstrumentor(), ThreadingInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=tracer_provider)


def uninstrument() -> None:
    """Undoes ``instrument`` and flushes and stops the provider ``provider`` made."""
    for instrumentor in (RequestsInstrumentor(), RedisInstrumentor(), BotocoreInstrumentor(),
                         ThreadingInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    for made in _providers:
        made.shutdown()
    _providers.clear()


def _no_query(span: Span, _request: object) -> None:
    """A request's URL without its query string, as our log lines write it: Pusher signs
    each request there (tokens travel in headers, which spans do not record)."""
    attributes = getattr(span, "attributes", None) or {}
    for key in ("url.full", "http.url"):
        url = attributes.get(key)
        if isinstance(url, str) and "?" in url:
            span.set_attribute(key, url.split("?", 1)[0] + "?…")
