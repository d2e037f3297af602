"""Moved to ``workers.aws``. Kept only because ``workers/handlers/push.py`` imports it and
handlers/ is being reworked on branch ``queues`` (issue 14): once that lands, point push.py at
``workers.aws`` and delete this module."""

from workers.aws import AWS_ERRORS, classify

__all__ = ["AWS_ERRORS", "classify"]
