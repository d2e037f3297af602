"""structlog, configured once: one JSON object a line on stdout, context bound per message."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Callable

import orjson
import structlog

from workers.runtime import tracing

# logging.getLevelNamesMapping is Python 3.11's; we support 3.10.
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}


def configure(level: str = "info") -> None:
    """Call after ``tracing.configure``: with tracing on, each line written inside a span
    carries its ``trace_id`` and ``span_id``."""
    # Chosen once here: with tracing off, no line pays for looking up a span.
    traced: list[Any] = [tracing.add_ids] if tracing.enabled() else []
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *traced,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            _LEVELS[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


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
