"""How one environment variable is read, by kind: the parts ``Settings.from_env``'s table
(workers/settings.py) is made of. An unset or empty variable takes its default; a value we
cannot use is a SettingsError of one line, naming the variable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# What the lenient flags read as false: anything else, even a typo, keeps them on, since they
# guard TLS (PUSHER_SSL, WORKERS_SMTP_STARTTLS) and a typo must not turn it off.
_OFF = ("0", "false", "no")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """An environment variable holds a value we cannot use."""


class Kind(Protocol):
    def read(self, name: str, raw: str | None, default: Any) -> Any:
        """The value of variable ``name`` given as ``raw`` (None when unset)."""


@dataclass(frozen=True)
class Text:
    def read(self, name: str, raw: str | None, default: Any) -> Any:
        return raw or default


@dataclass(frozen=True)
class Int:
    low: int
    high: int

    def read(self, name: str, raw: str | None, default: Any) -> Any:
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
        if not self.low <= value <= self.high:
            raise SettingsError(f"{name} must be between {self.low} and {self.high}, not {value}")
        return value


@dataclass(frozen=True)
class OptionalInt(Int):
    """A whole number where 0, like unset, means none (a port left to the library)."""

    def read(self, name: str, raw: str | None, default: Any) -> Any:
        return super().read(name, raw, 0) or default


@dataclass(frozen=True)
class Flag:
    """true/false, yes/no, on/off, 1/0; anything else is refused."""

    def read(self, name: str, raw: str | None, default: Any) -> Any:
        value = (raw or "").strip().lower()
        if not value:
            return default
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise SettingsError(f"{name} must be true or false, not {value!r}")


@dataclass(frozen=True)
class LenientFlag:
    """On unless 0, false or no: what PUSHER_SSL and WORKERS_SMTP_STARTTLS always accepted."""

    def read(self, name: str, raw: str | None, default: Any) -> Any:
        return default if raw is None else raw.lower() not in _OFF


@dataclass(frozen=True)
class Choice:
    choices: tuple[str, ...]

    def read(self, name: str, raw: str | None, default: Any) -> Any:
        value = (raw or default).lower()
        if value not in self.choices:
            raise SettingsError(f"{name} must be one of {', '.join(self.choices)}, not {value!r}")
        return value


@dataclass(frozen=True)
class Variable:
    """One environment variable: the Settings field it sets and how it reads. Its default is
    that field's (a named constant in workers/settings.py, with why)."""
    name: str
    field: str
    kind: Kind
    why: str


__all__ = ["Choice", "Flag", "Int", "Kind", "LenientFlag", "OptionalInt", "SettingsError",
           "Text", "Variable"]
