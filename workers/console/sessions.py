"""Signed-in sessions and login throttling, in Redis (so they survive a console's restart and
are shared by every console process).

A session is a random id in an HttpOnly, SameSite=Strict cookie; Redis keeps only its SHA-256
(someone reading Redis gets no usable cookie) with the user and the session's CSRF token. The
user's role is read from the users file at each request, never from the session.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from workers.adapters.redisconn import Client

COOKIE = "workers_console"
# A working day; signing in again after it is cheap, a stolen cookie's life short.
SESSION_SECONDS = 12 * 60 * 60
# SPEC: more than 5 failures for one name within a minute answer 429 until the minute passed.
MAX_FAILURES = 5
FAILURE_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str


class Sessions:
    def __init__(self, client: Client, prefix: str = "console:"):
        self.client = client
        self.prefix = prefix

    def create(self, user: str) -> tuple[str, Session]:
        """A new session's cookie value, and the session."""
        sid, session = secrets.token_urlsafe(32), Session(user, secrets.token_urlsafe(32))
        key = self._key(sid)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, mapping={"user": session.user, "csrf": session.csrf})
        pipe.expire(key, SESSION_SECONDS)
        pipe.execute()
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        fields = self.client.hgetall(self._key(sid))
        if not fields:
            return None
        text = {_s(k): _s(v) for k, v in fields.items()}
        return Session(text["user"], text["csrf"])

    def end(self, sid: str | None) -> None:
        if sid:
            self.client.delete(self._key(sid))

    def throttled(self, user: str) -> bool:
        """Whether ``user`` failed more than MAX_FAILURES times within the window."""
        count = self.client.get(self._failures(user))
        return count is not None and int(count) > MAX_FAILURES

    def failed(self, user: str) -> bool:
        """Counts a failure (the window starts at the first); True once it is one too many."""
        key = self._failures(user)
        count = self.client.incr(key)
        if count == 1:
            self.client.expire(key, FAILURE_WINDOW_SECONDS)
        return int(count) > MAX_FAILURES

    def _key(self, sid: str) -> str:
        return f"{self.prefix}session:{hashlib.sha256(sid.encode()).hexdigest()}"

    def _failures(self, user: str) -> str:
        return f"{self.prefix}login-failures:{user}"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
