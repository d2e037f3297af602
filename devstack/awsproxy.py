"""A reverse proxy in front of moto's server (or any AWS stand-in) that counts, slows and
breaks what goes through it: the bench's SQS bill and the chaos suite's faults, one process.

Every request is forwarded upstream unchanged, except for what it is told to do:

* ``--count``: SQS requests tallied by action, with the entries batches carried, the messages
  receives returned and the deletes the upstream confirmed; ``GET /__bench/counts`` returns
  them as JSON. The bill, measured where AWS would bill it.
* ``--delay-ms D``: every forwarded call waits D ms first. moto answers in microseconds on
  loopback, real SQS in milliseconds; a runtime that keeps several calls in flight hides that
  wait where one that makes them one after the other pays it on every call.
* ``--s3-faults``: S3 PutObject fails, decided once per object key (boto3 retries a PUT under
  the same key): a fraction of objects is *flaky* (the first attempt gets 503 SlowDown, boto3's
  own retry gets through) and a fraction is *doomed* (every attempt gets 500 InternalError, so
  the archive write fails and the consumer leaves its messages for SQS to redeliver). An object
  is doomed only if none of the update_ids in it was in a doomed object before: no event meets
  more than one failed archive write, so these faults alone never push a valid event to its DLQ.
* ``--control-port C``: a second port, up through outages. ``POST /outage?seconds=S`` makes
  the endpoint stop listening and drop every open connection for S seconds (clients get
  "connection refused"), then listen again on the same port, answering once it is back; the
  upstream keeps running, and so keeps its queues. ``GET /stats`` returns what the proxy did.

Run as its own process, so its CPU and GIL stay out of the figures of what it serves, and
stopped by its PID: ``python -m devstack.awsproxy --port P --upstream-port M ...``;
:func:`service` builds that command line.
"""

from __future__ import annotations

import argparse
import errno
import gzip
import http.client
import json
import random
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack import Service, module_env

COUNTS_PATH = "/__bench/counts"
# Hop-by-hop headers describe one connection, not the request; Expect is answered here (the
# request handler sends "100 Continue" itself), so the upstream gets the body in one go.
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
# A fleet opens many connections at once (lanes, heartbeats): a deep backlog avoids resets.
BACKLOG = 256
BATCH_ACTIONS = ("DeleteMessageBatch", "SendMessageBatch", "ChangeMessageVisibilityBatch")
OK, FLAKY, DOOMED = "ok", "flaky", "doomed"
S3_ERROR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            "<Message>injected by the fault proxy</Message>"
            "<RequestId>awsproxy</RequestId></Error>")


# -- counting ---------------------------------------------------------------------------------

class Tally:
    """Requests by action, plus the entries batches carried, the messages receives returned and
    the messages the upstream confirmed deleted."""

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
        return str(target).rsplit(".", 1)[-1]
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
    """Messages a delete removed, once the upstream has answered: a delete still on its way
    when the consumer is stopped has not happened, and the bench must not take it for done."""
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


def deleted(counts: dict[str, Any]) -> int:
    """Messages the consumer deleted, batched or one by one, as the upstream confirmed."""
    return int(counts["deleted"])


