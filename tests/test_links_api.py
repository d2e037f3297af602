"""`workers links serve` as share buttons and the product's API use it: a real server process
on a free loopback port, reading a real redis-server (SPEC.md, "The read API of link counts")."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests

import devstack
from helpers import Fleet, wait_until, workers_cmd
from links_api import API, start_api
from workers import QUEUES
from workers.adapters import redisconn
from workers.core.settings import procs_variable
from workers.domain.links.counter import LinkCounter
from workers.domain.links.urls import normalize_url
from workers.readapi.limits import MAX_BODY_BYTES, MAX_HEADER_BYTES
from workers.web.server import Limits

SHARES = "/1/links/shares.json"


@pytest.fixture(scope="module")
def api_env(redis_service: devstack.Service) -> dict[str, str]:
    return devstack.stack_env(1, redis_service.port)  # no AWS: the API reads Redis alone


@pytest.fixture(scope="module")
def api(api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[API]:
    server = start_api(api_env, tmp_path_factory.mktemp("api") / "api.log")
    yield server
    server.stop()


@pytest.fixture
def counter(redis_client: redis.Redis) -> LinkCounter:
    """The daemons' own counter on a flushed Redis: what the API reads is what they wrote."""
    return LinkCounter(redis_client)


def shares(api: API, *urls: str, **params: str) -> requests.Response:
    return requests.get(api.url + SHARES, params=[("url", u) for u in urls] + list(params.items()),
                        timeout=10)


def count(counter: LinkCounter, url: str, times: int) -> None:
    for n in range(times):
        counter.record(f"update-{url}-{n}", [normalize_url(url)])


