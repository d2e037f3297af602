"""structlog, configured once: one JSON object a line on stdout, context bound per message.

Every line, ours and the standard library's loggers' (a library's warning, a server's), is one
JSON object with ``event``, ``level`` and ``ts``, written whole: the line and its newline in one
write, one thread at a time.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import IO, Any, Callable

import orjson
import structlog

from workers.adapters import tracing

# logging.getLevelNamesMapping is Python 3.11's; we support 3.10.
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}
# Other libraries' loggers speak from this level up (botocore says which credentials it found
# at INFO, on every start); ours ("workers.*") from the level asked for.
LIBRARY_LEVEL = logging.WARNING


class LineWriter:
    """A structlog logger writing each rendered line and its newline in one write, under a
    lock. print() writes them apart: under PYTHONUNBUFFERED=1 two threads then glue two lines
    together and leave an empty one after them, and a log pipeline drops both."""

    def __init__(self, file: IO[str]):
        self._file = file
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        line = message + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    def __call__(self, *_args: Any) -> "LineWriter":  # structlog's logger factory: the one
        return self


class _StdlibHandler(logging.Handler):
    """The standard library's records, rendered by structlog's chain, through the same writer."""

    def __init__(self, writer: LineWriter, formatter: logging.Formatter):
        super().__init__()
        self.writer = writer
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.msg(self.format(record))
        except Exception:
            self.handleError(record)


def configure(level: str = "info") -> None:
    """Call after ``tracing.configure``: with tracing on, each line written inside a span
    carries its ``trace_id`` and ``span_id``."""
    writer = LineWriter(sys.stdout)
    # Chosen once here: with tracing off, no line pays for looking up a span.
    traced: list[Any] = [tracing.add_ids] if tracing.enabled() else []
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        *traced,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    render = structlog.processors.JSONRenderer(serializer=dumps)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, render],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level.upper()]),
        logger_factory=writer,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name,
                           structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, render])
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)  # configured again (tests): one handler, the latest writer
    root.addHandler(_StdlibHandler(writer, formatter))
    root.setLevel(LIBRARY_LEVEL)
    logging.getLogger("workers").setLevel(_LEVELS[level.upper()])


def dumps(value: Any, default: Callable[[Any], Any] | None = None, **_: Any) -> str:
    """One JSON object, all ASCII as json.dumps writes it, by orjson when it can (a few times
    quicker: a line per message is a daemon's busiest work after its peers'). A line with
    anything past ASCII (someone else's text: bidi overrides, C1 controls) or that orjson
    refuses (an int past 64 bits) is json.dumps's, escaped, so no log line can move a
    terminal's cursor."""
    try:
        line = orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS)
        if line.isascii():
            return line.decode()
    except TypeError:  # orjson.JSONEncodeError is one
        pass
    return json.dumps(value, default=default)


def get(**context: object) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger().bind(**context)
