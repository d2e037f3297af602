"""A fault-injecting reverse proxy in front of moto's server, for the chaos suite.

Every AWS client of the fleet points at it (``AWS_ENDPOINT_URL``), SQS and the S3 link archive
alike, and it forwards each request to moto unchanged, except for the faults it is told to make:

* **S3 PutObject fails**, decided once per object key (boto3 retries a PUT under the same key):
  a fraction of objects is *flaky* (the first attempt gets 503 SlowDown, boto3's own retry gets
  through) and a fraction is *doomed* (every attempt gets 500 InternalError, so the archive write
  fails and the consumer leaves its messages for SQS to redeliver). An object is doomed only if
  none of the update_ids in it was in a doomed object before: no event meets more than one
  failed archive write, so these faults alone can never push a valid event to its DLQ.
* **Outages**: the endpoint stops listening and drops every open connection for a few seconds,
  so clients get "connection refused", then listens again on the same port. moto keeps running,
  and so keeps its queues and their messages (stopping moto would lose them).

Run as its own process (its CPU and GIL stay out of the test's), stopped by its PID:
``python tests/support/faultproxy.py --port P --control-port C --upstream-port M``. The control port
stays up through outages: ``POST /outage?seconds=S`` answers once the endpoint is back,
``GET /stats`` returns the tallies as JSON.
"""

from __future__ import annotations

import argparse
import errno
import gzip
import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Hop-by-hop headers describe one connection, not the request; Expect is answered here (the
# request handler sends "100 Continue" itself), so moto gets the body in one go.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "content-length", "expect"}
# Long polls last up to 20 s; leave room.
UPSTREAM_TIMEOUT = 60.0
# A client that keeps a connection open and idle this long is dropped, so threads do not pile up.
IDLE_SECONDS = 120
# How often the accept loop looks for an outage's stop flag.
ACCEPT_POLL_SECONDS = 0.1
# After an outage, the port may take a moment to be free to bind again (sockets closing).
REBIND_SECONDS = 10.0
OK, FLAKY, DOOMED = "ok", "flaky", "doomed"
S3_ERROR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            "<Message>injected by the chaos suite's fault proxy</Message>"
            "<RequestId>faultproxy</RequestId></Error>")


class Faults:
    """Which S3 PUTs fail, and the tallies of what this proxy did."""

    def __init__(self, flaky_rate: float, doomed_rate: float, seed: int):
        self.flaky_rate, self.doomed_rate = flaky_rate, doomed_rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.fates: dict[str, str] = {}
        self.retried: set[str] = set()  # flaky objects whose one failure has been served
        self.doomed_updates: set[str] = set()
        self.tally: Counter[str] = Counter()

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.tally[name] += n

    def put_failure(self, key: str, body: bytes) -> int | None:
        """The status this PUT of ``key`` fails with, or None to forward it."""
        with self.lock:
            fate = self.fates.get(key)
            if fate is None:
                fate = self.fates[key] = self._decide(update_ids(body))
                self.tally[f"objects_{fate}"] += 1
            if fate == DOOMED or (fate == FLAKY and key not in self.retried):
                self.retried.add(key)
                self.tally["s3_puts_failed"] += 1
                return 500 if fate == DOOMED else 503
        return None

    def _decide(self, updates: set[str]) -> str:
        # The first two objects are doomed and flaky: even the shortest run meets both.
        first = not self.tally["objects_doomed"]
        draw = self.rng.random()
        if (first or draw < self.doomed_rate) and updates and not updates & self.doomed_updates:
            self.doomed_updates |= updates
            return DOOMED
        if not self.tally["objects_flaky"] or draw < self.doomed_rate + self.flaky_rate:
            return FLAKY
        return OK

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.tally)


def update_ids(body: bytes) -> set[str]:
    """The update_ids of an archive object (gzip JSON lines); none if it is something else."""
    try:
        lines = gzip.decompress(body).decode().splitlines()
        return {str(json.loads(line)["update_id"]) for line in lines if line.strip()}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def s3_put_key(method: str, path: str, headers: Any) -> str | None:
    """The bucket/key of an S3 PutObject (path-style, as boto3 addresses an IP endpoint)."""
    if method != "PUT" or headers.get("X-Amz-Target"):
        return None
    parts = urlsplit(path)
    if parse_qs(parts.query):  # uploadId, tagging, acl...: not a plain PutObject
        return None
    key = parts.path.lstrip("/")
    return key if "/" in key else None  # a bare bucket name is CreateBucket


class ProxyHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 lets boto3 keep its connection to us; moto closes its own after every response,
    # so each request opens a fresh upstream connection.
    protocol_version = "HTTP/1.1"
    # Without TCP_NODELAY a small response written after its headers meets the client's delayed
    # ACK: ~40 ms a request.
    disable_nagle_algorithm = True
    timeout = IDLE_SECONDS
    server: "Endpoint"  # type: ignore[assignment]

    def do_POST(self) -> None:
        self._forward()

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        faults = self.server.faults
        faults.count("requests")
        key = s3_put_key(self.command, self.path, self.headers)
        if key is not None:
            faults.count("s3_puts")
            status = faults.put_failure(key, body)
            if status is not None:
                code = "InternalError" if status == 500 else "SlowDown"
                self._reply(status, S3_ERROR.format(code=code).encode(),
                            [("Content-Type", "application/xml")])
                return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port,
                                              timeout=UPSTREAM_TIMEOUT)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            out = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        except OSError as exc:
            faults.count("upstream_errors")
            self._reply(502, f"faultproxy: {exc}".encode(), [])
            return
        finally:
            upstream.close()
        self._reply(response.status, payload, out)

    def _reply(self, status: int, payload: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request would cost more than the forwarding


class Endpoint:
    """The proxy's listening side, which an outage takes away and gives back on the same port.

    Its own accept loop (not socketserver's) so that stopping really closes the listening
    socket, and every connection it accepted can be dropped."""

    def __init__(self, port: int, upstream_port: int, faults: Faults):
        self.port, self.upstream_port, self.faults = port, upstream_port, faults
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None

    def listen(self) -> None:
        listener = self._bind()
        self._stop.clear()
        self._loop = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._loop.start()

    def outage(self, seconds: float) -> int:
        """Refuses connections for ``seconds``; returns how many open ones it dropped."""
        self._stop.set()
        if self._loop is not None:
            self._loop.join()  # the loop closes the listening socket on its way out
        with self._lock:
            dropped = list(self._connections)
        for conn in dropped:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        time.sleep(seconds)
        self.listen()
        return len(dropped)

    def _bind(self) -> socket.socket:
        deadline = time.monotonic() + REBIND_SECONDS
        while True:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", self.port))
            except OSError as exc:
                listener.close()
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            # A fleet opens many connections at once (lanes, heartbeats): a deep backlog.
            listener.listen(256)
            listener.settimeout(ACCEPT_POLL_SECONDS)
            return listener

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while not self._stop.is_set():
                try:
                    conn, address = listener.accept()
                except TimeoutError:
                    continue
                with self._lock:
                    self._connections.add(conn)
                threading.Thread(target=self._serve, args=(conn, address), daemon=True).start()

    def _serve(self, conn: socket.socket, address: Any) -> None:
        try:
            ProxyHandler(conn, address, self)  # serves the connection's requests, keep-alive
        except OSError:
            pass  # dropped by an outage, or the client went away
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()


class ControlHandler(BaseHTTPRequestHandler):
    server: "ControlServer"

    def do_GET(self) -> None:
        if self.path != "/stats":
            self._json(404, {"error": "unknown path"})
            return
        self._json(200, self.server.endpoint.faults.snapshot())

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/outage":
            self._json(404, {"error": "unknown path"})
            return
        seconds = float(parse_qs(parts.query).get("seconds", ["3"])[0])
        dropped = self.server.endpoint.outage(seconds)
        faults = self.server.endpoint.faults
        faults.count("outages")
        faults.count("connections_dropped", dropped)
        self._json(200, {"seconds": seconds, "dropped": dropped})

    def _json(self, status: int, value: Any) -> None:
        payload = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, endpoint: Endpoint):
        super().__init__(("127.0.0.1", port), ControlHandler)
        self.endpoint = endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="where AWS clients connect")
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True, help="moto's server")
    parser.add_argument("--s3-flaky-rate", type=float, default=0.05,
                        help="objects whose first PUT fails with 503")
    parser.add_argument("--s3-doomed-rate", type=float, default=0.05,
                        help="objects whose every PUT fails with 500")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    endpoint = Endpoint(args.port, args.upstream_port,
                        Faults(args.s3_flaky_rate, args.s3_doomed_rate, args.seed))
    endpoint.listen()
    control = ControlServer(args.control_port, endpoint)
    try:
        control.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        control.server_close()


if __name__ == "__main__":
    main()
