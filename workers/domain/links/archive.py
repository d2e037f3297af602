"""The link archive: every counted (update_id, url) record, in S3, so counts can be rebuilt.

post-sent's before-ack step (workers/queues/post_sent.py) writes a whole batch's records as
one gzip JSON-lines object (never one per message) before its messages are deleted, under
``links/dt=YYYY-MM-DD/``. A failed write leaves the messages for redelivery, and counting them
again is harmless (it is idempotent), so no counted link is ever missing from the archive.
"""

from __future__ import annotations

import calendar
import gzip
import json
import os
import re
import time
import uuid
from typing import Any, Iterator

from workers.domain.links import marks

PREFIX = "links/"
# What a backfill needs of a line, as ``write`` lays it out: the lead
# (``workers.domain.links.marks``), then update_id and url (json.dumps keeps the order in
# which handlers build records). Matched after the newline that ends the line before: a
# literal start lets the regex engine skip to it, where ``^`` would try every byte.
# Used only where it is exact: see ``pairs``.
_PAIR = re.compile(rb'\n\{' + marks.LEAD_PATTERN
                   + rb'"update_id":"([^"\\\n]*)","url":"([^"\\\n]*)"')
_KEY_TIME = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/(\d{6})-")


class Archive:
    def __init__(self, s3: Any, bucket: str, prefix: str = PREFIX):
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def write(self, records: list[dict[str, Any]], now: float | None = None) -> str:
        """One object for all ``records``; returns its key."""
        now = time.time() if now is None else now
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        key = (f"{self.prefix}dt={day}/{time.strftime('%H%M%S', time.gmtime(now))}-"
               f"{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl.gz")
        self.s3.put_object(Bucket=self.bucket, Key=key, ContentType="application/x-ndjson",
                           ContentEncoding="gzip", Body=encode(records))
        return key

    def keys(self, since: float | None = None) -> Iterator[str]:
        """Every object's key, in key order; with ``since``, from that moment's day on."""
        start = {}
        if since is not None:
            start["StartAfter"] = f"{self.prefix}dt={time.strftime('%Y-%m-%d', time.gmtime(since))}"
        for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, **start):
            for item in page.get("Contents", []):
                yield item["Key"]

    def read(self, key: str) -> Iterator[dict[str, Any]]:
        for line in gzip.decompress(self.get(key)).decode().splitlines():
            if line:
                yield json.loads(line)

    def get(self, key: str) -> bytes:
        """The object's gzip bytes."""
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()


def encode(records: list[dict[str, Any]]) -> bytes:
    """gzip JSON lines. mtime=0: the same records make the same bytes, whatever the hour."""
    body = "".join(json.dumps(_hashed(r), separators=(",", ":")) + "\n" for r in records)
    return gzip.compress(body.encode(), mtime=0)


def _hashed(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its lead first: the pair's mark and its URL key's digest, in hex."""
    update_id, url = record.get("update_id"), record.get("url")
    if not isinstance(update_id, str) or not isinstance(url, str):
        return record
    return {**marks.lead(_utf8(update_id), _utf8(url)), **record}


def pairs(body: bytes) -> list[tuple[bytes, bytes]]:
    """The (update_id, url) pairs of one archive object's gzip bytes, each UTF-8 encoded.

    A backfill reads hundreds of thousands of records a second, and building a dict per line
    is most of that cost, so lines as ``write`` makes them are matched by a pattern in one
    pass. It is exact only when no string holds an escape (``write`` escapes every non-ASCII
    character and quote, so in a backslash-free object no value can hold a quote) and every
    line matched; anything else (a line whose lead was lost or edited by hand, say) is read as
    JSON, line by line: a safety net, not a layout anything writes.
    """
    return pairs_of(gzip.decompress(body))


def pairs_of(raw: bytes) -> list[tuple[bytes, bytes]]:
    """``pairs`` of an object's bytes once decompressed."""
    if b"\\" not in raw:
        found = _PAIR.findall(b"\n" + raw)
        if len(found) == raw.count(b"\n"):
            return found
    records = (json.loads(line) for line in raw.splitlines() if line.strip())
    return [(_utf8(r["update_id"]), _utf8(r["url"])) for r in records]


def _utf8(text: str) -> bytes:
    # A lone surrogate (JSON can spell one) must not stop a backfill; no live key has one.
    return text.encode("utf-8", "surrogatepass")


def written_at(key: str) -> float | None:
    """When the object was written, from its key; None for a key ``write`` did not make."""
    found = _KEY_TIME.search(key)
    if not found:
        return None
    try:
        stamp = time.strptime(f"{found[1]} {found[2]}", "%Y-%m-%d %H%M%S")
    except ValueError:
        return None
    return float(calendar.timegm(stamp))
