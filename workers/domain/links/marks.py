"""The bytes that name what a count touches: one format for counting (``links``), the archive
(``archive``) and its rebuild (``backfill``), which must agree to the bit.

* A pair's **mark**: 8 bytes of blake2b over ``update_id``, a newline and the URL key; the
  idempotency mark a count leaves in Redis (collision odds about 2^-64 a pair).
* A URL key's **digest**: 10 bytes of blake2b; its first 4 (big-endian, modulo the buckets)
  pick the key's bucket, the other 6 are its counter's field.
* An archive line's **lead**: both in hex, first in the line and at the same places in every
  line, so a backfill takes them from a whole object at once instead of hashing each record.

blake2b both, so a backfill computes them over bytes at C speed. Daemons import this module:
it must stay free of numpy.
"""

from __future__ import annotations

import functools
import hashlib

MARK_BYTES = 8
KEY_DIGEST_BYTES = 10
BUCKET_BYTES = 4
FIELD_BYTES = KEY_DIGEST_BYTES - BUCKET_BYTES
mark_hash = functools.partial(hashlib.blake2b, digest_size=MARK_BYTES)
key_hash = functools.partial(hashlib.blake2b, digest_size=KEY_DIGEST_BYTES)
# (update_id, key), UTF-8 encoded -> the text a mark hashes; join runs in C, which a backfill
# mapping it over millions of pairs wants.
pair_text = b"\n".join

# The lead's two fields, in the order ``lead`` writes them; json.dumps keeps that order.
MARK_FIELD, DIGEST_FIELD = "pair_mark", "url_digest"
LEAD = (f'{{"{MARK_FIELD}":"'.encode() + b"0" * 2 * MARK_BYTES
        + f'","{DIGEST_FIELD}":"'.encode() + b"0" * 2 * KEY_DIGEST_BYTES + b'",')
MARK_AT = LEAD.index(b"0")
DIGEST_AT = LEAD.index(b"0", MARK_AT + 2 * MARK_BYTES)
# The lead after its opening brace, as a regular expression (for ``archive.pairs``).
LEAD_PATTERN = (f'"{MARK_FIELD}":"[0-9a-f]{{{2 * MARK_BYTES}}}",'
                f'"{DIGEST_FIELD}":"[0-9a-f]{{{2 * KEY_DIGEST_BYTES}}}",').encode()


def pair_mark(update_id: str, key: str) -> bytes:
    """The idempotency mark of one (update, URL key) pair."""
    return mark_hash(f"{update_id}\n{key}".encode()).digest()


def key_digest(key: bytes) -> bytes:
    """The digest of a URL key, UTF-8 encoded: its bucket and counter field."""
    return key_hash(key).digest()


def bucket_and_field(digest: bytes, buckets: int) -> tuple[int, bytes]:
    """The bucket (of ``buckets``) and counter field a key's digest names."""
    return int.from_bytes(digest[:BUCKET_BYTES], "big") % buckets, digest[BUCKET_BYTES:]


def lead(update_id: bytes, key: bytes) -> dict[str, str]:
    """An archive line's lead fields for this pair, to put first in its JSON object."""
    return {MARK_FIELD: mark_hash(pair_text((update_id, key))).hexdigest(),
            DIGEST_FIELD: key_hash(key).hexdigest()}
