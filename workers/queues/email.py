"""email: one message through Amazon SES (or SMTP), from its own content or a shipped template.

``{"to", "subject", "text"?, "html"?}`` is sent as given; ``{"to", "template", "params"}`` is
rendered from ``workers/domain/sending/templates/`` (workers.domain.sending.rendering), a
``subject`` given beside it winning over the template's. Logs carry the recipient's domain,
not the address.
"""

from __future__ import annotations

from typing import Any

from workers.adapters.mail import build_message
from workers.core.errors import TransientError
from workers.core.events import Email
from workers.domain.sending import rendering
from workers.domain.sending.sent import mark_key
from workers.queues import queue
from workers.runtime.deps import Deps


# Waits on SES or an SMTP relay: one process of 20 handlers to start with.
@queue("email", schema=Email, procs=1, port_block=3)
def send_email(event: Email, deps: Deps) -> dict[str, Any]:
    sender = deps.settings.email_from
    if not sender:  # the operator's to fix; the message waits for it, then the DLQ
        raise TransientError("WORKERS_EMAIL_FROM is not set")
    content = compose(event)
    message = build_message(sender, event.to, content.subject, content.text, content.html)
    key = mark_key(deps.settings.queue_name("email"), event)
    sent_id = deps.sent_marks.once(key, lambda: deps.mailer.send(message))
    fields = {"backend": deps.settings.email_backend, "template": event.template,
              "to_domain": event.to.rpartition("@")[2]}
    if sent_id is None:  # a redelivery or a replay of an email sent before
        return {**fields, "already_sent": True}
    return {**fields, "email_id": sent_id}


def compose(event: Email) -> rendering.Rendered:
    if event.template is None:
        return rendering.Rendered(rendering.one_line(event.subject or ""), event.text, event.html)
    rendered = rendering.render(event.template, event.params)
    if event.subject is not None:
        return rendering.Rendered(rendering.one_line(event.subject), rendered.text, rendered.html)
    return rendered
