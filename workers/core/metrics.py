"""Prometheus metrics of one daemon, defined once; every module counts into these."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("workers_messages_received", "Messages received from SQS", ["queue"])
SUCCEEDED = Counter("workers_messages_succeeded", "Messages handled and deleted", ["queue"])
FAILED = Counter("workers_messages_failed", "Handler failures by kind (transient, permanent)",
                 ["queue", "kind"])
DEAD_LETTERED = Counter("workers_messages_dead_lettered", "Messages moved to the DLQ", ["queue"])
RETURNED = Counter("workers_messages_returned",
                   "Messages given back unstarted at shutdown", ["queue"])
DURATION = Histogram("workers_handler_duration_seconds", "Handler run time", ["queue"],
                     buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
RECEIVE_COUNT = Histogram("workers_message_receive_count",
                          "ApproximateReceiveCount of received messages", ["queue"],
                          buckets=(1, 2, 3, 4, 5, 10, 20))
VISIBILITY_EXTENSIONS = Counter("workers_visibility_extensions",
                                "Heartbeat visibility extensions", ["queue"])
INVALID_URLS = Counter("workers_invalid_urls", "URLs skipped as invalid", ["queue"])
PUSHER_FAILURES = Counter("workers_pusher_failures", "Pusher triggers that failed", ["event"])
# A daemon's lanes poll on their own; this is the one that polled least recently, so that one
# stuck lane shows (workers/runtime/liveness.py).
LAST_POLL = Gauge("workers_last_poll_timestamp_seconds",
                  "When the daemon's least recently polling lane last polled SQS", ["queue"])
# With tracing on: messages sent without a traceparent attribute because the sender's own took
# all 10 (their context still travels in AWSTraceHeader).
TRACE_CONTEXT_DROPPED = Counter("workers_trace_context_dropped",
                                "Messages sent without traceparent for lack of attribute room",
                                ["queue"])
