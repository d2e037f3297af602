"""A counting reverse proxy in front of moto: the SQS bill, measured where AWS would bill it.

Run as its own process (``python bench/sqsproxy.py --port P --upstream-port M``) so its CPU
and GIL stay out of the consumer's and the bench's figures. Every request is forwarded to moto
unchanged and counted by SQS action; ``GET /__bench/counts`` returns the tallies as JSON.
With ``--delay-ms D`` every forwarded call waits D ms first: moto answers in microseconds on
loopback, real SQS in milliseconds, and a runtime that keeps several calls in flight hides
that wait where one that makes them one after the other pays it on every call.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATS_PATH = "/__bench/counts"
# Hop-by-hop headers describe one connection, not the request: never forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "content-length"}
# Long polls last up to 20 s; leave room.
UPSTREAM_TIMEOUT = 60.0
BATCH_ACTIONS = ("DeleteMessageBatch", "SendMessageBatch", "ChangeMessageVisibilityBatch")


class Tally:
    """Requests by action, plus the entries batches carried, the messages receives returned and
    the messages moto confirmed deleted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.entries: Counter[str] = Counter()
        self.received = 0
        self.empty_receives = 0
        self.deleted = 0

    def request(self, action: str, entries: int = 0) -> None:
        """Counted on arrival: a long poll is on the bill (and visible) before it returns."""
        with self._lock:
            self.requests[action] += 1
            self.entries[action] += entries

    def receive_returned(self, messages: int) -> None:
        with self._lock:
            self.received += messages
            self.empty_receives += messages == 0

    def delete_returned(self, messages: int) -> None:
        with self._lock:
            self.deleted += messages

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": dict(self.requests), "entries": dict(self.entries),
                    "total": sum(self.requests.values()), "received": self.received,
                    "empty_receives": self.empty_receives, "deleted": self.deleted}


def action_of(headers: Any, path: str, body: bytes) -> str:
    """boto3 speaks SQS's JSON protocol (X-Amz-Target); older clients the query protocol."""
    target = headers.get("X-Amz-Target", "")
    if target:
        return target.rsplit(".", 1)[-1]
    query = parse_qs(urlsplit(path).query)
    if "Action" not in query and body:
        query = parse_qs(body.decode("utf-8", "replace"))
    return query.get("Action", ["other"])[0]


def batch_entries(action: str, body: bytes) -> int:
    if action not in BATCH_ACTIONS:
        return 0
    try:
        return len(json.loads(body).get("Entries", []))
    except (ValueError, AttributeError):
        return 0  # query protocol: the request still counts, its entries are not itemized


def deleted_count(action: str, status: int, payload: bytes, entries: int) -> int:
    """Messages a delete removed, once moto has answered: a delete still on its way when the
    consumer is stopped has not happened, and the bench must not take it for done."""
    if status != 200:
        return 0
    if action == "DeleteMessage":
        return 1
    try:
        return len(json.loads(payload).get("Successful", []))
    except (ValueError, AttributeError):
        return entries  # query protocol: trust the request's entries


def received_count(payload: bytes) -> int | None:
    try:
        return len(json.loads(payload).get("Messages", []))
    except (ValueError, AttributeError):
        return None


class ProxyHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 lets boto3 keep its connection to us; moto closes its own after every response,
    # so each request opens a fresh upstream connection below.
    protocol_version = "HTTP/1.1"
    # Without TCP_NODELAY, a small response written after its headers meets the client's
    # delayed ACK: ~40 ms a request, which would make the proxy the thing measured.
    disable_nagle_algorithm = True
    server: "ProxyServer"

    def do_GET(self) -> None:
        if self.path == STATS_PATH:
            self._reply(200, json.dumps(self.server.tally.snapshot()).encode(),
                        [("Content-Type", "application/json")])
        else:
            self._forward()

    def do_POST(self) -> None:
        self._forward()

    do_PUT = do_DELETE = do_HEAD = do_POST

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = action_of(self.headers, self.path, body)
        entries = batch_entries(action, body)
        self.server.tally.request(action, entries)
        if self.server.delay:
            time.sleep(self.server.delay)  # one thread per request: calls in flight overlap
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port,
                                              timeout=UPSTREAM_TIMEOUT)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            out = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        except OSError as exc:
            self._reply(502, f"proxy: {exc}".encode(), [])
            return
        finally:
            upstream.close()
        received = received_count(payload) if action == "ReceiveMessage" else None
        if received is not None:
            self.server.tally.receive_returned(received)
        if action in ("DeleteMessage", "DeleteMessageBatch"):
            self.server.tally.delete_returned(
                deleted_count(action, response.status, payload, entries))
        self._reply(response.status, payload, out)

    def _reply(self, status: int, payload: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would cost more than the forwarding


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    # A consumer opens a few connections at once (lanes, heartbeat): a deep backlog avoids resets.
    request_queue_size = 128

    def __init__(self, port: int, upstream_port: int, delay_ms: float = 0.0):
        super().__init__(("127.0.0.1", port), ProxyHandler)
        self.upstream_port = upstream_port
        self.delay = delay_ms / 1000
        self.tally = Tally()


def deleted(counts: dict[str, Any]) -> int:
    """Messages the consumer deleted, batched or one by one, as moto confirmed."""
    return counts["deleted"]


def fetch_counts(port: int) -> dict[str, Any]:
    """The proxy's tallies, read over HTTP by the bench process."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", STATS_PATH)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="added to every forwarded SQS call (default: none)")
    args = parser.parse_args()
    server = ProxyServer(args.port, args.upstream_port, args.delay_ms)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
