"""URL normalization: the key a link is counted under (see SPEC.md, "URL normalization")."""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
# The key drops the scheme, so both schemes' default ports go: otherwise https://x:80 and
# http://x:80 would share a key that normalizes differently the second time.
DEFAULT_PORTS = (80, 443)


class InvalidURL(ValueError):
    """The URL cannot be counted; the message says why."""


def normalize_url(raw: object) -> str:
    """``https://www.Buffer.com/#top`` -> ``buffer.com``; InvalidURL when it cannot count."""
    if not isinstance(raw, str):
        raise InvalidURL(f"not a string: {type(raw).__name__}")
    url = raw.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise InvalidURL("contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname or ""
    except ValueError as exc:
        raise InvalidURL(f"malformed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidURL(f"scheme is {parts.scheme or 'missing'!r}, not http or https")
    return _key(host, port, parts.path, parts.query)


def normalize_key(text: str) -> str:
    """Like normalize_url, but also takes an already normalized key (which has no scheme)."""
    stripped = text.strip()
    if "://" not in stripped:
        stripped = "http://" + stripped
    return normalize_url(stripped)


def _key(host: str, port: int | None, path: str, query: str) -> str:
    while host.startswith("www."):
        host = host[4:]
    if not host:
        raise InvalidURL("no host")
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if port is None or port in DEFAULT_PORTS else f"{host}:{port}"
    kept = [p for p in query.split("&") if p and not _is_tracking(p)]
    return netloc + ("" if path == "/" else path) + ("?" + "&".join(kept) if kept else "")


def _is_tracking(param: str) -> bool:
    return param.split("=", 1)[0].lower().startswith("utm_")
