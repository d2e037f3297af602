"""No client can exhaust a `workers links serve` process (SPEC.md, "The read API of link
counts"): under a client that pipelines and never reads, one whose header never ends, and a
flood of distinct padded URLs, the real process stays within 64 MiB of its resident size at
rest and another client's requests are answered. Plus the request framings the server must
get right: a legal batch longer than 65,535 bytes, and a Transfer-Encoding it cannot frame."""

from __future__ import annotations

import re
import socket
from typing import Iterator

import pytest
import requests
from hostile import SHARES, siege

import devstack
from links_api import API, start_api

# SPEC: a process stays within this of its resident size at rest, whatever one client sends.
MEMORY_BOUND_MIB = 64
SIEGE_SECONDS = 4.0


def start(redis_service: devstack.Service, log_dir) -> API:
    server = start_api(devstack.stack_env(1, redis_service.port), log_dir / "api.log")
    with requests.Session() as warm:  # at rest means having served: imports, caches, pools
        for n in range(50):
            assert warm.get(f"{server.url}{SHARES}?url=example.com/{n}", timeout=10).ok
    return server


@pytest.fixture(scope="module")
def api(redis_service: devstack.Service,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[API]:
    server = start(redis_service, tmp_path_factory.mktemp("framing"))
    yield server
    assert server.stop() == 0


@pytest.fixture
def fresh_api(redis_service: devstack.Service, tmp_path) -> Iterator[API]:
    """A process of its own: memory one siege freed would hide what the next one takes."""
    server = start(redis_service, tmp_path)
    yield server
    assert server.stop() == 0


def raw(api: API, request: bytes) -> bytes:
    """What the server answers to bytes sent as they are, up to its closing the connection."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(request)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


@pytest.mark.parametrize("kind", ["pipeliner", "endless_header", "padded_urls"])
def test_a_hostile_client_bounds_memory_and_stalls_no_one(fresh_api, kind):
    api = fresh_api
    # Given a process at rest; when one client attacks it for a few seconds
    result = siege(kind, api.proc.pid, api.port, SIEGE_SECONDS if kind != "padded_urls"
                   else 60.0)  # the padded flood stops after its URLs, within seconds
    # Then the process held at most 64 MiB more than at rest
    assert result.growth_mib < MEMORY_BOUND_MIB, result
    # and another client was answered all along (each within OTHER_TIMEOUT_S)
    assert result.other_requests > 0 and result.other_unanswered == 0, result
    assert result.hostile_total > 0, result  # the attack did reach the server
    assert requests.get(api.url + "/health", timeout=5).status_code == 200
    assert "Traceback" not in api.log


def test_a_batch_longer_than_the_servers_target_limit_is_refused_and_others_still_served(api):
    """A known limit, not the SPEC's wish: granian's HTTP/1.1 (hyper) keeps a request target in
    the http crate's Uri, at most 65,534 bytes, so a legal 100-URL batch of long URLs must be
    split by its client (docs/readapi.rst says so). What users get is a clear 414 at once, and the
    server goes on answering."""
    urls = [f"https://example.com/{n}/" + "a" * 1000 for n in range(100)]
    query = "&".join(f"url={u}" for u in urls)
    assert len(query) > 65_535
    answer = requests.get(f"{api.url}{SHARES}?{query}", timeout=10)
    assert answer.status_code == 414, answer.status_code
    half = "&".join(f"url={u}" for u in urls[:50])
    assert requests.get(f"{api.url}{SHARES}?{half}", timeout=10).json() == {
        "shares": {u: 0 for u in urls[:50]}}


def test_a_transfer_encoding_it_cannot_frame_is_refused_not_answered(api):
    answer = raw(api, f"GET {SHARES}?url=buffer.com HTTP/1.1\r\nHost: x\r\n"
                      "Transfer-Encoding: xchunked\r\n\r\n".encode())
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert statuses and statuses[0].startswith(b"4"), answer[:300]
    assert b"200" not in statuses, answer[:300]
