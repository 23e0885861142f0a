"""Baseline of functions/caller: starts the attempt a dispatch message names (conditional
UpdateItem RECEIVED -> IN_PROGRESS on the attempt count) and POSTs the job to the external
service; a refusal fails the task."""

import json
import os

import boto3
import urllib3
from common import env_int, log, now_ms, task_from_item, task_key

dynamodb = boto3.client("dynamodb")
TABLE = os.environ["TASKS_TABLE"]
SERVICE_URL = os.environ["EXTERNAL_SERVICE_URL"]
CALLBACK_BASE = os.environ["CALLBACK_BASE_URL"].rstrip("/")
TIMEOUT = env_int("EXTERNAL_TIMEOUT_MS", 10_000) / 1000
RESULT_RETENTION_SECONDS = env_int("RESULT_RETENTION_SECONDS", 604_800)
# A pooled keep-alive client, like the Rust caller's reqwest client.
http = urllib3.PoolManager(timeout=TIMEOUT, retries=False)


def start(task_id, attempt):
    try:
        answer = dynamodb.update_item(
            TableName=TABLE,
            Key=task_key(task_id),
            UpdateExpression="SET #status = :to, #updated_at = :at, #attempts = :attempts",
            ConditionExpression="#status = :from AND #attempts = :expected",
            ExpressionAttributeNames={"#status": "status", "#updated_at": "updated_at", "#attempts": "attempts"},
            ExpressionAttributeValues={
                ":to": {"S": "IN_PROGRESS"},
                ":from": {"S": "RECEIVED"},
                ":at": {"N": str(now_ms())},
                ":attempts": {"N": str(attempt)},
                ":expected": {"N": str(attempt - 1)},
            },
            ReturnValues="ALL_NEW",
        )
        return task_from_item(answer["Attributes"])
    except dynamodb.exceptions.ConditionalCheckFailedException:
        return None  # a repeated message, or the task moved on


def fail(task_id, attempt, reason):
    now = now_ms()
    try:
        dynamodb.update_item(
            TableName=TABLE,
            Key=task_key(task_id),
            UpdateExpression="SET #status = :to, #updated_at = :at, #error = :error, #expires_at = :expires_at",
            ConditionExpression="#status = :from AND #attempts = :attempt",
            ExpressionAttributeNames={
                "#status": "status",
                "#updated_at": "updated_at",
                "#error": "error",
                "#expires_at": "expires_at",
                "#attempts": "attempts",
            },
            ExpressionAttributeValues={
                ":to": {"S": "FAILED"},
                ":from": {"S": "IN_PROGRESS"},
                ":at": {"N": str(now)},
                ":error": {"S": reason},
                ":expires_at": {"N": str(now // 1000 + RESULT_RETENTION_SECONDS)},
                ":attempt": {"N": str(attempt)},
            },
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        pass


def handler(event, context):
    for record in event.get("Records", []):
        try:
            message = json.loads(record["Sns"]["Message"])
            task_id, attempt = message["task_id"], int(message["attempt"])
        except (KeyError, ValueError, TypeError):
            log.error("unreadable dispatch message dropped")
            continue
        task = start(task_id, attempt)
        if task is None:
            log.info("attempt already started; duplicate ignored task_id=%s", task_id)
            continue
        payload = task["payload"]
        if payload is None:
            stored = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": f"PAYLOAD#{task_id}"}}, ConsistentRead=True)
            payload = json.loads(stored.get("Item", {}).get("payload", {}).get("S", "null"))
        job = {
            "task_id": task_id,
            "payload": payload,
            "callback_url": f"{CALLBACK_BASE}/callbacks/{task_id}",
            "attempt": attempt,
        }
        try:
            response = http.request(
                "POST", SERVICE_URL, body=json.dumps(job).encode(), headers={"content-type": "application/json"}
            )
            refused = None if 200 <= response.status < 300 else f"status {response.status}"
        except urllib3.exceptions.HTTPError as error:
            refused = str(error)
        if refused is None:
            log.info("job handed to the external service task_id=%s attempt=%s", task_id, attempt)
        else:
            fail(task_id, attempt, f"external service refused attempt {attempt}: {refused}")
            log.warning("external service refused; task failed task_id=%s", task_id)
    return None
