"""What one request may be, past what the HTTP server already bounds (workers.web.server's
``Limits``: the head's bytes and time, requests in flight).

The server hands the app a whole head of at most ``Limits.head_bytes``; the app refuses, with
a JSON 400 carrying ``Access-Control-Allow-Origin``, a query or headers larger than a share
button ever sends and a body it would have to read, so no request makes this process hold
more than these caps or ask Redis for more than 100 counters.
"""

from __future__ import annotations

from workers.domain.links.urls import MAX_URL_LENGTH

# The query: a batch of 100 URLs of the longest kind (2,048 characters each), a third of each
# percent-escaped, fits. The server refuses a request target over 65,534 bytes first (414).
MAX_QUERY_BYTES = 100 * MAX_URL_LENGTH * 5 // 3 + 4096
# Headers together: what proxies commonly accept (nginx's 4 buffers of 8 KiB is 32 KiB); a
# browser sends 1 to 2 KiB, cookies included.
MAX_HEADER_BYTES = 32 * 1024
# Every route is read with GET: a body has no use, a small one is tolerated (some clients send
# an empty form); an announced larger one is refused before it is read.
MAX_BODY_BYTES = 8 * 1024
