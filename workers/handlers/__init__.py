"""Handlers are plain functions of a validated event, registered by queue name.

A handler raises TransientError or PermanentError (workers.errors); it may return a dict of
fields to add to the message's log line.

A queue's module may also register steps that run once per batch, after its messages were
handled and before the successes are deleted (``before_ack``, as Dramatiq's middleware): what
must hold for the whole batch before SQS may forget it, such as its records being archived or
replicas having its counts. A step gets the batch's succeeded events; one that raises
TransientError makes the batch's successes retried instead of deleted. The consumer runs
whatever steps a queue registered, and knows no queue by name.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Sequence

from workers.deps import Deps
from workers.events import Event

Handler = Callable[[Any, Deps], "dict[str, Any] | None"]
BeforeAck = Callable[[Deps, Sequence[Event]], None]

_REGISTRY: dict[str, Handler] = {}
_BEFORE_ACK: dict[str, list[BeforeAck]] = {}
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


def before_ack(queue: str) -> Callable[[BeforeAck], BeforeAck]:
    """Registers a step to run once per batch of ``queue``, before its successes are deleted."""
    def register(func: BeforeAck) -> BeforeAck:
        _BEFORE_ACK.setdefault(queue, []).append(func)
        return func

    return register


def before_ack_steps(queue: str) -> list[BeforeAck]:
    """The steps registered for ``queue``, in the order its module registered them."""
    _load(queue)
    return list(_BEFORE_ACK.get(queue, []))


def _load(queue: str) -> None:
    if queue not in _REGISTRY and queue in _MODULES:
        importlib.import_module(_MODULES[queue])


def get(queue: str) -> Handler:
    """The handler of ``queue``; LookupError when the queue has none yet."""
    _load(queue)
    try:
        return _REGISTRY[queue]
    except KeyError:
        raise LookupError(f"no handler for queue {queue!r}") from None


__all__ = ["BeforeAck", "Event", "Handler", "before_ack", "before_ack_steps", "get", "handler"]