def raw(api: API, request: bytes) -> bytes:
    """What the server answers to bytes sent as they are, up to its closing the connection."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it refused before reading all: its answer is still there to read
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def test_a_counted_url_reads_its_count_under_every_spelling(api, counter, api_env):
    count(counter, "https://buffer.com", 3)
    for spelling in ("buffer.com", "https://www.Buffer.com/#top", "http://buffer.com/",
                     "https://buffer.com/?utm_source=x", " buffer.com "):
        answer = shares(api, spelling)
        assert answer.status_code == 200, (spelling, answer.text)
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {"shares": 3}, spelling
    # the same count `workers links count` reads
    assert workers_cmd("links", "count", "buffer.com", env=api_env).stdout == "3\tbuffer.com\n"


def test_a_url_never_counted_reads_zero(api, counter):
    assert shares(api, "https://example.com/never-shared").json() == {"shares": 0}


def test_several_urls_answer_each_as_given_and_a_repeated_one_once(api, counter):
    count(counter, "https://buffer.com/blog", 2)
    count(counter, "http://example.com/launch", 1)
    answer = shares(api, "buffer.com/blog", "https://example.com/launch", "buffer.com/blog",
                    "https://www.buffer.com/blog?utm_medium=y", "never.example")
    assert answer.status_code == 200
    assert answer.json() == {"shares": {"buffer.com/blog": 2, "https://example.com/launch": 1,
                                        "https://www.buffer.com/blog?utm_medium=y": 2,
                                        "never.example": 0}}


def test_a_hundred_urls_are_read_and_a_hundred_and_one_refused(api, counter):
    urls = [f"example.com/{n}" for n in range(100)]
    assert len(shares(api, *urls).json()["shares"]) == 100
    refused = shares(api, *urls, "example.com/100")
    assert refused.status_code == 400
    assert "at most 100" in refused.json()["error"]


def test_jsonp_wraps_the_answer_in_the_callback(api, counter):
    count(counter, "https://buffer.com", 2)
    answer = shares(api, "buffer.com", callback="jQuery_123.cb$")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.text == 'jQuery_123.cb$({"shares":2});'
    batch = shares(api, "buffer.com", "other.example", callback="cb")
    assert batch.text == 'cb({"shares":{"buffer.com":2,"other.example":0}});'


@pytest.mark.parametrize("callback", ["alert(1)", "1abc", "a" * 65, "", "a-b", "x;y",
                                      "</script>"])
def test_a_bad_callback_is_refused_as_json(api, callback):
    answer = shares(api, "buffer.com", callback=callback)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert "callback" in answer.json()["error"]


@pytest.mark.parametrize("urls", [(), ("ftp://buffer.com",), ("",), ("https://",),
                                  ("https://buffer.com/" + "a" * 2048,),
                                  ("buffer.com", "javascript:alert(1)")])
def test_no_url_or_an_invalid_one_is_a_json_400(api, urls):
    answer = shares(api, *urls)
    assert answer.status_code == 400
    assert answer.headers["access-control-allow-origin"] == "*"
    assert set(answer.json()) == {"error"}


def test_every_answer_allows_any_origin_and_a_200_may_be_cached(api, counter):
    ok = shares(api, "buffer.com")
    assert ok.headers["access-control-allow-origin"] == "*"
    assert ok.headers["cache-control"] == "public, max-age=600"
    for answer in (shares(api), requests.get(api.url + "/nope", timeout=10),
                   requests.post(api.url + SHARES, timeout=10),
                   requests.options(api.url + SHARES, timeout=10)):
        assert answer.headers["access-control-allow-origin"] == "*", answer.status_code
        assert "public" not in answer.headers.get("cache-control", ""), answer.status_code


def test_the_max_age_comes_from_the_environment(api_env, tmp_path, counter):
    server = start_api(api_env, tmp_path / "api.log", WORKERS_SHARES_MAX_AGE="60")
    try:
        assert shares(server, "buffer.com").headers["cache-control"] == "public, max-age=60"
    finally:
        assert server.stop() == 0  # SIGTERM: a warm stop


def test_an_unknown_path_is_404_and_another_method_405(api):
    missing = requests.get(api.url + "/1/links/nope.json", timeout=10)
    assert missing.status_code == 404 and "error" in missing.json()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        refused = requests.request(method, api.url + SHARES + "?url=buffer.com", timeout=10)
        assert refused.status_code == 405, method
        assert refused.headers["allow"] == "GET, HEAD, OPTIONS"
        assert "error" in refused.json()


def test_head_answers_as_get_without_a_body(api, counter):
    count(counter, "https://buffer.com", 1)
    got = shares(api, "buffer.com")
    head = requests.head(api.url + SHARES, params={"url": "buffer.com"}, timeout=10)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "cache-control",
                 "access-control-allow-origin"):
        assert head.headers[name] == got.headers[name], name
    # and nothing after the head on the wire: the next answer on the connection is intact
    answer = raw(api, f"HEAD {SHARES}?url=buffer.com HTTP/1.1\r\nHost: x\r\n\r\n"
                      f"GET {SHARES}?url=buffer.com HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\n\r\n".encode())
    assert answer.count(b"HTTP/1.1 200") == 2 and answer.endswith(b'{"shares":1}')


def test_options_answers_204_with_allow_and_cors(api):
    answer = requests.options(api.url + SHARES, timeout=10)
    assert answer.status_code == 204 and answer.content == b""
    assert answer.headers["allow"] == "GET, HEAD, OPTIONS"
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "GET" in answer.headers["access-control-allow-methods"]


def test_health_and_metrics(api, counter):
    shares(api, "buffer.com")
    health = requests.get(api.url + "/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    metrics = requests.get(api.url + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'workers_links_api_requests_total{process="0",route="/1/links/shares.json",' \
           'status="200"}' in metrics.text
    assert "workers_links_api_request_seconds_bucket" in metrics.text
    assert "workers_links_api_redis_round_trips" in metrics.text


@pytest.mark.parametrize("request_bytes, why", [
    (b"GET " + SHARES.encode() + b"?url=a.com HTTP/1.1\r\nHost: x\r\nX-Big: "
     + b"b" * (MAX_HEADER_BYTES + 1) + b"\r\n\r\n", "headers"),
    (b"GET " + SHARES.encode() + b"?url=a.com HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
     % (MAX_BODY_BYTES + 1) + b"x" * (MAX_BODY_BYTES + 1), "body"),
    (b"GET " + SHARES.encode() + b"?url=" + b"&url=a".join([b"a"] * 5000) + b" HTTP/1.1\r\n"
     b"Host: x\r\nConnection: close\r\n\r\n", "parameters"),
    (b"GET " + SHARES.encode() + b"?url=%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
     "UTF-8"),
])
def test_oversized_or_malformed_requests_are_refused_as_json_400(api, request_bytes, why):
    answer = raw(api, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"access-control-allow-origin: *" in head.lower()
    assert why in json.loads(body)["error"]
    if why in ("headers", "body"):  # nothing more is read: not an endless body, not its rest
        assert b"connection: close" in head.lower()
    assert "Traceback" not in api.log


@pytest.mark.parametrize("request_bytes", [
    b"GET " + SHARES.encode() + b"?url=a.com HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"b" * (Limits().head_bytes + 1) + b"\r\n\r\n",
    b"GET " + SHARES.encode() + b"?url=a.com HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-%d: 1\r\n" % n for n in range(200)) + b"\r\n",
    b"GET " + SHARES.encode() + b"?url=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"NOT HTTP AT ALL\r\n\r\n",
], ids=["head", "header count", "target", "malformed"])
def test_what_the_http_server_refuses_is_a_4xx_and_a_closed_connection(api, request_bytes):
    # The server refuses these before the app sees them (no JSON body, no CORS header: a
    # browser never sends them); what matters is that nothing is answered 200 or kept.
    answer = raw(api, request_bytes)
    assert re.match(rb"HTTP/1\.1 4\d\d ", answer), answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1
    assert "Traceback" not in api.log


def test_redis_away_is_503_with_retry_after_and_back_is_200(api_env, tmp_path):
    own = devstack.redis_server(log_path=tmp_path / "redis.log").start()
    server = start_api(api_env, tmp_path / "api.log",
                       REDIS_URL=f"redis://127.0.0.1:{own.port}/0")
    try:
        assert shares(server, "buffer.com").json() == {"shares": 0}
        own.stop()
        away = shares(server, "buffer.com")
        assert away.status_code == 503
        assert int(away.headers["retry-after"]) > 0
        assert away.headers["access-control-allow-origin"] == "*"
        assert "redis" in away.json()["error"]
        assert requests.get(server.url + "/health", timeout=10).status_code == 503
        own.start()  # the same port: the server reconnects by itself
        wait_until(lambda: shares(server, "buffer.com").status_code == 200, timeout=20)
        assert requests.get(server.url + "/health", timeout=10).status_code == 200
    finally:
        server.stop()
        own.discard()
    assert "Traceback" not in server.log


def test_it_refuses_to_start_on_a_redis_that_may_evict(api_env, tmp_path):
    own = devstack.redis_server(extra=("--maxmemory-policy", "allkeys-lru")).start()
    try:
        env = {**api_env, "REDIS_URL": f"redis://127.0.0.1:{own.port}/0",
               "WORKERS_LINKS_API_PORT": str(devstack.free_port())}
        done = workers_cmd("links", "serve", env=env, timeout=30)
    finally:
        own.discard()
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "maxmemory-policy" in lines[0] and "noeviction" in lines[0], lines


def test_the_button_page_is_served_at_the_root(api):
    page = requests.get(api.url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # ... the button that reads its count from this API by JSONP (what it does with the
    # count is tested in Chromium: test_share_button.py)
    assert "/1/links/shares.json?url=" in page.text
    assert "callback=shareButton.show" in page.text


def test_links_api_processes_scale_under_supervisord_and_share_one_port(env, queues, redis_client):
    # Given the fleet under supervisord, no daemon but one links-api process
    fleet = Fleet({**env, "WORKERS_RUN_DIR": tempfile.mkdtemp(prefix="wla"),  # short: a socket
                   "WORKERS_BIN": str(Path(sys.executable).parent / "workers"),
                   **{procs_variable(q): "0" for q in QUEUES}})
    port = env["WORKERS_LINKS_API_PORT"]
    seen: set[str] = set()

    def processes_answering() -> set[str]:  # a new connection each: the kernel picks one
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        seen.update(re.findall(r'process="(\d+)"', metrics))
        return seen

    try:
        fleet.start_any()
        wait_until(lambda: len(fleet.pids("links-api")) == 1, timeout=30, interval=0.3)
        first = fleet.pids("links-api")["links-api_00"]
        # When it is scaled to 2
        up = fleet.scale("links-api", "2")
        # Then two processes answer on the one port, the first never restarted
        assert up.returncode == 0, up.stderr
        assert up.stdout.endswith(": 2 processes running\n")
        wait_until(lambda: processes_answering() == {"0", "1"}, timeout=30, interval=0.05)
        assert fleet.pids("links-api")["links-api_00"] == first
        # And back to 1: only links-api_00 is left, answering
        assert fleet.scale("links-api", "1").returncode == 0
        assert fleet.pids("links-api") == {"links-api_00": first}
        answer = requests.get(f"http://127.0.0.1:{port}/1/links/shares.json?url=buffer.com",
                              timeout=5)
        assert answer.json() == {"shares": 0}
        assert fleet.stop() == 0
    finally:
        fleet.teardown()


def test_counts_are_read_from_a_redis_cluster(api_env, redis_cluster, tmp_path):
    client = redisconn.connect(redis_cluster.url)
    client.flushall()  # on every master
    count(LinkCounter(client), "https://buffer.com/cluster", 2)
    server = start_api(api_env, tmp_path / "api.log", REDIS_URL=redis_cluster.url)
    try:
        assert shares(server, "buffer.com/cluster").json() == {"shares": 2}
        assert shares(server, "buffer.com/cluster", "never.example").json() == {
            "shares": {"buffer.com/cluster": 2, "never.example": 0}}
        assert requests.get(server.url + "/health", timeout=10).status_code == 200
    finally:
        assert server.stop() == 0


def test_a_port_taken_by_another_program_is_one_line_and_exit_1(api_env):
    with socket.socket() as taken:  # bound without SO_REUSEPORT: not one of ours
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = workers_cmd("links", "serve", env={**api_env, "WORKERS_LINKS_API_PORT": str(port)},
                           timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen on" in lines[0] and str(port) in lines[0], lines


def test_sigterm_closes_idle_connections_and_exits_0(api_env, tmp_path):
    server = start_api(api_env, tmp_path / "api.log")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        idle.sendall(f"GET {SHARES}?url=buffer.com HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")  # kept alive, then idle
        assert server.stop() == 0  # a warm stop, not a kill
        assert idle.recv(65536) == b""  # the server closed it


def test_a_server_whose_parent_is_killed_stops_warmly(api_env, tmp_path):
    # Given `links serve` started by a process standing in for supervisord
    log = tmp_path / "orphan.log"
    port = devstack.free_port()
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys\n"
         f"p = subprocess.Popen([sys.executable, '-m', 'workers', 'links', 'serve'],"
         f" stdout=open({str(log)!r}, 'ab'), stderr=subprocess.STDOUT)\n"
         "print(p.pid, flush=True)\n"
         "p.wait()\n"],
        env={**api_env, "WORKERS_LINKS_API_PORT": str(port)}, stdout=subprocess.PIPE,
        text=True, start_new_session=True)
    server_pid = int(parent.stdout.readline())
    try:
        devstack.wait_for_port(port)
        # When that parent is SIGKILLed
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # Then the server stops by itself, warmly, saying why
        wait_until(lambda: not _running(server_pid), timeout=30)
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any(line.get("event") == "links_api.stopped"
                   and line.get("reason") == "parent.died" for line in lines), lines
    finally:
        if _running(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
