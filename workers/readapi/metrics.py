"""The read API's Prometheus metrics, in a registry of its own (a process serves its own
figures: with several processes on one port, each scrape reaches one of them, so give each
``WORKERS_PROCESS_NUM`` its ``process`` label and sum)."""

from __future__ import annotations

import os
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Answers are expected well under a millisecond; the buckets resolve that, and a slow Redis.
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0)


class APIMetrics:
    def __init__(self, round_trips: Callable[[], int]):
        self.registry = CollectorRegistry()
        process = os.environ.get("WORKERS_PROCESS_NUM", "0")
        self._requests = Counter(
            "workers_links_api_requests", "Answers of the read API, by route and status",
            ["route", "status", "process"], registry=self.registry)
        self._latency = Histogram(
            "workers_links_api_request_seconds", "Time from a request's head to its answer",
            ["process"], buckets=LATENCY_BUCKETS, registry=self.registry).labels(process)
        self._urls = Counter("workers_links_api_urls", "URLs whose count was read",
                             ["process"], registry=self.registry).labels(process)
        trips = Gauge("workers_links_api_redis_round_trips",
                      "Pipelined reads sent to Redis (each carries every request waiting)",
                      ["process"], registry=self.registry).labels(process)
        trips.set_function(lambda: float(round_trips()))
        self._process = process
        self._children: dict[tuple[str, int], Counter] = {}

    def answered(self, route: str, status: int, seconds: float) -> None:
        child = self._children.get((route, status))
        if child is None:  # labels() looks up a dict under a lock: once per route and status
            child = self._children[route, status] = self._requests.labels(
                route, str(status), self._process)
        child.inc()
        self._latency.observe(seconds)

    def urls_read(self, n: int) -> None:
        self._urls.inc(n)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
