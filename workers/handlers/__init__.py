"""Handlers are plain functions of a validated event, registered by queue name.

A handler raises TransientError or PermanentError (workers.errors); it may return a dict of
fields to add to the message's log line.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from workers.deps import Deps
from workers.events import Event

Handler = Callable[[Any, Deps], "dict[str, Any] | None"]

_REGISTRY: dict[str, Handler] = {}
_MODULES = {
    "post-sent": "workers.handlers.post_sent",
    "analytics": "workers.handlers.analytics",
    "push": "workers.handlers.push",
    "email": "workers.handlers.email",
}


def handler(queue: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        _REGISTRY[queue] = func
        return func

    return register


def get(queue: str) -> Handler:
    """The handler of ``queue``; LookupError when the queue has none yet."""
    if queue not in _REGISTRY and queue in _MODULES:
        importlib.import_module(_MODULES[queue])
    try:
        return _REGISTRY[queue]
    except KeyError:
        raise LookupError(f"no handler for queue {queue!r}") from None


__all__ = ["Event", "Handler", "get", "handler"]
