"""Text shown to people: cut to a length, and someone else's text made safe for a terminal."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, quote_plus

ELLIPSIS = "…"
# Whatever a dead letter holds is someone else's text: printed raw, an escape sequence in it
# (ESC, or the C1 CSI 0x9b) could retitle, recolour or rewrite the operator's terminal, and a
# bidi override could reorder what they read. Every character Python does not call printable
# (controls, format characters, separators other than the space, unassigned) is shown escaped:
# \n, \x1b, \u202e.
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


# A secret's characters that no escaping changes (repr, JSON, a URL's, a header's): an error
# may show the secret escaped ("Bearer abc\\n", "abc%0A"), and its runs of these survive.
_UNESCAPED_RUN = re.compile(r"[A-Za-z0-9._~-]+")
# Runs at least this long are masked wherever they appear: long enough not to blank out
# unrelated words, short enough that what is left of a secret is no use.
MIN_SECRET_RUN = 6
SECRET_MASK = "***"


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with each secret masked, in any escaping: as it is, as repr, JSON or a URL
    spell it, and each long run of its characters that escaping leaves alone."""
    for secret in secrets:
        if secret:
            for form in _secret_forms(secret):
                text = text.replace(form, SECRET_MASK)
    return text


def _secret_forms(secret: str) -> list[str]:
    pieces = {secret, secret.strip(), *(run for run in _UNESCAPED_RUN.findall(secret)
                                        if len(run) >= MIN_SECRET_RUN)}
    forms = {escaped for piece in pieces if piece for escaped in (
        piece, repr(piece)[1:-1], piece.replace("'", "\\'"), json.dumps(piece)[1:-1],
        piece.encode("unicode_escape").decode(), quote(piece, safe=""), quote_plus(piece))}
    return sorted(forms, key=len, reverse=True)  # the whole before its parts


def truncate(text: str, limit: int) -> str:
    """``text``, or its first ``limit - 1`` characters and an ellipsis: never over ``limit``."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def printable(text: str) -> str:
    """``text`` with every unprintable character escaped, safe to print to a terminal."""
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def json_printable(value: Any) -> str:
    """JSON of ``value``, Unicode kept readable, every unprintable character escaped (json
    escapes only those below 0x20; the others can only be inside strings, where a \\uXXXX
    escape means the same)."""
    text = json.dumps(value, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _json_escape(c) for c in text)


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else (
        f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # beyond the BMP, JSON spells a character as its UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
