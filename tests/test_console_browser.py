"""The console in a real headless Chromium (Debian's, driven by Playwright, as
tests/test_share_button.py does), used as a person uses it: sign in, see a dead letter arrive,
search it, replay it, watch the task finish and the link's count rise as the post-sent daemon
counts it; a viewer is offered nothing it may not do; a page of another origin cannot act."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from console_proc import OPERATOR, VIEWER, ConsoleProcess, add_users, start_console
from playwright.sync_api import Browser, Page, expect, sync_playwright

from helpers import queue_depth, wait_until
from workers.adapters.sqs import ERROR_ATTRIBUTE
from workers.ops import fleet

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
URL = "https://example.com/replayed-once"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is missing: `make test` installs it (apt-get)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def console(env, queues, tmp_path) -> Iterator[ConsoleProcess]:
    users = tmp_path / "users"
    add_users(users)
    proc = start_console({**env, "WORKERS_CONSOLE_USERS": str(users),
                          "WORKERS_CONSOLE_REFRESH": "1"}, tmp_path / "console.log")
    yield proc
    proc.stop()


def sign_in(page: Page, console: ConsoleProcess, user: tuple[str, str]) -> None:
    page.goto(console.url)
    assert page.url.endswith("/login")
    page.fill("input[name=username]", user[0])
    page.fill("input[name=password]", user[1])
    page.click("button[type=submit]")
    page.wait_for_url(console.url + "/")


def dead_letter(sqs, dlq: str, event: dict, reason: str) -> None:
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(event), MessageAttributes={
        ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": reason}})


def test_an_operator_finds_a_dead_letter_replays_it_and_sees_it_counted(
        browser, console, daemons, sqs, dlq, source):
    daemons("post-sent")
    page = browser.new_page()
    try:
        # Given an operator on the queues page, live
        sign_in(page, console, OPERATOR)
        dlq_cell = 'tr[data-queue="post-sent"] td[data-k="dlq"]'
        expect(page.locator(dlq_cell)).to_have_text("0", timeout=30_000)
        # When a post that failed while Redis was away lands in the DLQ, beside another
        dead_letter(sqs, dlq, {"update_id": "u-dead", "profile_id": "p1", "url": URL},
                    "redis: connection refused")
        dead_letter(sqs, dlq, {"update_id": "u-other", "profile_id": "p1"}, "something else")
        # Then the page shows it arrive, without a reload
        expect(page.locator(dlq_cell)).to_have_text("2", timeout=30_000)
        # When they search its dead letters for the link, and replay what matches
        page.click(f"{dlq_cell} a")
        page.fill("input[name=q]", "REPLAYED-once")
        page.click("#search button")
        page.wait_for_selector("#messages tbody tr[data-id]")
        assert page.locator("#messages tbody tr[data-id]").count() == 1
        assert "redis: connection refused" in page.inner_text("#messages")
        page.click("#replay button[type=submit]")
        # Then the task finishes, having moved the one message
        page.wait_for_selector("#tasks tr[data-state=completed]", timeout=60_000)
        assert page.inner_text("#tasks tr[data-state=completed] .moved") == "1"
        assert page.inner_text("#tasks tr[data-state=completed] .total") == "1"
        # and the post-sent daemon counts the link: its count rises to 1
        page.goto(f"{console.url}/links?url={URL}")

        def counted() -> bool:
            page.reload()
            return page.get_attribute("#shares", "data-count") == "1"
        wait_until(counted, 60, interval=0.5)
        # The other dead letter stays where it was
        assert queue_depth(sqs, dlq) == 1
        page.goto(f"{console.url}/audit")
        assert "replay" in page.inner_text("#audit") and "olga" in page.inner_text("#audit")
    finally:
        page.close()


def test_a_viewer_is_offered_nothing_it_may_not_do(browser, console, sqs, dlq):
    dead_letter(sqs, dlq, {"update_id": "v1", "profile_id": "p1"}, "kept")
    page = browser.new_page()
    try:
        sign_in(page, console, VIEWER)
        page.goto(f"{console.url}/dlq/post-sent")
        page.wait_for_selector("#messages tbody tr[data-id]")
        assert page.locator("#replay").count() == 0 and page.locator("#purge").count() == 0
        assert "viewer" in page.inner_text(".readonly")
        # Nor may it act by hand from the page, CSRF token and all
        status = page.evaluate("""async () => (await fetch('/api/dlq/post-sent/purge', {
            method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token':
            document.querySelector('meta[name=csrf-token]').content},
            body: JSON.stringify({confirm: 'post-sent'})})).status""")
        assert status == 403
        assert queue_depth(sqs, dlq) == 1
        # The fleet's page shows the processes but no form to scale them
        page.goto(f"{console.url}/fleet")
        page.wait_for_selector("table.processes tr[data-id]")
        assert page.locator("form.scale").count() == 0
    finally:
        page.close()


def test_an_operator_sees_the_fleet_and_sets_a_hosts_count(browser, console, redis_client):
    # Given the console registered in the fleet, and its host wanting one push daemon
    [me] = wait_until(lambda: [p for p in fleet.processes(redis_client)
                               if p["program"] == "console"], 30)
    fleet.set_wanted(redis_client, me["host"], "push", 1)
    page = browser.new_page()
    try:
        sign_in(page, console, OPERATOR)
        page.click("nav a[href='/fleet']")
        # Then the page lists the console's own process under its host
        row = page.locator(f'section[data-host="{me["host"]}"] tr[data-id="{me["id"]}"]')
        expect(row).to_contain_text("console")
        # When the operator sets push to 2 on that host, through the page's form
        form = page.locator(f'form.scale[data-host="{me["host"]}"][data-queue="push"]')
        form.locator("input[name=processes]").fill("2")
        form.locator("button").click()
        expect(form.locator("output")).to_contain_text("wanted 2", timeout=10_000)
        # Then the host's wanted count is 2 in Redis, where its workers-scale reads it
        assert fleet.wanted(redis_client, me["host"]) == {"push": 2}
    finally:
        page.close()


class _Evil(BaseHTTPRequestHandler):
    """A page of another origin that posts a purge to the console as soon as it loads."""
    target = ""

    def do_GET(self) -> None:
        page = (f'<form id="f" method="post" action="{self.target}">'
                '<input name="confirm" value="post-sent"></form>'
                '<script>document.getElementById("f").submit()</script>').encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


def test_a_page_from_another_origin_cannot_act(browser, console, sqs, dlq):
    dead_letter(sqs, dlq, {"update_id": "e1", "profile_id": "p1"}, "kept")
    handler = type("Evil", (_Evil,), {"target": f"{console.url}/api/dlq/post-sent/purge"})
    evil = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    context = browser.new_context()
    page = context.new_page()
    try:
        # Given a signed-in operator's browser
        sign_in(page, console, OPERATOR)
        # When it opens a page of another origin that submits a purge to the console
        with page.expect_response(f"{console.url}/api/dlq/post-sent/purge") as answer:
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        # Then the console refuses it, and the dead letter is still there
        assert answer.value.status in (401, 403)
        assert queue_depth(sqs, dlq) == 1
    finally:
        context.close()
        evil.shutdown()
        evil.server_close()
