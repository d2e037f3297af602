"""The soak part (`bench.py --only soak`): one daemon of ours drains many post-sent events
(200,000; --quick 5,000) on the SQS stand-in while its resident memory is sampled, and the
growth after warm-up is reported: a daemon that leaks shows it here long before production
would (Shoryuken #324, #482). Every link is still checked at the end, as in any throughput run.

Progress is read from the proxy's delete count, not from Redis: reading every counter each
poll would cost more than the daemon does at this size."""

from __future__ import annotations

import time
from typing import Any

import procstat
import scenario

from devstack import awsproxy
from workers.domain.links.counter import LinkCounter

# How often RSS is read (/proc/PID/status, the daemon's whole tree).
SAMPLE_SECONDS = 1.0
# Messages before which memory may still grow for good reasons (imports done, pools, caches and
# buffers filled): growth is counted from the first sample past this share of the run.
WARM_UP_SHARE = 0.1
# What the issue holds a daemon to over 200,000 messages.
GROWTH_GOAL_BYTES = 5 * 1024 * 1024


class Soak(scenario.Scenario):
    """A throughput scenario whose progress is the deletes, with RSS sampled meanwhile."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.samples: list[tuple[float, int, int]] = []  # (seconds, deleted, RSS bytes)

    def _watch(self, counter: LinkCounter) -> dict[str, float]:
        n = len(self.workload.bodies)
        timeout = 120 + 0.02 * n  # 50 msgs/s: slower than any daemon of ours
        started = last_sample = time.monotonic()
        first = None
        while True:
            deleted = awsproxy.deleted(self._tally())
            now = time.monotonic()
            if deleted and first is None:
                first = now
            if now - last_sample >= SAMPLE_SECONDS or deleted >= n:
                self._sample(now - started, deleted)
                last_sample = now
            if deleted >= n:
                break
            self._check_progress(deleted, n, now - started > timeout)
            time.sleep(scenario.POLL_SECONDS)
        seconds = max(now - (first or started), scenario.FAST_POLL_SECONDS)
        return {"seconds": seconds, "msgs_per_s": n / seconds, "wall_seconds": now - started}

    def run(self) -> dict[str, Any]:
        figures = super().run()
        figures["rss_samples"] = self.samples
        figures["growth"] = growth(self.samples, len(self.workload.bodies))
        return figures

    def _sample(self, seconds: float, deleted: int) -> None:
        assert self.proc is not None
        rss = sum(procstat.rss_bytes(pid) for pid in procstat.tree(self.proc.pid))
        self.samples.append((round(seconds, 2), deleted, rss))


def growth(samples: list[tuple[float, int, int]], messages: int) -> dict[str, Any]:
    """RSS at the end of warm-up, at the end and at most after it; the growth in between."""
    warm = [s for s in samples if s[1] >= WARM_UP_SHARE * messages] or samples[-1:]
    start, end = warm[0][2], warm[-1][2]
    peak = max(s[2] for s in warm)
    return {"warm_up_messages": warm[0][1], "rss_after_warm_up_mib": mib(start),
            "rss_at_end_mib": mib(end), "rss_peak_after_warm_up_mib": mib(peak),
            "growth_after_warm_up_mib": mib(end - start),
            "peak_growth_after_warm_up_mib": mib(peak - start),
            "goal_mib": mib(GROWTH_GOAL_BYTES),
            "met": peak - start < GROWTH_GOAL_BYTES}


def mib(n: int) -> float:
    return round(n / 2**20, 2)


def line(result: dict[str, Any]) -> str:
    g = result["growth"]
    return (f"soak: {result['messages']:,} messages through one daemon on ministack at "
            f"{result['run']['msgs_per_s']:.0f} msgs/s; RSS {g['rss_after_warm_up_mib']} MiB "
            f"after warm-up ({g['warm_up_messages']:,} messages), {g['rss_at_end_mib']} MiB at "
            f"the end, growth {g['growth_after_warm_up_mib']} MiB (peak "
            f"{g['peak_growth_after_warm_up_mib']}) [< {g['goal_mib']:g} MiB: "
            f"{'met' if g['met'] else 'MISSED'}]")
