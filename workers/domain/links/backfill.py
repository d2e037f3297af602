"""``workers links backfill``: every link count rebuilt from the S3 archive, and never a wrong
count served while it runs.

1. **Read** the archive on a few threads and build the new counts aside, in this process's
   memory: each record's pair mark (the live path's 8 bytes) and its URL key's digest (the
   10 bytes that name its counter), 18 bytes a record, duplicates folded away as they pile
   up. Redis is not touched.
2. **Catch up** with objects written meanwhile, until a listing finds none new.
3. **Swap**: the distinct pairs sorted out by counter (numpy: sorting arrays of fixed-width
   records at C speed), then per bucket, one Lua script replaces the live counters with the
   rebuilt ones and the marks with those of pairs recent enough to be redelivered, so readers
   and daemons see the old bucket or the new, never a mix or a partial rebuild.
4. **Settle**, then count what was archived since the last listing through the live path:
   daemons counted it before the swap threw their counts away, or will count it now; the
   rebuilt marks make either count once.
"""

from __future__ import annotations

import gc
import gzip
import itertools
import operator
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np
from botocore.exceptions import ClientError

from workers.core.settings import IDEMPOTENCY_TTL_SECONDS
from workers.domain.links import archive
from workers.domain.links.archive import Archive
from workers.domain.links.counter import LinkCounter
from workers.domain.links.marks import (
    BUCKET_BYTES,
    DIGEST_AT,
    FIELD_BYTES,
    KEY_DIGEST_BYTES,
    LEAD,
    MARK_AT,
    MARK_BYTES,
    key_hash,
    mark_hash,
    pair_text,
)

# A daemon's clock may lag ours: objects it writes after we start are listed from the day
# of this long before the start.
CLOCK_SKEW_SECONDS = 3600
# Listings after the first; each reads what was written during the one before, so they shrink.
MAX_CATCH_UPS = 5
# Objects fetched ahead of the one being counted, per thread.
PREFETCH_PER_THREAD = 4
PROGRESS_EVERY_SECONDS = 1.0
# Records read before their duplicates are folded away, at the least: folding sorts all kept so
# far, so it waits until as many new ones have come (a few sorts in all, and memory stays
# within about twice the distinct pairs').
FOLD_AFTER_RECORDS = 4_000_000
# Bucket ranges the swap sorts and sends one after another: Redis replaces one while numpy
# sorts the next.
REBUILT_PARTS = 16
T = TypeVar("T")
_digest = operator.methodcaller("digest")
_second = operator.itemgetter(1)


@dataclass
class Progress:
    phase: str = "read"
    objects: int = 0          # archive objects read
    listed: int = 0           # archive objects known so far
    records: int = 0          # (update_id, url) records read, duplicates included
    pairs: int = 0            # distinct pairs: what the counts add up to (known at the swap)
    links: int = 0            # distinct counters, one per URL key (known at the swap)
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
        self.started = live.now()
        self.started_window = live.window()  # live marks from here on go with the swap
        self.read_keys: set[str] = set()
        # Records of pairs recent enough to be redelivered, whose marks go to Redis, and of
        # older ones, only counted.
        self.recent = Records()
        self.older = Records()
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
        recent_after = self.live.now() - self.ttl
        for key, (marks, digests) in self._fetched(keys, _hashes):
            written = archive.written_at(key)
            (self.recent if written is None or written >= recent_after else self.older).add(
                marks, digests)
            self.progress.records += len(marks) // MARK_BYTES

    def swap(self) -> None:
        """Replaces the live counts and marks with the rebuild's, bucket by bucket."""
        self._phase("swap")
        rebuilt = Rebuilt(self.recent, self.older, self.live.buckets)
        self.progress.pairs = rebuilt.pairs
        self._report(force=True)
        self.live.replace(rebuilt.parts(), since=self.started_window)
        self.progress.links = rebuilt.counters

    def count_live(self, keys: Iterable[str]) -> None:
        """Counts these objects' pairs through the live path, each once whoever got there."""
        self._phase("catch-up")
        for _, pairs in self._fetched(keys, archive.pairs):
            by_update: defaultdict[str, list[str]] = defaultdict(list)
            for update_id, key in pairs:
                by_update[update_id.decode()].append(key.decode())
            counted = self.live.record_all(list(by_update.items()))
            self.progress.caught_up += sum(map(sum, counted))

    def unread(self) -> list[str]:
        """Objects not read yet, among those written since the backfill began (give or take
        clock skew)."""
        return [k for k in self.archive.keys(since=self.started - CLOCK_SKEW_SECONDS)
                if k not in self.read_keys]

    # -- the work -------------------------------------------------------------------------

    def _fetched(self, keys: Iterable[str], parse: Callable[[bytes], T]) -> Iterator[tuple[str, T]]:
        """(key, what ``parse`` makes of its bytes) of each object, in order, fetched and parsed
        ahead on threads."""
        keys = iter(keys)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="backfill") as pool:
            ahead: deque[tuple[str, Future]] = deque()

            def submit(batch: Iterable[str]) -> None:
                for key in batch:
                    self.progress.listed += 1
                    ahead.append((key, pool.submit(self._fetch, key, parse)))

            submit(itertools.islice(keys, self.threads * PREFETCH_PER_THREAD))
            while ahead:
                key, future = ahead.popleft()
                submit(itertools.islice(keys, 1))
                parsed = future.result()
                self.read_keys.add(key)
                if parsed is None:
                    self.progress.missing += 1
                    continue
                self.progress.objects += 1
                yield key, parsed
                self._report()

    def _fetch(self, key: str, parse: Callable[[bytes], T]) -> T | None:
        try:
            return parse(self.archive.get(key))
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


