"""A TCP proxy in front of one server that counts round trips: each time a client sends after
the server has answered (or for the first time), the client is waiting on one more exchange.
A pipeline of commands sent together is one; a call per command is one each.

Runs on threads of the test's process; the client under test connects to ``port``.
"""

from __future__ import annotations

import selectors
import socket
import threading

from devstack import free_port

CHUNK = 65536


class RoundTrips:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._count = 0
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=16)
        threading.Thread(target=self._accept, daemon=True, name="roundtrips").start()

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def reset(self) -> None:
        with self._lock:
            self._count = 0

    def stop(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            upstream.settimeout(None)
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Both directions on one thread, so the order of a request and its answer is seen."""
        answered = True  # nothing asked yet: the client's first bytes begin a round trip
        with selectors.DefaultSelector() as selector, client, upstream:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            while True:
                for key, _ in selector.select():
                    source, sink = key.fileobj, key.data
                    try:
                        data = source.recv(CHUNK)  # type: ignore[union-attr]
                        if not data:
                            return
                        if source is client and answered:
                            with self._lock:
                                self._count += 1
                        answered = source is upstream
                        sink.sendall(data)
                    except OSError:
                        return
