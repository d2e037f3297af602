"""The ``workers`` command. Errors are one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import redis

from workers import QUEUES
from workers.settings import DEFAULT_CONCURRENCY, Settings, SettingsError

QUEUE = click.Choice(QUEUES)
QUEUE_ARG = {"type": QUEUE, "metavar": "QUEUE"}


class Failure(click.ClickException):
    """A one-line error for the user."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run and operate the SQS worker fleet. Configured by environment (see README.rst)."""
    ctx.obj = Settings.from_env()


@cli.group()
def queues() -> None:
    """Create and inspect the SQS queues."""


@queues.command("create")
@click.pass_obj
def queues_create(settings: Settings) -> None:
    """Create every queue, its DLQ and redrive policy (and the archive bucket when set).
    Safe to run again."""
    from workers import provision, sqs

    s3 = sqs.client(settings, "s3") if settings.archive_bucket else None
    for url in provision.create_queues(settings, sqs.client(settings), s3):
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
    from workers import logs
    from workers.consumer import Consumer

    logs.configure(log_level)
    sys.exit(Consumer(queue, settings, concurrency=concurrency).run())


@cli.command()
@click.argument("queue", **QUEUE_ARG)
@click.argument("event", required=False)
@click.pass_obj
def send(settings: Settings, queue: str, event: str | None) -> None:
    """Validate and enqueue one EVENT (JSON), or JSON lines from stdin. Every event is
    validated before any is sent: one invalid event and nothing is sent."""
    from workers.producer import Producer

    if event is not None:
        events = [_parse(event, "event")]
    else:
        events = [_parse(line, f"line {n}") for n, line in enumerate(sys.stdin, 1)
                  if line.strip()]
    sent = Producer(settings).send_many(queue, events)
    click.echo(f"sent {sent} event(s) to {settings.queue_name(queue)}", err=True)


@cli.group()
def links() -> None:
    """Read link counts."""


@links.command("count")
@click.argument("urls", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
@click.pass_obj
def links_count(settings: Settings, urls: tuple[str, ...], as_json: bool) -> None:
    """Print COUNT<TAB>NORMALIZED_URL for each URL (a full URL or a normalized key)."""
    from workers.links import LinkCounter, connect
    from workers.urls import InvalidURL, normalize_key

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


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Failure(f"{where} is not JSON: {exc}") from None


def main() -> None:
    """Entry point: runs the CLI and turns every error into one line on stderr."""
    from botocore.exceptions import BotoCoreError, ClientError

    from workers.errors import PermanentError
    from workers.producer import SendError

    try:
        code = cli.main(standalone_mode=False, prog_name="workers")
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except PermanentError as exc:
        _fail(exc.reason)
    except (SettingsError, SendError) as exc:
        _fail(str(exc))
    except redis.RedisError as exc:
        _fail(f"redis: {exc}")
    except (BotoCoreError, ClientError) as exc:
        _fail(f"aws: {exc}")
    except OSError as exc:
        _fail(str(exc))
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, status: int = 1) -> None:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(status)
