"""What one request may be: every part of it capped before it is kept (workers.readapi.protocol
checks each as the parser hands it over), and every refusal a JSON 400.

A share button's request is a line of a few hundred bytes and a few headers. What a client
sends beyond the caps is refused before it is buffered, so no request, however large, makes
this process hold more than the caps or ask Redis for more than 100 counters.
"""

from __future__ import annotations

import json

from workers.links.urls import MAX_URL_LENGTH

# The request line: a batch of 100 URLs of the longest kind (2,048 characters each), a third
# of each percent-escaped, fits; nothing a button sends comes near.
MAX_TARGET_BYTES = 100 * MAX_URL_LENGTH * 5 // 3 + 4096
# Headers together: what proxies commonly accept (nginx's 4 buffers of 8 KiB is 32 KiB); a
# browser sends 1 to 2 KiB, cookies included.
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 100
# Every route is read with GET: a body has no use, a small one is tolerated (some clients send
# an empty form), a larger one refused.
MAX_BODY_BYTES = 8 * 1024
# A client that has connected, or begun a request, must have sent all of its head within this
# long; a slow trickle of bytes (slowloris) cannot hold a connection open longer.
HEAD_TIMEOUT_SECONDS = 10.0
# Idle keep-alive connections close after this long: a CDN or a load balancer reuses them
# within it; a browser's idle tab does not keep one open for nothing.
KEEP_ALIVE_SECONDS = 15.0
# Requests one connection may have waiting for their answers (HTTP/1.1 pipelining): past it,
# reading pauses until answers go out, so a client cannot queue work without bound.
MAX_PIPELINED = 32


class TooLarge(Exception):
    """A part of the request is over its cap; the message says which."""


def refusal(message: str) -> bytes:
    """A whole HTTP/1.1 400 answer that closes the connection."""
    body = json.dumps({"error": message}).encode()
    return (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"access-control-allow-origin: *\r\nx-content-type-options: nosniff\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
