import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.domain.links.urls import InvalidURL, normalize_key, normalize_url


@pytest.mark.parametrize("raw, key", [
    ("https://www.Buffer.com/#top", "buffer.com"),
    ("http://buffer.com/blog?id=3&utm_source=x", "buffer.com/blog?id=3"),
    ("  https://buffer.com  ", "buffer.com"),
    ("HTTPS://BUFFER.COM/Blog", "buffer.com/Blog"),
    ("http://buffer.com:80/a", "buffer.com/a"),
    ("https://buffer.com:443/", "buffer.com"),
    ("https://buffer.com:8443/", "buffer.com:8443"),
    ("https://buffer.com/?utm_medium=a&utm_campaign=b", "buffer.com"),
    ("https://buffer.com/?b=2&a=1&utm_x=3", "buffer.com?b=2&a=1"),
    ("https://user:secret@buffer.com/a", "buffer.com/a"),
    ("http://[2001:db8::1]:8080/x", "[2001:db8::1]:8080/x"),
])
def test_normalizes_as_the_spec_says(raw, key):
    assert normalize_url(raw) == key


@pytest.mark.parametrize("raw", [
    "ftp://buffer.com/file", "mailto:a@b.c", "buffer.com", "http://", "https:///path",
    "https://" + "a" * 2048 + ".com", "http://[::1", "http://buffer.com:99999/",
    "https://buf fer.com/", "", "   ", None, 42,
])
def test_rejects_what_cannot_count(raw):
    with pytest.raises(InvalidURL):
        normalize_url(raw)


def test_a_normalized_key_can_be_looked_up_again():
    assert normalize_key("buffer.com/blog?id=3") == "buffer.com/blog?id=3"
    assert normalize_key("https://www.buffer.com/blog?id=3") == "buffer.com/blog?id=3"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_key_or_invalid(text):
    try:
        normalize_url(text)
    except InvalidURL:
        pass


urls = st.builds(
    lambda scheme, host, port, path, query: f"{scheme}://{host}{port}{path}{query}",
    st.sampled_from(["http", "https", "HTTP"]),
    st.from_regex(r"(www\.){0,2}[A-Za-z0-9-]{1,10}\.[a-z]{2,3}", fullmatch=True),
    st.sampled_from(["", ":80", ":443", ":8080"]),
    st.from_regex(r"(/[A-Za-z0-9._~%-]{0,8}){0,3}", fullmatch=True),
    st.from_regex(r"(\?([a-z_]{1,6}=[a-z0-9]{0,4}&?){0,4})?(#[a-z]*)?", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(urls)
def test_normalizing_a_normalized_url_changes_nothing(url):
    key = normalize_url(url)
    assert normalize_key(key) == key
    assert not key.startswith("www.")
    assert "utm_" not in key and "#" not in key
