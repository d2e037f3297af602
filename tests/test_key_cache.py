"""The read API's cache of normalized keys stays small whatever URLs it is asked: bounded in
entries and in characters held, and never keeping a URL padded past a valid one's length."""

from __future__ import annotations

import pytest

from workers.domain.links.urls import InvalidURL
from workers.readapi.app import KEY_CACHE_CHARS, KeyCache


def test_long_distinct_urls_are_held_within_the_character_budget():
    cache = KeyCache()
    # 5,000 distinct valid URLs of 2,000 characters: 20 million characters asked
    for n in range(5_000):
        url = f"example.com/{n}/" + "a" * (2_000 - len(f"example.com/{n}/"))
        assert cache.key(url) == url
    assert cache.held <= KEY_CACHE_CHARS
    assert 0 < len(cache) < 5_000


def test_entries_are_bounded_and_the_least_recently_asked_goes_first():
    cache = KeyCache(entries=3)
    for url in ("a.com", "b.com", "c.com"):
        cache.key(url)
    cache.key("a.com")  # asked again: now the most recent
    cache.key("d.com")
    assert len(cache) == 3
    assert "b.com" not in cache and all(u in cache for u in ("a.com", "c.com", "d.com"))


def test_a_padded_url_is_answered_but_never_kept():
    cache = KeyCache()
    assert cache.key(" " * 60_000 + "buffer.com") == "buffer.com"
    assert len(cache) == 0 and cache.held == 0


def test_an_invalid_url_is_refused_and_not_kept():
    cache = KeyCache()
    with pytest.raises(InvalidURL):
        cache.key("ftp://buffer.com")
    assert len(cache) == 0
