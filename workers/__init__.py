"""workers: a fleet of SQS worker daemons.

Floors only look down (.importlinter, checked by `make lint` and tests/test_layers.py):
cli > readapi | console > ops | web > queues > runtime | domain > adapters > core.
docs/architecture.rst names every module and what it holds.
"""

from workers.core.events import QUEUES

__all__ = ["QUEUES"]
