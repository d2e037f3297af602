"""push: one mobile notification through Amazon SNS, to a platform endpoint (one device).

Only platform-endpoint ARNs are accepted: a topic ARN would broadcast to every subscriber of
the topic, so it goes to the DLQ unless WORKERS_PUSH_ALLOW_TOPICS=true.

The message carries a payload for every platform (``MessageStructure="json"``): SNS delivers
the key of the endpoint's platform, and ``default`` to any other. A topic needs them all.

Logs never carry the target ARN: an endpoint ARN stands for one device (SNS maps it 1:1 to the
device token), stays the same for the app's lifetime on it, and is enough, with the account's
credentials, to push to that phone. Log lines are read and kept widely; a short digest of the
ARN still lets an operator follow one device through them. The full ARN stays in the message,
and so in the DLQ, where a replay needs it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from workers.adapters import aws
from workers.adapters.aws import AWS_ERRORS, classify
from workers.adapters.redisconn import Client
from workers.core.errors import PermanentError
from workers.core.events import Push
from workers.core.settings import Settings
from workers.domain.sending.sent import SentMarks, mark_key
from workers.runtime.consumer import Handlers

# SNS's error codes that say this message can never be delivered: the endpoint is disabled
# (the platform reported the token invalid, e.g. the app was uninstalled), it does not exist,
# or SNS refused the request itself (a malformed ARN, a payload over the platform's limit).
PERMANENT_CODES = frozenset({"EndpointDisabled", "NotFound", "InvalidParameter",
                             "InvalidParameterValue", "ValidationException"})
# arn:PARTITION:sns:REGION:ACCOUNT: then endpoint/PLATFORM/APP/ID for one device, or a topic's
# name (letters, digits, - and _, with .fifo for a FIFO topic).
_ARN_PREFIX = r"arn:aws(?:-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:"
ENDPOINT_ARN = re.compile(_ARN_PREFIX + r"endpoint/[A-Z_]+/[^/\s]+/[^/\s]+")
TOPIC_ARN = re.compile(_ARN_PREFIX + r"[A-Za-z0-9_-]{1,256}(?:\.fifo)?")
# APNS_SANDBOX is the development environment of the same payload format.
APNS_PLATFORMS = ("APNS", "APNS_SANDBOX")
# SNS still names Firebase Cloud Messaging "GCM" in payload keys and endpoint ARNs.
FCM_PLATFORM = "GCM"


class SendPush:
    def __init__(self, sns: Any, sent_marks: SentMarks, *, allow_topics: bool, queue_name: str):
        self.sns = sns
        self.sent_marks = sent_marks
        self.allow_topics = allow_topics
        self.queue_name = queue_name  # the SQS name: a mark's key reads it

    def handle(self, event: Push) -> dict[str, Any]:
        check_target(event.target_arn, self.allow_topics)
        target = describe_target(event.target_arn)
        key = mark_key(self.queue_name, event)
        response = self.sent_marks.once(key, lambda: self.publish(event))
        if response is None:  # a redelivery or a replay of a push sent before
            return {"user_id": event.user_id, **target, "already_sent": True}
        return {"user_id": event.user_id, **target, "sns_message_id": response.get("MessageId")}

    def publish(self, event: Push) -> dict[str, Any]:
        try:
            return self.sns.publish(TargetArn=event.target_arn, MessageStructure="json",
                                    Message=sns_message(event))
        except AWS_ERRORS as exc:
            raise classify("sns", exc, PERMANENT_CODES, redact=event.target_arn) from None


def build(settings: Settings, redis: Client) -> Handlers:
    # SNS without botocore's retries: a retry after a timeout SNS had already accepted would
    # push twice; a failed send is transient for us instead, retried through SQS with the
    # sent mark checked first.
    send = SendPush(aws.client(settings, "sns", attempts=1), SentMarks(redis),
                    allow_topics=settings.push_allow_topics,
                    queue_name=settings.queue_name("push"))
    return Handlers(send.handle)


def check_target(arn: str, allow_topics: bool) -> None:
    """PermanentError unless ``arn`` is an SNS platform endpoint (or a topic, if allowed). The
    reason never repeats the ARN: an endpoint's stands for a device."""
    if ENDPOINT_ARN.fullmatch(arn):
        return
    if TOPIC_ARN.fullmatch(arn):
        if allow_topics:
            return
        raise PermanentError("target_arn is an SNS topic, which would reach every subscriber: "
                             "push sends to platform endpoints only "
                             "(WORKERS_PUSH_ALLOW_TOPICS=true allows topics)")
    raise PermanentError("target_arn is not an SNS platform endpoint ARN "
                         "(arn:aws:sns:REGION:ACCOUNT:endpoint/PLATFORM/APP/ID)")


def sns_message(event: Push) -> str:
    """The ``Message`` of a publish with ``MessageStructure="json"``: each platform's payload
    as a JSON string under the platform's key."""
    payloads = {"default": default_text(event), FCM_PLATFORM: fcm_payload(event)}
    payloads.update(dict.fromkeys(APNS_PLATFORMS, apns_payload(event)))
    return json.dumps({key: value if key == "default" else json.dumps(value, ensure_ascii=False)
                       for key, value in payloads.items()}, ensure_ascii=False)


def apns_payload(event: Push) -> dict[str, Any]:
    """Apple's format: the alert under ``aps``, custom data as top-level keys beside it
    (a ``data`` key named ``aps`` cannot replace ours)."""
    return {**(event.data or {}), "aps": {"alert": alert(event), "sound": "default"}}


def fcm_payload(event: Push) -> dict[str, Any]:
    """The FCM HTTP v1 format SNS takes under ``fcmV1Message``; FCM's ``data`` is a map of
    strings, so other values go as JSON text."""
    message: dict[str, Any] = {"notification": alert(event)}
    if event.data:
        message["data"] = {str(k): v if isinstance(v, str) else json.dumps(v)
                           for k, v in event.data.items()}
    return {"fcmV1Message": {"message": message}}


def alert(event: Push) -> dict[str, str]:
    # An empty title would show as a blank line on some devices: leave it out instead.
    return {"title": event.title, "body": event.body} if event.title else {"body": event.body}


def default_text(event: Push) -> str:
    return f"{event.title}: {event.body}" if event.title else event.body


def describe_target(arn: str) -> dict[str, str]:
    """Loggable fields of a target ARN: its kind, platform and app, and a digest, not the ARN."""
    resource = arn.split(":", 5)[-1]
    parts = resource.split("/")
    fields = {"target": hashlib.blake2b(arn.encode(), digest_size=6).hexdigest()}
    if parts[0] == "endpoint" and len(parts) >= 3:
        fields.update(target_kind="endpoint", platform=parts[1], app=parts[2])
    else:
        fields["target_kind"] = "topic"
    return fields
