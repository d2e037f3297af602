"""workers: a fleet of SQS worker daemons."""

QUEUES = ("post-sent", "analytics", "push", "email")

__all__ = ["QUEUES"]
