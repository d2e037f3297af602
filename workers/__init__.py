"""workers: a fleet of SQS worker daemons.

The tree shows the layers; each module holds one concept::

    workers/
      cli.py          `workers` and its subcommands: parse, call, one error line
      readapi/        `workers links serve` (program links-api): the HTTP read API of counts
        serve.py        start-up: the Redis check, then the app on web/server.py
        app.py          the ASGI app: answers (JSON, JSONP, CORS, errors), the key cache;
                        limits.py: what a request may be; button.html
        reader.py       coalesced HGETs: one round trip for every request waiting
        metrics.py      its /metrics
      console/        `workers console`: the operators' web console and its API
        serve.py        start-up: the users file, served by web/server.py
        app.py          the app's wiring; who is asking (session or token), CSRF, roles
        api.py          the JSON API under /api/; pages.py: the pages (templates/, static/)
        access.py       the users file: argon2 hashes, hashed tokens, roles
        sessions.py     sessions and login throttling in Redis
        audit.py        the audit log: a log line and a Redis list
        tasks.py        replay tasks: the frozen set in Redis, rate, cancel, resume
        snapshot.py     one sample of the queues per interval, shared by every stream
        history.py      a point a minute per queue, kept 72 h
      ops/            operators' commands (the console drives them too)
        dlq.py          `workers dlq`: list, peek, search, replay, purge
        stats.py        `workers stats`: samples, drain rate, processes needed
        scale.py        `workers scale`: a host's counts applied through supervisord
        fleet.py        the fleet across hosts: live processes, hosts, wanted counts
        provision.py    `workers queues create`
        tables.py       the CLI's tables and ages
        rundir.py       the run directory: private or refused
      web/            what the HTTP programs share
        server.py       serve_asgi: an ASGI app on granian, its limits, a warm stop
      queues/         one module per queue: a handler class whose constructor names what it
                      uses, and build(settings, redis); __init__ wires them (BUILDS)
        serve.py        `workers run QUEUE`: a daemon's start-up (handlers, Redis check)
        publish.py  post_sent.py  analytics.py  push.py  email.py
      runtime/        what runs any queue, knowing none by name
        daemon.py       lanes until shutdown; exit 70 when a lane dies; the pauses
        consumer.py     one step: receive, dispatch (inline or pool), before-ack, acknowledge;
                        Handlers: what a queue's module hands it
        heartbeat.py    extends the visibility of messages not yet acknowledged
        shutdown.py     a flag set by SIGTERM/SIGINT, or once the parent is gone
        liveness.py     each lane's deadline to poll: /health and the last-poll gauge
        health.py       /metrics and /health of a daemon
        logs.py         structlog: one JSON object a line
        registry.py     a process's entry in the fleet's registry, refreshed by a thread
      domain/         what the product means; its three packages know nothing of each other
        links/          counting links, exactly once
          counter.py      counters and idempotency windows in Redis (Lua), WAIT
          urls.py         URL normalization: the key that counts
          marks.py        the byte format counting, archive and backfill share
          archive.py      the S3 link archive, one object per batch
          backfill.py     counts rebuilt from the archive, swapped in per bucket
        publishing/     publishing exactly once: the Redis stores around a post
          publications.py each update's publication: the exactly-once state machine
          ratelimits.py   a network's rate limit per profile, shared by the fleet
          credentials.py  access tokens by profile, never from a message
          engagement.py   a post's engagement, the newest fetch winning
        sending/        sending email and push once
          rendering.py    Jinja2 email templates from sending/templates/
          sent.py         a mark per email or push sent, so none is sent twice
      adapters/       one door per outside service
        aws.py          every boto3 client built one way; AWS_ERRORS; SNS/SES errors sorted
        sqs.py          every SQS call: receive, delete, visibility, send, dead-letter, ...
        producer.py     validated, batched enqueueing: what the API imports
        redisconn.py    REDIS_URL schemes (Sentinel, Cluster), REDIS_ERRORS, the noeviction
                        check, READONLY
        leases.py       a claim's lease renewed while its holder's call is in flight
        httpclient.py   the shared requests session: pooled, no cookies
        notify.py       Pusher, best effort
        mail.py         the MIME message; the SES and SMTP backends
        tracing.py      OpenTelemetry, off unless OTEL_* asks: spans, context in and out of
                        messages; tracing_sdk.py: the SDK, loaded only when on
        networks/       the social networks: apis(settings), one adapter per network
          base.py         SocialAPI: one HTTP call, its failures sorted
          posting.py      Poster: a create call's answer sorted (created, duplicate, rate
                          limited, unknown, refused)
          twitter.py  facebook.py  linkedin.py
      core/           imports nothing else of workers
        events.py       every queue (name, schema, processes, ports) and its event schema;
                        body -> validated event or InvalidEvent
        errors.py       PermanentError, TransientError: all a handler may raise
        message.py      the frozen Message built from boto3's response
        settings.py     the environment, read once (envvars.py: how each kind reads)
        metrics.py      the Prometheus metrics, declared once
        backoff.py      visibility timeout from the receive count
        text.py         text cut to a length, someone else's text made safe for a terminal
      devstack/       stand-ins for `make run`, the tests and the bench
        networks.py  httpfake.py  otlp.py  awsproxy.py

Floors only look down (.importlinter): entry points (cli, readapi | console, ops | web) >
queues > runtime | domain > adapters > core.
"""

from workers.core.events import QUEUES

__all__ = ["QUEUES"]