def fetch_counts(port: int) -> dict[str, Any]:
    """A counting proxy's tallies, read over HTTP by another process."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", COUNTS_PATH)
        counts: dict[str, Any] = json.loads(conn.getresponse().read())
        return counts
    finally:
        conn.close()


# -- faults -----------------------------------------------------------------------------------

class Faults:
    """Which S3 PUTs fail (none unless ``s3``), and the tallies of what this proxy did."""

    def __init__(self, s3: bool = False, flaky_rate: float = 0.0, doomed_rate: float = 0.0,
                 seed: int = 0):
        self.s3 = s3
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


# -- the proxy --------------------------------------------------------------------------------

@dataclass
class Options:
    upstream_port: int
    count: bool = False
    delay_ms: float = 0.0
    faults: Faults | None = None


class ProxyHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 lets boto3 keep its connection to us; moto closes its own after every response,
    # so each request opens a fresh upstream connection.
    protocol_version = "HTTP/1.1"
    # Without TCP_NODELAY a small response written after its headers meets the client's delayed
    # ACK: ~40 ms a request, which would make the proxy the thing measured.
    disable_nagle_algorithm = True
    timeout = IDLE_SECONDS
    server: "Endpoint"  # type: ignore[assignment]

    def do_GET(self) -> None:
        if self.path == COUNTS_PATH and self.server.tally is not None:
            self._reply(200, json.dumps(self.server.tally.snapshot()).encode(),
                        [("Content-Type", "application/json")])
        else:
            self._forward()

    def do_POST(self) -> None:
        self._forward()

    do_PUT = do_DELETE = do_HEAD = do_POST

    def _forward(self) -> None:
        announced = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(announced)
        if len(body) < announced:
            # The client went away mid-body (a daemon killed while it sent): AWS stores or does
            # nothing of a request it did not receive whole, so neither does the proxy (moto
            # would keep a truncated S3 object under the whole body's checksum).
            self.close_connection = True
            return
        server, tally = self.server, self.server.tally
        server.faults.count("requests")
        action, entries = "", 0
        if tally is not None:
            action = action_of(self.headers, self.path, body)
            entries = batch_entries(action, body)
            tally.request(action, entries)
        if server.faults.s3 and self._s3_fault(body):
            return
        if server.delay:
            time.sleep(server.delay)  # one thread per connection: calls in flight overlap
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", server.upstream_port,
                                              timeout=UPSTREAM_TIMEOUT)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            out = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        except OSError as exc:
            server.faults.count("upstream_errors")
            self._reply(502, f"awsproxy: {exc}".encode(), [])
            return
        finally:
            upstream.close()
        if tally is not None:
            self._count_answer(tally, action, entries, response.status, payload)
        self._reply(response.status, payload, out)

    def _s3_fault(self, body: bytes) -> bool:
        """Answers an S3 PUT doomed to fail here; False if it is to be forwarded."""
        key = s3_put_key(self.command, self.path, self.headers)
        if key is None:
            return False
        self.server.faults.count("s3_puts")
        status = self.server.faults.put_failure(key, body)
        if status is None:
            return False
        code = "InternalError" if status == 500 else "SlowDown"
        self._reply(status, S3_ERROR.format(code=code).encode(),
                    [("Content-Type", "application/xml")])
        return True

    @staticmethod
    def _count_answer(tally: Tally, action: str, entries: int, status: int,
                      payload: bytes) -> None:
        if action == "ReceiveMessage":
            received = received_count(payload)
            if received is not None:
                tally.receive_returned(received)
        elif action in ("DeleteMessage", "DeleteMessageBatch"):
            tally.delete_returned(deleted_count(action, status, payload, entries))

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

    def __init__(self, port: int, options: Options):
        self.port, self.upstream_port = port, options.upstream_port
        self.delay = options.delay_ms / 1000
        self.tally = Tally() if options.count else None
        self.faults = options.faults or Faults()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None

    def listen(self) -> None:
        listener = self._bind()
        self._stop.clear()
        self._loop = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._loop.start()

    def wait(self) -> None:
        """Until the process is stopped (the accept loop is restarted by outages)."""
        threading.Event().wait()

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
        self.faults.count("outages")
        self.faults.count("connections_dropped", len(dropped))
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
            listener.listen(BACKLOG)
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
            ProxyHandler(conn, address, self)  # type: ignore[arg-type]  # serves keep-alive
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


# -- starting it ------------------------------------------------------------------------------

def service(port: int, upstream_port: int, log_path: Path | None = None, *, count: bool = False,
            delay_ms: float = 0.0, control_port: int | None = None, s3_faults: bool = False,
            s3_flaky_rate: float = 0.0, s3_doomed_rate: float = 0.0, seed: int = 0,
            name: str = "awsproxy") -> Service:
    """The proxy as a Service, not started yet (so it can be stopped whatever happens to its
    start). With a ``control_port``, wait for that port too before using it."""
    argv = [sys.executable, "-m", "devstack.awsproxy", "--port", str(port),
            "--upstream-port", str(upstream_port)]
    if count:
        argv.append("--count")
    if delay_ms:
        argv += ["--delay-ms", str(delay_ms)]
    if control_port is not None:
        argv += ["--control-port", str(control_port)]
    if s3_faults:
        argv += ["--s3-faults", "--s3-flaky-rate", str(s3_flaky_rate),
                 "--s3-doomed-rate", str(s3_doomed_rate), "--seed", str(seed)]
    return Service(name, argv, port, log_path, env=module_env())


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="where clients connect")
    parser.add_argument("--upstream-port", type=int, required=True, help="moto's server")
    parser.add_argument("--count", action="store_true",
                        help=f"tally SQS requests; GET {COUNTS_PATH} returns them")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="added to every forwarded call (default: none)")
    parser.add_argument("--control-port", type=int,
                        help="GET /stats, POST /outage?seconds=S (default: no control port)")
    parser.add_argument("--s3-faults", action="store_true", help="fail some S3 PutObject calls")
    parser.add_argument("--s3-flaky-rate", type=float, default=0.05,
                        help="with --s3-faults: objects whose first PUT fails with 503")
    parser.add_argument("--s3-doomed-rate", type=float, default=0.05,
                        help="with --s3-faults: objects whose every PUT fails with 500")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(args)
    faults = Faults(opts.s3_faults, opts.s3_flaky_rate, opts.s3_doomed_rate, opts.seed)
    endpoint = Endpoint(opts.port, Options(opts.upstream_port, opts.count, opts.delay_ms, faults))
    endpoint.listen()
    control = ControlServer(opts.control_port, endpoint) if opts.control_port else None
    try:
        if control is not None:
            control.serve_forever()
        else:
            endpoint.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if control is not None:
            control.server_close()


if __name__ == "__main__":
    main()
