"""Creates every queue, its dead-letter queue and redrive policy, and the archive bucket."""

from __future__ import annotations

import json
from typing import Any

from workers import QUEUES
from workers.adapters.sqs import ensure_queue, queue_arn
from workers.core.settings import DLQ_RETENTION_SECONDS, LONG_POLL_SECONDS, Settings


def create_queues(settings: Settings, sqs: Any, s3: Any = None) -> list[str]:
    """Idempotent: creates what is missing and brings attributes to the configured values."""
    urls = []
    for queue in QUEUES:
        dlq_url = ensure_queue(sqs, settings.dlq_name(queue),
                               {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})
        dlq_arn = queue_arn(sqs, dlq_url)
        urls.append(ensure_queue(sqs, settings.queue_name(queue), {
            "VisibilityTimeout": str(settings.visibility_timeout),
            "ReceiveMessageWaitTimeSeconds": str(LONG_POLL_SECONDS),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": str(settings.max_receives)}),
        }))
        urls.append(dlq_url)
    if settings.archive_bucket and s3 is not None:
        _ensure_bucket(s3, settings.archive_bucket, settings.region)
    return urls


def _ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except s3.exceptions.ClientError:
        pass
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # S3 refuses us-east-1 as an explicit location constraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
