"""A local OTLP/HTTP traces receiver: what a collector is to the daemons, for the tests and the
bench. It decodes each ``POST /v1/traces`` (protobuf, gzip or not) with opentelemetry-proto's
``ExportTraceServiceRequest`` and keeps the spans as plain ``Span`` records."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus

from devstack.httpfake import FakeServer, Reply, Request

KINDS = {getattr(ProtoSpan, f"SPAN_KIND_{k}"): k for k in
         ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")}


@dataclass(frozen=True)
class Span:
    name: str
    kind: str  # PRODUCER, CONSUMER, CLIENT...
    trace_id: str  # hex
    span_id: str
    parent_id: str  # "" for a root span
    attributes: dict[str, Any]
    service: str  # its resource's service.name
    status: str  # UNSET, OK, ERROR
    status_message: str = ""
    start_ns: int = 0
    end_ns: int = 0
    links: tuple[str, ...] = ()  # the span ids it links to


@dataclass
class OTLPReceiver(FakeServer):
    """Every span exported to it, in arrival order (``spans()``); its ``url`` is what
    OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    record_requests: bool = False
    _spans: list[Span] = field(default_factory=list)
    _spans_lock: threading.Lock = field(default_factory=threading.Lock)
    exports: int = 0

    def answer(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v1/traces":
            return 404, {}, {"message": "not found"}
        body = request.body
        if (request.header("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        spans = list(decode(export))
        with self._spans_lock:
            self._spans.extend(spans)
            self.exports += 1
        return 200, {"Content-Type": "application/x-protobuf"}, \
            ExportTraceServiceResponse().SerializeToString()

    def spans(self) -> list[Span]:
        with self._spans_lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._spans_lock:
            self._spans.clear()


def decode(export: ExportTraceServiceRequest) -> Any:
    for resource_spans in export.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield Span(
                    name=span.name, kind=KINDS.get(span.kind, str(span.kind)),
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex(), attributes=attributes(span.attributes),
                    service=str(resource.get("service.name", "")),
                    status=ProtoStatus.StatusCode.Name(span.status.code).removeprefix(
                        "STATUS_CODE_"),
                    status_message=span.status.message,
                    start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                    links=tuple(link.span_id.hex() for link in span.links))


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs}


def value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [value(item) for item in v.array_value.values]
    return getattr(v, which) if which else None


def tree(spans: list[Span], root: Span, indent: str = "") -> list[str]:
    """``root`` and its descendants as indented lines: name, kind, service, the attributes
    that say what happened."""
    shown = ("messaging.message.id", "workers.outcome", "url.full", "http.url",
             "http.response.status_code", "http.status_code", "db.statement", "rpc.method")
    details = ", ".join(f"{k}={root.attributes[k]}" for k in shown if k in root.attributes)
    lines = [f"{indent}{root.name} [{root.kind}, {root.service}]"
             + (f" {details}" if details else "")]
    children = sorted((s for s in spans if s.parent_id == root.span_id), key=lambda s: s.start_ns)
    for child in children:
        lines.extend(tree(spans, child, indent + "  "))
    return lines
