"""Clients that try to exhaust a read API process (SPEC.md, "The read API of link counts"),
and what the process does meanwhile: its resident size, and whether another client's request
is answered. Shared by tests/test_read_api_hostile.py (a few seconds each) and
bench/readbench.py (the peak RSS column of the bench's table).

Each hostile client runs in a thread until its deadline, reconnecting whenever the server
closes on it (a refusal ends one attempt, not the attack).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import requests

SHARES = "/1/links/shares.json"
# Each hostile client's requests go in chunks of this; a small receive buffer on its side
# makes the server's answers back up at once rather than after the kernel's few MB.
CHUNK = 64 * 1024
RECEIVE_BUFFER = 4096
# How long another client waits for its answer before we call it unanswered.
OTHER_TIMEOUT_S = 5.0
# Padded URLs: each is a distinct valid URL behind this many spaces (``+`` in a query), which
# normalization strips; the whole request stays under a request target's 65,534 bytes.
PADDING = 60_000
# Distinct padded URLs one siege asks at most: 1,500 of 60 KB would be 90 MB in a cache
# that kept them.
PADDED_URLS = 1_500


def rss_mib(pid: int) -> float:
    """The process's resident size now (VmRSS), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _connect(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(0.5)
    return sock


def _send_until(port: int, deadline: float, opening: bytes, more: bytes) -> int:
    """Sends ``opening`` then ``more`` again and again, never reading, until ``deadline``;
    connects again when the server closes. Returns the bytes the server took."""
    sent = 0
    while time.monotonic() < deadline:
        try:
            with _connect(port) as sock:
                sock.sendall(opening)
                while time.monotonic() < deadline:
                    try:
                        sent += sock.send(more)
                    except socket.timeout:
                        continue  # the server reads no more: what we want to see it hold
        except OSError:
            time.sleep(0.01)  # closed on us (a refusal): again
    return sent


def pipeliner(port: int, deadline: float) -> int:
    """Pipelines requests for the button page (a short request, a 2 KB answer) and never
    reads an answer."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    return _send_until(port, deadline, b"", request * (CHUNK // len(request)))


def endless_header(port: int, deadline: float) -> int:
    """Sends one header whose value never ends."""
    opening = f"GET {SHARES}?url=buffer.com HTTP/1.1\r\nHost: x\r\nX-Endless: ".encode()
    return _send_until(port, deadline, opening, b"a" * CHUNK)


def padded_urls(port: int, deadline: float, connections: int = 4) -> int:
    """Asks for distinct valid URLs, each padded with spaces, over a few connections, reading
    every answer (clients like any other, but for the padding); returns how many were
    answered. http.client, not requests: requests re-quotes each 60 KB URL, at 30 ms a
    request."""
    numbers = iter(range(PADDED_URLS))
    answered = [0] * connections

    def ask(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for n in numbers:  # shared: each number is asked once, by one connection
                if time.monotonic() > deadline:
                    return
                try:
                    connection.request("GET", f"{SHARES}?url={'+' * PADDING}example.com/{n}")
                    connection.getresponse().read()
                except (OSError, http.client.HTTPException):
                    connection.close()  # it connects again for the next one
                    continue
                answered[slot] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(answered)


HOSTILE: dict[str, Callable[[int, float], int]] = {
    "pipeliner": pipeliner, "endless_header": endless_header, "padded_urls": padded_urls}


@dataclass
class Siege:
    """What a process did while one hostile client ran."""

    rest_mib: float
    peak_mib: float = 0.0
    other_requests: int = 0
    other_unanswered: int = 0
    other_worst_s: float = 0.0
    hostile_total: int = 0  # bytes the server took, or padded URLs it answered
    errors: list[str] = field(default_factory=list)

    @property
    def growth_mib(self) -> float:
        return self.peak_mib - self.rest_mib


def siege(kind: str, pid: int, port: int, seconds: float) -> Siege:
    """Runs the hostile client ``kind`` for ``seconds`` against the process ``pid`` on
    ``port``, sampling its RSS and asking /health from another connection meanwhile."""
    result = Siege(rest_mib=rss_mib(pid))
    deadline = time.monotonic() + seconds
    hostile = threading.Thread(target=lambda: setattr(
        result, "hostile_total", HOSTILE[kind](port, deadline)), daemon=True)
    hostile.start()
    result.peak_mib = result.rest_mib
    while hostile.is_alive():
        result.peak_mib = max(result.peak_mib, rss_mib(pid))
        started = time.monotonic()
        try:
            with requests.get(f"http://127.0.0.1:{port}/health", timeout=OTHER_TIMEOUT_S):
                pass
        except requests.RequestException as exc:
            result.other_unanswered += 1
            result.errors.append(type(exc).__name__)
        result.other_requests += 1
        result.other_worst_s = max(result.other_worst_s, time.monotonic() - started)
        result.peak_mib = max(result.peak_mib, rss_mib(pid))
        time.sleep(0.05)
    hostile.join()
    return result
