"""How long a failed message stays invisible before SQS hands it out again."""

from __future__ import annotations

import math
from dataclasses import dataclass

from workers.core.settings import MAX_VISIBILITY_SECONDS

# Past this a retry is no longer a retry but an outage; the DLQ and a replay handle those better.
MAX_BACKOFF_SECONDS = 15 * 60


@dataclass(frozen=True)
class ExponentialBackoff:
    """The visibility timeout doubles with each receive: base, 2*base, 4*base... up to ``cap``."""

    base: int
    cap: int = MAX_BACKOFF_SECONDS

    def visibility(self, receive_count: int, retry_after: float | None = None) -> int:
        if retry_after is not None:
            # A peer said when to come back (HTTP 429 Retry-After): do just that.
            return min(MAX_VISIBILITY_SECONDS, max(1, math.ceil(retry_after)))
        exponent = min(max(receive_count, 1) - 1, 30)
        return min(self.cap, max(1, self.base) * 2**exponent)
