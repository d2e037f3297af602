"""The CLI's tables (``workers dlq list``, ``workers stats``) and the ages in them."""

from __future__ import annotations

from typing import Sequence


def format_age(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h10m``, ``3d04h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as wide as their widest cell, two spaces apart, no trailing blanks."""
    widths = [max(len(str(cell)) for cell in column)
              for column in zip(headers, *rows, strict=True)]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in [headers, *rows])
