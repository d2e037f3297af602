"""Fake HTTP peers for tests: real servers on free loopback ports.

``FakePusher`` checks every request's signature with the app secret as Pusher's HTTP API does,
and records the events it accepted. The social networks' stand-in is in the package
(``devstack.networks``), since the local stack runs it too; so is ``FakeServer``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from devstack.httpfake import FakeServer, Reply, Request

__all__ = ["FakePusher", "FakeServer", "Request"]


# -- Pusher -----------------------------------------------------------------------------------

# Pusher refuses a request whose auth_timestamp is more than 600 s from its clock.
PUSHER_CLOCK_SKEW_SECONDS = 600
# ... and an event whose data is over 10 kB.
PUSHER_MAX_DATA_BYTES = 10240


@dataclass
class FakePusher(FakeServer):
    app_id: str = "4242"
    key: str = "fake-app-key"
    secret: str = "fake-app-secret-0123456789"
    events: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The PUSHER_* environment of a daemon that should talk to this fake."""
        return {"PUSHER_APP_ID": self.app_id, "PUSHER_KEY": self.key,
                "PUSHER_SECRET": self.secret, "PUSHER_HOST": "127.0.0.1",
                "PUSHER_PORT": str(self.port), "PUSHER_SSL": "false"}

    def answer(self, request: Request) -> Reply:
        problem = self.check(request)
        if problem:
            with self._lock:
                self.rejected.append(problem)
            return 401, {}, problem.encode()
        event = json.loads(request.body)
        if len(event["data"].encode()) > PUSHER_MAX_DATA_BYTES:
            return 413, {}, b"Payload too large"
        with self._lock:
            self.events.append({"name": event["name"], "channels": event["channels"],
                                "data": json.loads(event["data"])})
        return 200, {}, {}

    def check(self, request: Request) -> str | None:
        """Why Pusher would refuse this request (None: it is properly signed)."""
        if request.method != "POST" or request.path != f"/apps/{self.app_id}/events":
            return f"unexpected {request.method} {request.path}"
        params = dict(request.query)
        signature = params.pop("auth_signature", "")
        if params.get("auth_key") != self.key:
            return "unknown auth_key"
        if params.get("auth_version") != "1.0":
            return "auth_version must be 1.0"
        stamp = params.get("auth_timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > PUSHER_CLOCK_SKEW_SECONDS:
            return "auth_timestamp missing or too far from now"
        if params.get("body_md5") != hashlib.md5(request.body).hexdigest():
            return "body_md5 does not match the body"
        query = "&".join(f"{k.lower()}={v}" for k, v in sorted(params.items(),
                                                               key=lambda kv: kv[0].lower()))
        expected = hmac.new(self.secret.encode(), f"POST\n{request.path}\n{query}".encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            return "Invalid signature"
        return None

    def error_body(self, request: Request, status: int, message: str | None) -> Any:
        return (message or "Internal Server Error").encode()
