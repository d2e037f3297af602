"""What moto's server recorded, read back over HTTP from its own API (``/moto-api/data.json``):
the messages SNS published to a platform endpoint, the emails SES sent."""

from __future__ import annotations

import email
import json
from email import policy
from email.message import EmailMessage
from typing import Any

import requests


def instances(endpoint_url: str, service: str, model: str) -> list[dict[str, Any]]:
    """Every instance of one of moto's models, as the JSON-able attributes moto shows."""
    response = requests.get(f"{endpoint_url}/moto-api/data.json", timeout=10)
    response.raise_for_status()
    return response.json().get(service, {}).get(model, [])


def published(endpoint_url: str, endpoint_arn: str) -> list[dict[str, Any]]:
    """The messages published to one SNS platform endpoint, each decoded: the platform keys of
    a ``MessageStructure="json"`` message, each payload itself decoded where it is JSON."""
    for endpoint in instances(endpoint_url, "sns", "PlatformEndpoint"):
        if endpoint["arn"] == endpoint_arn:
            return [_decoded(m) for m in endpoint["messages"].values()]
    return []


def sent_emails(endpoint_url: str, to: str) -> list[EmailMessage]:
    """The raw emails SES sent to ``to``, parsed."""
    return [email.message_from_string(m["raw_data"], policy=policy.default)
            for m in instances(endpoint_url, "ses", "RawMessage")
            if to in m.get("destinations", [])]


def _decoded(message: str) -> dict[str, Any]:
    structure = json.loads(message)
    return {key: _json_or_text(value) for key, value in structure.items()}


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
