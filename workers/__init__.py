"""workers: a fleet of SQS worker daemons."""

from workers.core.events import QUEUES

__all__ = ["QUEUES"]
