"""Text shown to people: cut to a length, and someone else's text made safe for a terminal."""

from __future__ import annotations

import json
from typing import Any

ELLIPSIS = "…"
# Whatever a dead letter holds is someone else's text: printed raw, an escape sequence in it
# (ESC, or the C1 CSI 0x9b) could retitle, recolour or rewrite the operator's terminal, and a
# bidi override could reorder what they read. Every character Python does not call printable
# (controls, format characters, separators other than the space, unassigned) is shown escaped:
# \n, \x1b, \u202e.
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


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
