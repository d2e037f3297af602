"""``workers links serve``: the HTTP read API of link counts (SPEC.md, "The read API of link
counts"), what share buttons and the product's API read.

* ``app``: the ASGI application (routes, parameters, answers), no framework in between;
* ``reader``: counts from Redis, the HGETs of concurrent requests in one pipelined round trip;
* ``limits``: the HTTP protocol with caps on the request line, headers and body;
* ``serve``: start-up (the Redis checks, a SO_REUSEPORT socket) on uvicorn with uvloop;
* ``button.html``: a share button reading its count by JSONP, served at ``/``.
"""
