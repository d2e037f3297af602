"""Access tokens by profile: looked up where the API keeps them, never taken from a message."""

from __future__ import annotations

import re
from typing import Protocol

from workers.adapters.redisconn import Client
from workers.core.errors import PermanentError

# What a bearer token is made of (RFC 6750's b64token, and the networks' tokens): visible
# ASCII. A stored token with a space, a control character or a trailing newline would make
# the request fail in the HTTP library, with the token shown in its error.
_TOKEN = re.compile(r"[\x21-\x7e]+")


class CredentialStore(Protocol):
    def token(self, profile_id: str, service: str) -> str:
        """The profile's access token for ``service``; PermanentError when it has none."""


class RedisCredentials:
    """Hash ``creds:{profile_id}``, one field per service, written by the API when a profile
    connects a network."""

    def __init__(self, client: Client, prefix: str = "creds:"):
        self.client = client
        self.prefix = prefix

    def token(self, profile_id: str, service: str) -> str:
        value = self.client.hget(self.prefix + profile_id, service)  # Redis away: the consumer's
        if isinstance(value, bytes):
            value = value.decode()
        if not value:
            raise PermanentError(f"no {service} access token for profile {profile_id}")
        if not _TOKEN.fullmatch(value):  # said without the token: it goes to logs and the DLQ
            raise PermanentError(f"the {service} access token stored for profile {profile_id} "
                                 "is malformed: not all visible ASCII (whitespace or a control "
                                 "character in it?)")
        return value
