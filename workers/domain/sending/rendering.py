"""Email templates: Jinja2, shipped in ``workers/domain/sending/templates/``, one folder per
template.

A template ``NAME`` is the folder ``templates/NAME/`` holding ``subject.txt`` and at least one
of ``body.txt`` (the plain-text part) and ``body.html`` (the HTML part, which may extend
``base.html``). HTML is autoescaped, text is not: a param ``<b>`` shows as ``&lt;b&gt;`` in the
HTML part and as ``<b>`` in the text part. A param the template uses but the event lacks is
an error (StrictUndefined), never a silently blank field in a mail to a customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Mapping

import jinja2

from workers.core.errors import PermanentError

SUBJECT, TEXT, HTML = "subject.txt", "body.txt", "body.html"
# A template name is a folder name: no path separators, no dots, so never outside templates/.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Everything a faulty template or param can raise while rendering: the same input fails the
# same way every time, so retrying cannot help.
RENDER_ERRORS = (jinja2.TemplateError, TypeError, ValueError, LookupError, ArithmeticError)


class UnknownTemplate(PermanentError):
    """No template of that name ships with workers."""


class RenderError(PermanentError):
    """The template exists but cannot be rendered with these params."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str | None
    html: str | None


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("workers.domain.sending", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                            default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, params: Mapping[str, Any] | None = None) -> Rendered:
    """Subject, text and HTML of template ``name`` with ``params``.

    Raises UnknownTemplate or RenderError (both permanent), the reason saying what is wrong.
    """
    if not NAME.match(name):
        raise UnknownTemplate(f"unknown email template {name!r}")
    parts = {part: _render(name, part, dict(params or {})) for part in (SUBJECT, TEXT, HTML)}
    subject = parts[SUBJECT]
    if subject is None or (parts[TEXT] is None and parts[HTML] is None):
        raise UnknownTemplate(f"unknown email template {name!r}")
    return Rendered(subject=one_line(subject), text=parts[TEXT], html=parts[HTML])


def _render(name: str, part: str, params: dict[str, Any]) -> str | None:
    try:
        template = environment().get_template(f"{name}/{part}")
    except jinja2.TemplateNotFound:
        return None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"email template {name}/{part} is broken: {exc}") from None
    try:
        return template.render(params)
    except RENDER_ERRORS as exc:
        raise RenderError(f"email template {name}/{part}: {type(exc).__name__}: {exc}") from None


def one_line(text: str) -> str:
    """A header value: whitespace (newlines included) collapsed to single spaces."""
    return " ".join(text.split())


def names() -> list[str]:
    """The templates that ship, for documentation and tests."""
    return sorted({t.split("/", 1)[0] for t in environment().list_templates()
                   if t.endswith("/" + SUBJECT)})
