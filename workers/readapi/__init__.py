"""``workers links serve``: the HTTP read API of link counts (SPEC.md, "The read API of link
counts"), what share buttons and the product's API read.

* ``app``: what each request is answered (routes, parameters, answers), no framework;
* ``reader``: counts from Redis, the HGETs of concurrent requests in one pipelined round trip;
* ``limits``: the caps on a request's line, headers and body, and the JSON 400 past them;
* ``protocol``: HTTP/1.1 connections, parsed by httptools, checked against the caps;
* ``serve``: start-up (the Redis check, a SO_REUSEPORT socket) and a warm stop, on uvloop;
* ``button.html``: a share button reading its count by JSONP, served at ``/``.
"""