def _hashes(body: bytes) -> tuple[bytes, bytes]:
    """The marks and URL key digests of an archive object's records, packed."""
    raw = gzip.decompress(body)
    found = _written_hashes(raw)
    if found is not None:
        return found
    # A line whose lead was lost or spoiled (an object edited by hand): the live path's hashes
    # over the bytes read, a record at a time in C, rather than a wrong count or none.
    pairs = archive.pairs_of(raw)
    return (b"".join(map(_digest, map(mark_hash, map(pair_text, pairs)))),
            b"".join(map(_digest, map(key_hash, map(_second, pairs)))))


# Hex digits' values; anything else is 255.
_HEX_VALUE = np.full(256, 255, dtype=np.uint8)
_HEX_VALUE[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)
_LEAD = np.frombuffer(LEAD, dtype=np.uint8)
_HEX_AT = np.r_[MARK_AT:MARK_AT + 2 * MARK_BYTES, DIGEST_AT:DIGEST_AT + 2 * KEY_DIGEST_BYTES]
_FIXED_AT = np.setdiff1d(np.arange(len(_LEAD)), _HEX_AT)


def _written_hashes(raw: bytes) -> tuple[bytes, bytes] | None:
    """The hashes every line of this object starts with, read from all lines at once (the
    work is numpy's, outside the GIL); None unless every line has them."""
    data = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    if not len(ends) or ends[-1] != len(data) - 1:
        return None
    starts = np.concatenate([[0], ends[:-1] + 1])
    if (ends - starts < len(_LEAD)).any():
        return None
    leads = data[starts[:, None] + np.arange(len(_LEAD))]
    if not (leads[:, _FIXED_AT] == _LEAD[_FIXED_AT]).all():
        return None
    nibbles = _HEX_VALUE[leads[:, _HEX_AT]]
    if (nibbles == 255).any():
        return None
    hashes = nibbles[:, 0::2] << 4 | nibbles[:, 1::2]
    return hashes[:, :MARK_BYTES].tobytes(), hashes[:, MARK_BYTES:].tobytes()


