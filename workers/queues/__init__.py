"""The queues: each declared once, beside its handler, by one decorator line in its module.

    @queue("post-sent", schema=PostSent, procs=2, port_block=0)
    def post_sent(event: PostSent, deps: Deps) -> dict[str, Any]: ...

Every module of this package is a queue's, and the registry (``declared``) is what the rest
reads: ``workers.QUEUES``, the event schemas, the default number of processes and the metrics
ports. conf/supervisord.conf declares each queue's processes; a test holds the two together.

Handlers are plain functions of a validated event. A handler raises TransientError or
PermanentError (workers.core.errors); it may return a dict of fields to add to the message's log
line.

A queue may also register a *batch handler* (``@batch_handler(name)``), called once per batch with
the batch's validated events, in order; it returns one result per event: a dict of log fields
(or None) for a success, or the PermanentError / TransientError of that event alone. Raising
fails the whole batch (TransientError: every event is retried). The consumer uses it instead of
the plain handler, so that per-batch work (one Redis round trip for every event) is paid once;
the plain handler stays what the queue's events mean one at a time. A body that does not decode
never reaches either: it is dead-lettered alone.

A queue's module may also register steps that run once per batch, after its messages were
handled and before the successes are deleted (``before_ack``, as Dramatiq's middleware): what
must hold for the whole batch before SQS may forget it, such as its records being archived or
replicas having its counts. A step gets the batch's succeeded events; one that raises
TransientError makes the batch's successes retried instead of deleted. The consumer runs
whatever steps a queue registered, and knows no queue by name.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # at run time neither is needed here, and deps is heavy (boto3, redis)
    from workers.core.errors import HandlerError
    from workers.core.events import Event
    from workers.runtime.deps import Deps

Handler = Callable[[Any, "Deps"], "dict[str, Any] | None"]
BeforeAck = Callable[["Deps", "Sequence[Event]"], None]
# One result per event: its log fields (or None), or the HandlerError of that event alone.
BatchHandler = Callable[[Sequence[Any], "Deps"], "Sequence[dict[str, Any] | None | HandlerError]"]


@dataclass(frozen=True)
class Queue:
    name: str
    schema: type[Event]
    # Daemons until `workers scale` says otherwise (WORKERS_<QUEUE>_PROCS).
    procs: int
    # Its metrics ports are base + 100 × port_block + process number: a number of its own,
    # never reused, so that adding or removing a queue moves no other queue's ports.
    port_block: int


_DECLARED: dict[str, Queue] = {}
_REGISTRY: dict[str, Handler] = {}
_BEFORE_ACK: dict[str, list[BeforeAck]] = {}
_BATCH: dict[str, BatchHandler] = {}
_lock = threading.RLock()  # lanes' first reads may race; a re-entry is the same thread's
_loading = False
_loaded = False


def queue(name: str, *, schema: type[Event], procs: int,
          port_block: int) -> Callable[[Handler], Handler]:
    """Declares queue ``name`` and registers the decorated function as its handler."""
    taken = {q.port_block: q.name for q in _DECLARED.values() if q.name != name}
    if port_block in taken:
        raise ValueError(f"queue {name!r}: port_block {port_block} is {taken[port_block]!r}'s")
    _DECLARED[name] = Queue(name, schema, procs, port_block)
    return handler(name)


def handler(name: str) -> Callable[[Handler], Handler]:
    """Registers (or, in a test's rig, replaces) the handler of queue ``name``. A handler
    registered after the queue's batch handler replaces that one too: it is what runs."""
    def register(func: Handler) -> Handler:
        _REGISTRY[name] = func
        _BATCH.pop(name, None)
        return func

    return register


def batch_handler(name: str) -> Callable[[BatchHandler], BatchHandler]:
    """Registers the batch handler of queue ``name``, after its plain handler."""
    def register(func: BatchHandler) -> BatchHandler:
        _BATCH[name] = func
        return func

    return register


def before_ack(name: str) -> Callable[[BeforeAck], BeforeAck]:
    """Registers a step to run once per batch of ``name``, before its successes are deleted."""
    def register(func: BeforeAck) -> BeforeAck:
        _BEFORE_ACK.setdefault(name, []).append(func)
        return func

    return register


def declared() -> tuple[Queue, ...]:
    """Every queue, in the order of its port block (the order of ``workers.QUEUES``)."""
    _load_all()
    return tuple(sorted(_DECLARED.values(), key=lambda q: q.port_block))


def declaration(name: str) -> Queue:
    """The declaration of queue ``name``; LookupError when there is none."""
    _load_all()
    try:
        return _DECLARED[name]
    except KeyError:
        raise LookupError(f"no queue {name!r}") from None


def before_ack_steps(name: str) -> list[BeforeAck]:
    """The steps registered for ``name``, in the order its module registered them."""
    _load_all()
    return list(_BEFORE_ACK.get(name, []))


def get(name: str) -> Handler:
    """The handler of ``name``; LookupError when the queue has none."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LookupError(f"no handler for queue {name!r}") from None


def get_batch(name: str) -> BatchHandler | None:
    """The batch handler of ``name``, or None when it has only a plain one."""
    _load_all()
    return _BATCH.get(name)


def _load_all() -> None:
    """Imports every module of this package once: importing one declares its queue. Lazily,
    since handlers import what they use (boto3, redis, pydantic, jinja2), and `workers --help`
    needs none of it."""
    global _loading, _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:  # another thread loaded it meanwhile
            return
        if _loading:  # a handler's import chain asked for the registry: it would be half full
            raise ImportError("the queue registry was read while its handler modules load; "
                              "read workers.QUEUES (or the registry) inside a function there")
        _loading = True
        try:
            for module in pkgutil.iter_modules(__path__):
                importlib.import_module(f"{__name__}.{module.name}")
            _loaded = True
        finally:
            _loading = False


__all__ = ["BatchHandler", "BeforeAck", "Handler", "Queue", "batch_handler", "before_ack",
           "before_ack_steps", "declaration", "declared", "get", "get_batch", "handler", "queue"]
