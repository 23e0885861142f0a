"""Baseline of functions/ingest: `POST /tasks` -> a RECEIVED task (conditional PutItem) -> 202."""

import os
import uuid

import boto3
from common import ApiError, answer, api_keys, client_of, compact, ensure_size, env_int, json_body, log, now_ms
from common import MAX_PAYLOAD_BYTES, TASK_PREFIX, rfc3339

# Built once per cold start, as Lambda code does.
dynamodb = boto3.client("dynamodb")
TABLE = os.environ["TASKS_TABLE"]
KEYS = api_keys(os.environ["TASKFLEET_API_KEYS"])
TASK_TTL_SECONDS = env_int("TASK_TTL_SECONDS", 86_400)


def parse_submission(body):
    if not isinstance(body, dict) or set(body) != {"payload"}:
        raise ApiError(400, "invalid_request", "the body must be exactly {\"payload\": {...}}")
    if not isinstance(body["payload"], dict):
        raise ApiError(400, "invalid_request", "`payload` must be a JSON object")
    ensure_size("payload", body["payload"], MAX_PAYLOAD_BYTES)
    return body["payload"]


def handler(event, context):
    try:
        client = client_of(event, KEYS)
        payload = parse_submission(json_body(event))
        task_id, now = str(uuid.uuid4()), now_ms()
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": TASK_PREFIX + task_id},
                "task_id": {"S": task_id},
                "client_id": {"S": client},
                "status": {"S": "RECEIVED"},
                "payload": {"S": compact(payload)},
                "attempts": {"N": "0"},
                "created_at": {"N": str(now)},
                "updated_at": {"N": str(now)},
                "expires_at": {"N": str(now // 1000 + TASK_TTL_SECONDS)},
            },
            ConditionExpression="attribute_not_exists(#pk)",
            ExpressionAttributeNames={"#pk": "pk"},
        )
        log.info("task received task_id=%s client_id=%s", task_id, client)
        body = {"task_id": task_id, "status": "RECEIVED", "created_at": rfc3339(now)}
        return answer(202, body, {"location": f"/tasks/{task_id}"})
    except ApiError as error:
        return error.response()
