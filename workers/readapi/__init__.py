"""``workers links serve``: the HTTP read API of link counts (SPEC.md, "The read API of link
counts"), what share buttons and the product's API read.

* ``app``: what each request is answered (routes, parameters, answers), an ASGI app with no
  framework, and the bounded cache of normalized keys;
* ``reader``: counts from Redis, the HGETs of concurrent requests in one pipelined round trip;
* ``limits``: the caps on a request's query, headers and body the app refuses past (JSON 400);
* ``serve``: start-up (the Redis check), then the app on workers.web.server (granian);
* ``button.html``: a share button reading its count by JSONP, served at ``/``.

In code it is the read API (``readapi``, ``ReadAPI``). The names operators and SPEC.md use stay
as they are: the command ``workers links serve``, the supervisord program ``links-api``, the
variables ``WORKERS_LINKS_API_*``, the metrics ``workers_links_api_*`` and the log events
``links_api.*``.
"""
