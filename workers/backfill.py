"""``workers links backfill``: every link count rebuilt from the S3 archive, and never a wrong
count served while it runs.

1. **Read** the archive on a few threads and build the new counts aside, in this process's
   memory: each distinct (update_id, url) pair's mark (the live path's 8 bytes) with its URL
   key (about 180 bytes a pair). Redis is not touched.
2. **Catch up** with objects written meanwhile, until a listing finds none new.
3. **Swap**: per bucket, one Lua script replaces the live counters with the rebuilt ones and
   the marks with those of pairs recent enough to be redelivered, so readers and daemons see
   the old bucket or the new, never a mix or a partial rebuild.
4. **Settle**, then count what was archived since the last listing through the live path:
   daemons counted it before the swap threw their counts away, or will count it now; the
   rebuilt marks make either count once.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import operator
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from botocore.exceptions import ClientError

from workers import archive
from workers.archive import Archive
from workers.links import LinkCounter
from workers.settings import IDEMPOTENCY_TTL_SECONDS

# A daemon's clock may lag ours: objects it writes after we start are listed from the day
# of this long before the start.
CLOCK_SKEW_SECONDS = 3600
# Listings after the first; each reads what was written during the one before, so they shrink.
MAX_CATCH_UPS = 5
# Objects fetched ahead of the one being counted, per thread.
PREFETCH_PER_THREAD = 4
PROGRESS_EVERY_SECONDS = 1.0
_second = operator.itemgetter(1)


@dataclass
class Progress:
    phase: str = "read"
    objects: int = 0          # archive objects read
    listed: int = 0           # archive objects known so far
    records: int = 0          # (update_id, url) records read, duplicates included
    pairs: int = 0            # distinct pairs: what the counts add up to
    links: int = 0            # distinct URL keys (known once the swap begins)
    missing: int = 0          # objects listed, then gone before they were read
    caught_up: int = 0        # pairs counted through the live path after the swap
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Records read per second so far."""
        return self.records / max(self.elapsed, 1e-9)


class Backfill:
    def __init__(self, archive: Archive, live: LinkCounter, *, threads: int = 16,
                 settle: float = 60.0, ttl: int = IDEMPOTENCY_TTL_SECONDS,
                 on_progress: Callable[[Progress], None] = lambda progress: None,
                 sleep: Callable[[float], None] = time.sleep):
        self.archive = archive
        self.live = live
        self.threads = threads
        self.settle = settle
        self.ttl = ttl
        self.on_progress = on_progress
        self.sleep = sleep
        self.progress = Progress()
        self.started = live.clock()
        self.started_window = live.window()  # live marks from here on go with the swap
        self.read_keys: set[str] = set()
        # Each distinct pair's mark -> its URL key: pairs recent enough to be redelivered,
        # whose marks go to Redis, and older ones, only counted. A dict de-duplicates in C,
        # record after record, with no Python per record: that loop is the backfill's speed.
        self.recent: dict[bytes, bytes] = {}
        self.older: dict[bytes, bytes] = {}
        self._reported = 0.0

    def run(self) -> Progress:
        # Millions of small objects, none in a cycle: the cyclic GC would only rescan them
        # (a third of the swap's time, measured).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if gc_was_enabled:
                gc.enable()

    def _run(self) -> Progress:
        self.rebuild(self.archive.keys())
        for _ in range(MAX_CATCH_UPS):
            new = self.unread()
            if not new:
                break
            self.rebuild(new)
        self.swap()
        self._phase("settle")
        self.sleep(self.settle)
        self.count_live(self.unread())
        self._phase("done")
        return self.progress

    # -- the steps, each callable alone (tests interleave live counting between them) -----

    def rebuild(self, keys: Iterable[str]) -> None:
        """Reads these objects into the in-memory rebuild."""
        self._phase("read")
        recent_after = self.live.clock() - self.ttl
        for key, pairs in self._fetched(keys):
            written = archive.written_at(key)
            self._add(pairs, recent=written is None or written >= recent_after)

    def swap(self) -> None:
        """Replaces the live counts and marks with the rebuild's, bucket by bucket."""
        self._phase("swap")
        recent, older = self.recent, self.older
        for mark in older.keys() & recent.keys():  # archived again days later: one pair
            del older[mark]
        # Each recent mark onto its key's list, iterated in C (values and keys of one dict
        # come in the same order).
        marks: defaultdict[bytes, list[bytes]] = defaultdict(list)
        deque(map(list.append, map(marks.__getitem__, recent.values()), recent.keys()),
              maxlen=0)
        counts = {key: len(found) for key, found in marks.items()}
        for key, n in Counter(older.values()).items():
            counts[key] = counts.get(key, 0) + n
        self.progress.pairs = len(recent) + len(older)
        self.progress.links = len(counts)
        self.live.replace(counts, marks, since=self.started_window)

    def count_live(self, keys: Iterable[str]) -> None:
        """Counts these objects' pairs through the live path, each once whoever got there."""
        self._phase("catch-up")
        for _, pairs in self._fetched(keys):
            by_update: defaultdict[str, list[str]] = defaultdict(list)
            for update_id, key in pairs:
                by_update[update_id.decode()].append(key.decode())
            for update_id, urls in by_update.items():
                self.progress.caught_up += sum(self.live.record(update_id, urls))

    def unread(self) -> list[str]:
        """Objects not read yet, among those written since the backfill began (give or take
        clock skew)."""
        return [k for k in self.archive.keys(since=self.started - CLOCK_SKEW_SECONDS)
                if k not in self.read_keys]

    # -- the work -------------------------------------------------------------------------

    def _add(self, pairs: list[tuple[bytes, bytes]], recent: bool) -> None:
        # The hot loop of a backfill: the live path's pair_field over bytes, and the rest in C.
        blake2b = hashlib.blake2b
        marks = [blake2b(b"%s\n%s" % pair, digest_size=8).digest() for pair in pairs]
        into = self.recent if recent else self.older
        into.update(zip(marks, map(_second, pairs), strict=True))
        self.progress.records += len(pairs)
        self.progress.pairs = len(self.recent) + len(self.older)

    def _fetched(self, keys: Iterable[str]) -> Iterator[tuple[str, list[tuple[bytes, bytes]]]]:
        """(key, pairs) of each object, in order, fetched and parsed ahead on threads."""
        keys = iter(keys)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="backfill") as pool:
            ahead: deque[tuple[str, Future]] = deque()

            def submit(batch: Iterable[str]) -> None:
                for key in batch:
                    self.progress.listed += 1
                    ahead.append((key, pool.submit(self._fetch, key)))

            submit(itertools.islice(keys, self.threads * PREFETCH_PER_THREAD))
            while ahead:
                key, future = ahead.popleft()
                submit(itertools.islice(keys, 1))
                pairs = future.result()
                self.read_keys.add(key)
                if pairs is None:
                    self.progress.missing += 1
                    continue
                self.progress.objects += 1
                yield key, pairs
                self._report()

    def _fetch(self, key: str) -> list[tuple[bytes, bytes]] | None:
        try:
            return archive.pairs(self.archive.get(key))
        except ClientError as exc:  # deleted since it was listed: nothing left to count
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def _phase(self, phase: str) -> None:
        self.progress.phase = phase
        self._report(force=True)

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._reported >= PROGRESS_EVERY_SECONDS:
            self._reported = now
            self.on_progress(self.progress)
