"""The ``workers`` command. Errors are one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from workers.core.events import QUEUES, InvalidEvent, validate
from workers.core.settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DRAIN_TARGET_SECONDS,
    DEFAULT_PROCESS_RATE,
    LINKS_API_PROGRAM,
    REPLAY_VISIBILITY_SECONDS,
    Settings,
    SettingsError,
)

QUEUE = click.Choice(QUEUES)
QUEUE_ARG: dict[str, Any] = {"type": QUEUE, "metavar": "QUEUE"}


class Failure(click.ClickException):
    """A one-line error for the user."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
# The installed distribution's version (its metadata, from setup.cfg): what a bug report names.
@click.version_option(package_name="workers", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run and operate the SQS worker fleet. Configured by environment (docs/configuration.rst)."""
    ctx.obj = Settings.from_env()


@cli.group()
def queues() -> None:
    """Create and inspect the SQS queues."""


@queues.command("create")
@click.pass_obj
def queues_create(settings: Settings) -> None:
    """Create every queue, its DLQ and redrive policy (and the archive bucket when set).
    Safe to run again."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.adapters import aws
    from workers.ops import provision

    s3 = aws.client(settings, "s3") if settings.archive_bucket else None
    for url in provision.create_queues(settings, aws.client(settings), s3):
        click.echo(url)


@cli.command()
@click.argument("queue", **QUEUE_ARG)
@click.option("--concurrency", "-c", type=click.IntRange(1, 1000), default=DEFAULT_CONCURRENCY,
              show_default=True, help="Handlers running at once in this process.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_obj
def run(settings: Settings, queue: str, concurrency: int, log_level: str) -> None:
    """Consume QUEUE in the foreground until SIGTERM or SIGINT (then finish and exit 0)."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.queues.serve import serve
    from workers.runtime import logs

    _trace(queue)  # before the log lines and the consumer, which ask whether it is on
    logs.configure(log_level)
    code = serve(queue, settings, concurrency)
    sys.exit(code)


@cli.command()
@click.argument("queue", **QUEUE_ARG)
@click.argument("event", required=False)
@click.pass_obj
def send(settings: Settings, queue: str, event: str | None) -> None:
    """Validate and enqueue one EVENT (JSON), or JSON lines from stdin. Every event is
    validated before any is sent: one invalid event and nothing is sent."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.adapters.producer import Producer

    _trace("send")
    if event is not None:
        events = [_event(queue, event, "")]
    else:
        events = [_event(queue, line, f"line {n}") for n, line in enumerate(sys.stdin, 1)
                  if line.strip()]
    sent = Producer(settings).send_many(queue, events)
    click.echo(f"sent {sent} event(s) to {settings.queue_name(queue)}", err=True)


@cli.group()
def links() -> None:
    """Read link counts, serve them over HTTP, or rebuild them from the archive."""


@links.command("count")
@click.argument("urls", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
@click.pass_obj
def links_count(settings: Settings, urls: tuple[str, ...], as_json: bool) -> None:
    """Print COUNT<TAB>NORMALIZED_URL for each URL (a full URL or a normalized key)."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.adapters.redisconn import connect
    from workers.domain.links.counter import LinkCounter
    from workers.domain.links.urls import InvalidURL, normalize_key

    keys, bad = [], []
    for url in urls:
        try:
            keys.append(normalize_key(url))
        except InvalidURL as exc:
            bad.append(f"{url[:100]}: {exc}")
    counts = LinkCounter(connect(settings.redis_url), settings.link_buckets).counts(keys)
    if as_json:
        click.echo(json.dumps(dict(zip(keys, counts, strict=True))))
    else:
        for key, count in zip(keys, counts, strict=True):
            click.echo(f"{count}\t{key}")
    if bad:
        raise Failure("invalid URL " + "; ".join(bad))


@links.command("serve")
@click.pass_obj
def links_serve(settings: Settings) -> None:
    """Serve link counts over HTTP until SIGTERM: GET /1/links/shares.json?url=URL.

    On WORKERS_LINKS_API_HOST:WORKERS_LINKS_API_PORT (several processes may share the port);
    refuses to start unless Redis's maxmemory-policy is noeviction. See docs/readapi.rst, "The read
    API of link counts"."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.readapi.serve import StartupError, serve
    from workers.runtime import logs

    logs.configure()  # JSON lines with level and ts, the standard library's loggers' too
    try:
        serve(settings)
    except StartupError as exc:
        raise Failure(str(exc)) from None


@links.command("backfill")
@click.option("--settle", type=click.FloatRange(min=0), default=None,
              help="Seconds to wait after the swap for batches in flight to archive what "
                   "they counted  [default: twice WORKERS_VISIBILITY_TIMEOUT]")
@click.option("--threads", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Archive objects fetched at once.")
@click.pass_obj
def links_backfill(settings: Settings, settle: float | None, threads: int) -> None:
    """Rebuild every link count from the S3 archive (WORKERS_ARCHIVE_BUCKET).

    Counts are rebuilt aside, de-duplicated by (update_id, url), then swapped in bucket by
    bucket: readers see the old counts until then, never a partial rebuild. Daemons may keep
    running. Counts of links that are not in the archive are dropped. Progress goes to stderr.
    """
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.adapters import aws
    from workers.adapters.redisconn import connect
    from workers.domain.links.archive import Archive
    from workers.domain.links.backfill import Backfill
    from workers.domain.links.counter import LinkCounter

    if not settings.archive_bucket:
        raise Failure("WORKERS_ARCHIVE_BUCKET is not set: there is no archive to read")
    backfill = Backfill(
        Archive(aws.client(settings, "s3", pool=threads), settings.archive_bucket),
        LinkCounter(connect(settings.redis_url), settings.link_buckets),
        threads=threads, on_progress=_show_progress,
        settle=2 * settings.visibility_timeout if settle is None else settle)
    done = backfill.run()
    click.echo(f"backfill: {done.objects} objects, {done.records} records, {done.pairs} "
               f"distinct (update_id, url) pairs, {done.links} links; {done.caught_up} "
               f"counted after the swap; {done.elapsed:.1f} s, {done.rate:,.0f} records/s")


def _show_progress(progress: Any) -> None:
    pairs = f"{progress.pairs} pairs, " if progress.pairs else ""  # known from the swap on
    click.echo(f"backfill: {progress.phase}: {progress.objects}/{progress.listed} objects, "
               f"{progress.records} records, {pairs}{progress.rate:,.0f} records/s", err=True)


@cli.group()
def dlq() -> None:
    """Inspect, replay and purge the dead-letter queues (QUEUE's is QUEUE-dlq)."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_obj
def dlq_list(settings: Settings, as_json: bool) -> None:
    """Each DLQ's messages, those in flight, and the age of the oldest of up to 10 sampled."""
    import time

    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.ops import dlq as dead

    summaries, now = dead.overview(settings), time.time()
    click.echo(json.dumps([s.json(now) for s in summaries]) if as_json
               else dead.render_overview(summaries, now))


@dlq.command("peek")
@click.argument("queue", **QUEUE_ARG)
@click.option("--limit", "-n", type=click.IntRange(1), default=10, show_default=True,
              help="Messages to show at most.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, with bodies in full.")
@click.pass_obj
def dlq_peek(settings: Settings, queue: str, limit: int, as_json: bool) -> None:
    """Show QUEUE's dead letters (id, receives, error, body) and leave them in place."""
    import time

    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.ops import dlq as dead

    messages = dead.DeadLetters(settings, queue).peek(limit)
    if as_json or messages:
        render = dead.render_messages_json if as_json else dead.render_messages
        click.echo(render(messages, time.time()))


@dlq.command("replay")
@click.argument("queue", **QUEUE_ARG)
@click.option("--limit", "-n", type=click.IntRange(1), help="Move at most N messages.")
@click.option("--dry-run", is_flag=True, help="Show what would move, and move nothing.")
@click.option("--method", type=click.Choice(["auto", "task", "copy"]), default="auto",
              show_default=True, help="task: SQS's message-move task; copy: receive, send, then "
              "delete; auto: the task where the endpoint runs it and no --limit is given.")
@click.option("--visibility", type=click.IntRange(1, 43200), default=REPLAY_VISIBILITY_SECONDS,
              show_default=True, help="Seconds a batch stays hidden in the DLQ while it is "
              "copied; a killed replay's last batch reappears after this.")
@click.pass_obj
def dlq_replay(settings: Settings, queue: str, limit: int | None, dry_run: bool, method: str,
               visibility: int) -> None:
    """Move QUEUE's dead letters back to QUEUE, bodies and attributes kept (not workers.*).
    Loses none, even if killed: a message leaves the DLQ only once its copy is in QUEUE."""
    import time

    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.ops import dlq as dead

    letters = dead.DeadLetters(settings, queue)
    if dry_run:
        messages = letters.peek(limit or letters.depth().visible)
        if messages:
            click.echo(dead.render_messages(messages, time.time()))
        click.echo(f"dry run: would move {len(messages)} message(s) from {letters.dlq_name} "
                   f"to {letters.name}", err=True)
        return
    _trace("dlq")
    result = letters.replay(limit, method, visibility,
                            progress=lambda line: click.echo(f"replay: {line}", err=True))
    click.echo(result.summary(letters.dlq_name, letters.name))
    failure = result.failure(letters.dlq_name)
    if failure:
        raise Failure(failure)


@dlq.command("purge")
@click.argument("queue", **QUEUE_ARG)
@click.option("--yes", is_flag=True, help="Yes, delete every message of QUEUE's DLQ.")
@click.pass_obj
def dlq_purge(settings: Settings, queue: str, yes: bool) -> None:
    """Delete every message of QUEUE's DLQ, for good (needs --yes)."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.ops.dlq import DeadLetters

    letters = DeadLetters(settings, queue)
    if not yes:
        raise Failure(f"purge deletes every message of {letters.dlq_name} for good: add --yes")
    click.echo(f"purged {letters.dlq_name} (about {letters.purge()} message(s))")


@cli.group(invoke_without_command=True)
@click.pass_context
def console(ctx: click.Context) -> None:
    """The operators' web console on WORKERS_CONSOLE_HOST:WORKERS_CONSOLE_PORT (127.0.0.1:8070)
    until SIGTERM. Needs WORKERS_CONSOLE_USERS, written by `console adduser`. See docs/console.rst,
    "The console"."""
    if ctx.invoked_subcommand is not None:
        return
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.console.serve import StartupError, serve

    _trace("console")  # its replays' send spans

    try:
        serve(ctx.obj)
    except StartupError as exc:
        raise Failure(str(exc)) from None


def _users_file(settings: Settings) -> str:
    if not settings.console_users:
        raise Failure("WORKERS_CONSOLE_USERS is not set: name the console's users file")
    return settings.console_users


@console.command("adduser")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator"]), required=True,
              help="viewer reads; operator also replays, purges and cancels.")
@click.pass_obj
def console_adduser(settings: Settings, name: str, role: str) -> None:
    """Add NAME to the users file, or replace its password and role; the password is read
    from stdin (its first line) and kept only as an argon2 hash."""
    from workers.console.access import AccessError, add_user

    password = sys.stdin.readline().rstrip("\r\n")
    try:
        add_user(_users_file(settings), name, role, password)
    except AccessError as exc:
        raise Failure(str(exc)) from None
    click.echo(f"{name} ({role}) written to {settings.console_users}", err=True)


@console.command("token")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator"]), required=True)
@click.pass_obj
def console_token(settings: Settings, name: str, role: str) -> None:
    """Print a new API token for NAME, once (only its hash is kept): send it as
    `Authorization: Bearer TOKEN` to /api/."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.console.access import AccessError, add_token

    try:
        click.echo(add_token(_users_file(settings), name, role))
    except AccessError as exc:
        raise Failure(str(exc)) from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sample.")
@click.option("--watch", type=click.FloatRange(min=0.1), is_flag=False, flag_value=5.0,
              default=None, metavar="[SECONDS]", help="Sample again every SECONDS (5 if not "
              "given) until Ctrl-C, measuring each queue's drain rate.")
@click.option("--target", type=click.FloatRange(min=1), default=DEFAULT_DRAIN_TARGET_SECONDS,
              show_default=True, metavar="SECONDS",
              help="Time within which PROCS processes drain the backlog.")
@click.option("--rate", type=click.FloatRange(min=0.001), default=DEFAULT_PROCESS_RATE,
              show_default=True, metavar="MSGS/S",
              help="Messages per second one process handles, where the daemons' /metrics "
                   "(WORKERS_METRICS_PORT) measured none.")
@click.pass_obj
def stats(settings: Settings, as_json: bool, watch: float | None, target: float,
          rate: float) -> None:
    """Per queue: visible, in flight, delayed, DLQ depth, age of the oldest message (from
    CloudWatch), the drain rate (with --watch), each process's measured rate and PROCS, the
    processes that would drain the backlog within --target seconds. See docs/operations.rst,
    Operations."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.ops import stats as queue_stats

    try:
        queue_stats.show(settings, as_json=as_json, interval=watch, target_seconds=target,
                         default_rate=rate, echo=click.echo)
    except KeyboardInterrupt:  # how --watch ends
        pass


@cli.command()
# A queue's daemons, or links-api (`workers links serve`): what conf/supervisord.conf runs N of.
@click.argument("queue", required=False, metavar="QUEUE",
                type=click.Choice((*QUEUES, LINKS_API_PROGRAM)))
@click.argument("count", required=False, type=click.IntRange(0, 99), metavar="N")
@click.option("--host", metavar="HOST", help="The host whose processes to set (its "
              "WORKERS_HOST_NAME)  [default: this host's]")
@click.option("--watch", is_flag=True, help="Keep this host at the counts wanted for it, "
              "applying each change at once: supervisord's workers-scale program.")
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="Seconds to wait for the processes to run, or to have stopped (a stop "
                   "lets a daemon finish its work in hand).")
@click.pass_obj
def scale(settings: Settings, queue: str | None, count: int | None, host: str | None,
          watch: bool, timeout: float) -> None:
    """Run N processes for QUEUE (or links-api) on this host, or HOST; no other process
    restarts.

    The count is kept in the counters' Redis, per host; each host's workers-scale program
    (`workers scale --watch`, under its supervisord) applies its own within seconds. This
    waits until the registry shows N running there (--timeout). Without arguments, applies
    this host's counts once through supervisord's socket in WORKERS_RUN_DIR. See
    docs/operations.rst, "Scaling"."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.ops import fleet
    from workers.ops.scale import ScaleError, Scaler, server, socket_path

    if (queue is None) != (count is None):
        raise Failure("give both QUEUE and N, or neither")
    try:
        if queue is not None and count is not None:
            host = host or settings.host_name
            click.echo(fleet.scale(settings.redis_url, host, queue, count, timeout,
                                   known=host == settings.host_name))
            if host == settings.host_name and os.path.exists(socket_path(settings)):
                # and until this host's supervisord has removed those stopped
                Scaler(settings, server(settings), timeout=timeout).wait_for(queue, count)
            return
        if host is not None:
            raise Failure("--host goes with QUEUE N: each host applies its own counts")
        scaler = Scaler(settings, server(settings), timeout=timeout)
        if watch:
            _watch(scaler)
            return
        for change in scaler.settle(scaler.wanted()):
            click.echo(change.summary())
    except (ScaleError, fleet.FleetError) as exc:
        raise Failure(str(exc)) from None


def _watch(scaler: Any) -> None:
    """Until SIGTERM or SIGINT (supervisord's stop)."""
    import signal
    import threading

    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.runtime import logs

    logs.configure("info")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    scaler.watch(stop)


@cli.command("fleet")
@click.option("--json", "as_json", is_flag=True,
              help='{"processes": [...], "hosts": [...]} instead of tables.')
@click.pass_obj
def fleet_command(settings: Settings, as_json: bool) -> None:
    """Every registered process of the fleet, by host: program, queue, pid, version, uptime,
    last poll, handled, failed, dead-lettered, in flight. From the counters' Redis, where
    each process refreshes its entry every 5 s; one not refreshed lately shows as stale, and
    drops out after 15 s."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.adapters.redisconn import REDIS_ERRORS, connect
    from workers.ops import fleet

    try:
        client = connect(settings.redis_url)
        live = fleet.processes(client)
        by_host = fleet.hosts(client, live)
        now = fleet.redis_now(client)
    except REDIS_ERRORS as exc:
        raise Failure(f"Redis is not reachable ({type(exc).__name__}: {exc}): the fleet's "
                      "registry is kept there") from None
    click.echo(fleet.as_json(live, by_host) if as_json else fleet.render(live, by_host, now))


def _trace(program: str) -> None:
    """Tracing on for this process when OTEL_* asks (docs/tracing.rst); its spans are
    exported at exit."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.adapters import tracing

    tracing.configure(program)


def _event(queue: str, text: str, where: str) -> Any:
    """The JSON of one event, valid for ``queue``; else a Failure saying what is wrong, and
    where (a line of stdin) when there is more than one."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise Failure(f"{where or 'event'} is not JSON: {exc}") from None
    try:
        validate(queue, data)
    except InvalidEvent as exc:
        raise Failure(f"{where}: {exc.reason}" if where else exc.reason) from None
    return data


def main() -> None:
    """Entry point: runs the CLI and turns every error into one line on stderr."""
    # Imported here, not at the top: `workers --help` and the other commands stay quick.
    from workers.adapters.aws import AWS_ERRORS
    from workers.adapters.producer import SendError
    from workers.adapters.redisconn import REDIS_ERRORS, EvictionPolicyError
    from workers.adapters.tracing import TracingError
    from workers.core.errors import PermanentError
    from workers.ops.dlq import DLQError
    from workers.ops.rundir import RunDirError
    from workers.ops.scale import ScaleError

    try:
        code = cli.main(standalone_mode=False, prog_name="workers")
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except PermanentError as exc:
        _fail(exc.reason)
    except (SettingsError, SendError, DLQError, ScaleError, RunDirError,
            EvictionPolicyError, TracingError) as exc:
        _fail(str(exc))
    except REDIS_ERRORS as exc:
        _fail(f"redis: {exc}")
    except AWS_ERRORS as exc:
        _fail(f"aws: {exc}")
    except OSError as exc:
        _fail(str(exc))
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, status: int = 1) -> None:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(status)
