"""Who may use the console: the users file (``WORKERS_CONSOLE_USERS``), its password hashes
and API tokens, and the two roles.

One line per entry, ``KIND NAME ROLE HASH``: ``user`` lines hold an argon2id hash of the
password (slow and salted: a stolen file does not give the passwords back), ``token`` lines a
SHA-256 of the token (a token is 256 random bits, which no dictionary holds, so a fast hash
is as safe and keeps every API call cheap). The file is rewritten whole, 0600, through a
rename, and read again whenever it changes: a user removed or demoted loses access at their
next request, sessions included.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

VIEWER, OPERATOR = "viewer", "operator"
ROLES = (VIEWER, OPERATOR)
USER, TOKEN = "user", "token"
NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
# Shown once, then only its hash is kept; the prefix makes a leaked one easy to grep for.
TOKEN_PREFIX = "wkc_"
_HASHER = PasswordHasher()
# Verified against when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY = _HASHER.hash(secrets.token_hex(16))


class AccessError(Exception):
    """The users file cannot be used, or an entry is refused (one line)."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user or a token's name, with its role."""

    user: str
    role: str
    via: str  # "session" or "token"

    @property
    def operator(self) -> bool:
        return self.role == OPERATOR


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    role: str
    hash: str

    def line(self) -> str:
        return f"{self.kind} {self.name} {self.role} {self.hash}"


class Users:
    """The users file, read again when its modification time or size changes."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None
        self._entries: list[Entry] = []

    def check_readable(self) -> None:
        """AccessError unless the file can be read and parsed."""
        self.entries()

    def entries(self) -> list[Entry]:
        try:
            stat = self.path.stat()
            if self._seen != (stat.st_mtime_ns, stat.st_size):
                self._entries = parse(self.path.read_text())
                self._seen = (stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            raise AccessError(f"WORKERS_CONSOLE_USERS: cannot read {self.path}: "
                              f"{exc.strerror or exc}") from None
        return self._entries

    def role_of(self, user: str) -> str | None:
        return next((e.role for e in self.entries() if e.kind == USER and e.name == user), None)

    def authenticate(self, user: str, password: str) -> Principal | None:
        entry = next((e for e in self.entries() if e.kind == USER and e.name == user), None)
        try:
            _HASHER.verify(entry.hash if entry else _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        return Principal(entry.name, entry.role, "session") if entry else None

    def token(self, token: str) -> Principal | None:
        digest = token_hash(token)
        for e in self.entries():
            if e.kind == TOKEN and hmac.compare_digest(e.hash, digest):
                return Principal(e.name, e.role, "token")
        return None


def parse(text: str) -> list[Entry]:
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 4 or parts[0] not in (USER, TOKEN) or parts[2] not in ROLES:
            raise AccessError(f"WORKERS_CONSOLE_USERS: line {n} is not KIND NAME ROLE HASH")
        entries.append(Entry(*parts))
    return entries


def add_user(path: str | os.PathLike[str], name: str, role: str, password: str,
             hasher: PasswordHasher = _HASHER) -> None:
    """Adds the user, or replaces its password and role. The hash carries its own argon2
    parameters (argon2-cffi's defaults: RFC 9106's low-memory choice)."""
    if not password:
        raise AccessError("the password is empty")
    _replace(Path(path), Entry(USER, _checked(name), _role(role), hasher.hash(password)))


def add_token(path: str | os.PathLike[str], name: str, role: str) -> str:
    """A new token for ``name``, kept only hashed (beside the others of that name)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    entry = Entry(TOKEN, _checked(name), _role(role), token_hash(token))
    path = Path(path)
    _write(path, [*_existing(path), entry])
    return token


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _replace(path: Path, entry: Entry) -> None:
    kept = [e for e in _existing(path) if not (e.kind == USER and e.name == entry.name)]
    _write(path, [*kept, entry])


def _existing(path: Path) -> list[Entry]:
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return []


def _write(path: Path, entries: list[Entry]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=".users-")
    try:
        with os.fdopen(fd, "w") as out:  # mkstemp made it 0600
            out.write("".join(e.line() + "\n" for e in entries))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _checked(name: str) -> str:
    if not NAME.fullmatch(name):
        raise AccessError("a name is 1 to 64 of A-Z a-z 0-9 _ . @ -")
    return name


def _role(role: str) -> str:
    if role not in ROLES:
        raise AccessError(f"the role is one of {', '.join(ROLES)}")
    return role
