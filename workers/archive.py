"""The link archive: every counted (update_id, url) record, in S3, so counts can be rebuilt.

Handlers *stage* records while they run; the consumer writes a whole batch's records as one
gzip JSON-lines object (never one per message) before it deletes those messages, under
``links/dt=YYYY-MM-DD/``. A failed write leaves the messages for redelivery, and counting them
again is harmless (it is idempotent), so no counted link is ever missing from the archive.
"""

from __future__ import annotations

import contextvars
import gzip
import json
import os
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

PREFIX = "links/"
_STAGED: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "archive_staged", default=None)


def stage(records: list[dict[str, Any]]) -> None:
    """Called by a handler: these records go to the archive with its message's batch."""
    staged = _STAGED.get()
    if staged is None:
        raise RuntimeError("archive.stage() outside a handler run by the consumer")
    staged.extend(records)


@contextmanager
def staging() -> Iterator[list[dict[str, Any]]]:
    """Called by the consumer around one handler: collects what it stages."""
    staged: list[dict[str, Any]] = []
    token = _STAGED.set(staged)
    try:
        yield staged
    finally:
        _STAGED.reset(token)


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
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        # mtime=0: the same records make the same bytes, whatever the hour.
        self.s3.put_object(Bucket=self.bucket, Key=key, ContentType="application/x-ndjson",
                           ContentEncoding="gzip", Body=gzip.compress(body.encode(), mtime=0))
        return key

    def keys(self) -> Iterator[str]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def read(self, key: str) -> Iterator[dict[str, Any]]:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        for line in gzip.decompress(body).decode().splitlines():
            if line:
                yield json.loads(line)
