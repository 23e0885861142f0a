"""Baseline of functions/dispatcher: stream records that put a task into RECEIVED become dispatch
messages (PublishBatch, ten per call); the answer lists batch item failures."""

import json
import os

import boto3
from common import TASK_PREFIX, log

sns = boto3.client("sns")
TOPIC_ARN = os.environ["DISPATCH_TOPIC_ARN"]


def snapshot(image):
    if not image or not image.get("pk", {}).get("S", "").startswith(TASK_PREFIX):
        return None
    return image["pk"]["S"][len(TASK_PREFIX):], image["status"]["S"], int(image["attempts"]["N"])


def handler(event, context):
    failures, messages = [], []
    for record in event.get("Records", []):
        change = record.get("dynamodb", {})
        sequence = change.get("SequenceNumber") or record.get("eventID")
        if record.get("eventName") == "REMOVE":
            continue
        try:
            new, old = snapshot(change.get("NewImage")), snapshot(change.get("OldImage"))
        except (KeyError, ValueError):
            log.error("unreadable stream record event_id=%s", record.get("eventID"))
            failures.append(sequence)
            continue
        # Only a change that puts a task into RECEIVED dispatches (a no-op write does not).
        if new is not None and new[1] == "RECEIVED" and old != new:
            messages.append((sequence, {"task_id": new[0], "attempt": new[2] + 1}))
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        entries = [{"Id": str(i), "Message": json.dumps(m, separators=(",", ":"))} for i, (_, m) in enumerate(chunk)]
        try:
            answer = sns.publish_batch(TopicArn=TOPIC_ARN, PublishBatchRequestEntries=entries)
            published = {int(ok["Id"]) for ok in answer.get("Successful", [])}
        except Exception as error:  # the whole chunk is retried by Lambda
            log.warning("dispatch not published: %s", error)
            published = set()
        for index, (sequence, message) in enumerate(chunk):
            if index in published:
                log.info("task dispatched task_id=%s attempt=%s", message["task_id"], message["attempt"])
            else:
                failures.append(sequence)
    return {"batchItemFailures": [{"itemIdentifier": s} for s in failures]}
