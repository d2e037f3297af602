"""The share-button page (served by `workers links serve` at ``/``) in a real headless Chromium:
its count, read by JSONP, rises as a real post-sent daemon counts events for its URL.

Debian's chromium, driven by Playwright's Python package; no browser is downloaded (the
Makefile installs chromium through apt-get)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from helpers import send
from links_api import start_api

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
URL = "https://buffer.com/launch-day"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is missing: `make test` installs it (apt-get)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def shown(count: int) -> str:
    """A page condition: the button shows ``count`` (Playwright polls it; no sleeps)."""
    return f"document.getElementById('count').dataset.count === '{count}'"


def test_the_button_shows_the_count_as_a_daemon_counts_events(browser, env, queues, daemons,
                                                               sqs, settings, tmp_path,
                                                               redis_client):
    api = start_api(env, tmp_path / "api.log")
    page = browser.new_page()
    try:
        # Given the page, polling the API every 0.2 s by JSONP, shows 0 for a new link
        page.goto(f"{api.url}/?url={URL}&every=0.2")
        page.wait_for_function(shown(0), timeout=20_000)
        # When a daemon counts two posts naming it (one delivered twice, one spelled otherwise)
        daemons("post-sent")
        url = queues[settings.queue_name("post-sent")]
        post = {"update_id": "u1", "profile_id": "p1", "url": URL}
        send(sqs, url, post, post,
             {"update_id": "u2", "profile_id": "p1", "urls": ["http://www.buffer.com/launch-day"]})
        # Then the button shows 2
        page.wait_for_function(shown(2), timeout=60_000)
        assert page.inner_text("#count") == "2"
        assert page.inner_text("#url") == URL
    finally:
        page.close()
        assert api.stop() == 0


@pytest.mark.parametrize("api_param", [
    "data:text/javascript,document.title='XSS-'%2Blocation.hostname//",
    "javascript:document.title='XSS'//",
])
def test_the_page_runs_no_script_from_an_api_that_is_not_http(browser, env, tmp_path, api_param):
    api = start_api(env, tmp_path / "api.log")
    page = browser.new_page()
    try:
        # Given the page asked to read its counts from a data: (or javascript:) "API"
        page.goto(f"{api.url}/?url=https://example.com/never-shared&every=0&api={api_param}")
        # Then it reads them from its own origin instead, and what that URL held never ran
        page.wait_for_function(shown(0), timeout=20_000)
        assert page.title() == "Share button"
    finally:
        page.close()
        assert api.stop() == 0