class Records:
    """Archive records as a rebuild keeps them: each one's pair mark and URL key digest, in
    two byte strings per object, their duplicates folded away now and then."""

    def __init__(self) -> None:
        self.marks: list[bytes] = []
        self.digests: list[bytes] = []
        self.count = 0   # records kept, duplicates included until folded
        self.folded = 0  # records kept at the last fold, all distinct

    def add(self, marks: bytes, digests: bytes) -> None:
        self.marks.append(marks)
        self.digests.append(digests)
        self.count += len(marks) // MARK_BYTES
        if self.count - self.folded >= max(FOLD_AFTER_RECORDS, self.folded):
            self.fold()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The marks (one uint64 each, as bytes read) and the digests (a row of bytes each)."""
        marks = np.frombuffer(b"".join(self.marks), dtype=np.uint64)
        digests = np.frombuffer(b"".join(self.digests), dtype=np.uint8)
        return marks, digests.reshape(-1, KEY_DIGEST_BYTES)

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """``arrays``, and this left empty."""
        found = self.arrays()
        self.marks, self.digests = [], []
        self.count = self.folded = 0
        return found

    def fold(self) -> None:
        """Keeps one record of each pair."""
        marks, digests = self.arrays()
        marks, first = np.unique(marks, return_index=True)
        self.marks, self.digests = [marks.tobytes()], [digests[first].tobytes()]
        self.count = self.folded = len(marks)


class Rebuilt:
    """The rebuilt counters and recent marks, in parts by bucket range, each packed as
    ``LinkCounter.replace`` sends them: counters of 6-byte fields and 4-byte big-endian
    counts, marks of 8 bytes."""

    def __init__(self, recent: Records, older: Records, buckets: int):
        """The rebuild of these records, which it takes (they are left empty)."""
        recent_marks, recent_digests = recent.take()
        older_marks, older_digests = older.take()
        marks = np.concatenate([recent_marks, older_marks])
        digests = np.concatenate([recent_digests, older_digests])
        recent_count = len(recent_marks)
        del recent_marks, recent_digests, older_marks, older_digests
        # One record per pair, a recent one where the pair is both (archived again later).
        marks, first = np.unique(marks, return_index=True)
        is_recent = first < recent_count
        digests = digests[first]
        del first
        # The counter each pair counts on, (bucket, field), as LinkCounter.bucket_of reads the
        # digest.
        bucket = (digests[:, :BUCKET_BYTES].copy().view(">u4")[:, 0]
                  % np.uint64(buckets)).astype(np.uint32)
        field = np.zeros((len(digests), 8), dtype=np.uint8)
        field[:, 8 - FIELD_BYTES:] = digests[:, BUCKET_BYTES:]
        field = field.view(">u8")[:, 0]
        del digests
        # Split by bucket range, so Redis replaces one range while the next is sorted.
        part = (bucket.astype(np.uint64) * REBUILT_PARTS // buckets).astype(np.intp)
        order = np.argsort(part, kind="stable")
        self.part_ends = np.cumsum(np.bincount(part, minlength=REBUILT_PARTS)).tolist()
        self.bucket, self.field = bucket[order], field[order]
        self.marks, self.is_recent = marks[order], is_recent[order]
        self.pairs = len(marks)
        self.counters = 0  # counted as the parts are made

    def parts(self) -> Iterator[dict[int, tuple[bytes, bytes]]]:
        """Per bucket range: bucket -> its counters and marks."""
        start = 0
        for end in self.part_ends:
            yield self._part(start, end)
            start = end

    def _part(self, start: int, end: int) -> dict[int, tuple[bytes, bytes]]:
        if start == end:
            return {}
        # Sorted by counter, each counter's pairs are a run, and each bucket's counters too.
        bucket, field = self.bucket[start:end], self.field[start:end]
        order = np.lexsort((field, bucket))
        bucket, field = bucket[order], field[order]
        marks, is_recent = self.marks[start:end][order], self.is_recent[start:end][order]
        starts = np.flatnonzero(np.concatenate(
            [[True], (bucket[1:] != bucket[:-1]) | (field[1:] != field[:-1])]))
        counters = np.empty((len(starts), FIELD_BYTES + 4), dtype=np.uint8)
        counters[:, :FIELD_BYTES] = field[starts].view(np.uint8).reshape(-1, 8)[:, -FIELD_BYTES:]
        counts = np.diff(np.append(starts, len(bucket))).astype(">u4")
        counters[:, FIELD_BYTES:] = counts.view(np.uint8).reshape(-1, 4)
        self.counters += len(starts)
        counter_buckets = bucket[starts]
        ends = np.flatnonzero(np.append(counter_buckets[1:] != counter_buckets[:-1], True))
        mark_ends = np.searchsorted(bucket[is_recent], counter_buckets[ends], "right")
        return dict(zip(counter_buckets[ends].tolist(), zip(
            _slices(counters.tobytes(), ((ends + 1) * counters.shape[1]).tolist()),
            _slices(marks[is_recent].tobytes(), (mark_ends * MARK_BYTES).tolist()),
            strict=True), strict=True))


def _slices(data: bytes, ends: list[int]) -> Iterator[bytes]:
    return map(data.__getitem__, map(slice, [0, *ends[:-1]], ends))
