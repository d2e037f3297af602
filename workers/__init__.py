"""workers: a fleet of SQS worker daemons."""

from __future__ import annotations

from typing import Any

__all__ = ["QUEUES"]


def __getattr__(name: str) -> Any:
    # QUEUES is read from the queue registry (workers/queues/), whose loading imports every
    # handler's dependencies: only on first use, so `import workers` stays cheap.
    if name != "QUEUES":
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    from workers.queues import declared

    queues = tuple(q.name for q in declared())
    globals()["QUEUES"] = queues
    return queues
