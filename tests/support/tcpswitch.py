"""A TCP proxy that forwards to one upstream and can be switched to another: a DNS name or a
load balancer that a failover points at the new primary.

Runs on threads of the test's process (the daemons under test are processes of their own).
``switch(port, close_existing=False)`` sends new connections to ``port`` and leaves those
already open where they were, as a DNS change does; ``close_existing=True`` drops them too, as
a proxy that closes its backends' connections does.
"""

from __future__ import annotations

import socket
import threading

from devstack import free_port

# A pump reads this much at a time: enough for a pipeline of Redis commands.
CHUNK = 65536


class TCPSwitch:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="tcpswitch").start()

    def switch(self, upstream_port: int, close_existing: bool = False) -> None:
        with self._lock:
            self.upstream_port = upstream_port
            dropped = self._open if close_existing else []
            if close_existing:
                self._open = []
        for pair in dropped:
            _close(*pair)

    def stop(self) -> None:
        self._closed.set()
        self._listener.close()
        self.switch(self.upstream_port, close_existing=True)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            with self._lock:
                port = self.upstream_port
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                client.close()  # as an endpoint with nothing behind it would
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    _close(source, sink)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
