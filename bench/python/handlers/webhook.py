"""Baseline of functions/webhook: `POST /callbacks/{task_id}` -> IN_PROGRESS -> DONE | FAILED, one
conditional UpdateItem; a repeat answers 200, a contradiction 409, an unknown task 404."""

import os

import boto3
from common import MAX_ERROR_BYTES, MAX_RESULT_BYTES, ApiError, answer, compact, ensure_size, env_int, json_body, log
from common import now_ms, task_from_item, task_id_of, task_key

dynamodb = boto3.client("dynamodb")
TABLE = os.environ["TASKS_TABLE"]
RESULT_RETENTION_SECONDS = env_int("RESULT_RETENTION_SECONDS", 604_800)


def parse_callback(body):
    if isinstance(body, dict) and body.get("status") == "succeeded" and set(body) == {"status", "result"}:
        ensure_size("result", body["result"], MAX_RESULT_BYTES)
        return "DONE", "result", compact(body["result"])
    if isinstance(body, dict) and body.get("status") == "failed" and set(body) == {"status", "error"}:
        error = body["error"]
        if not isinstance(error, str) or not error.strip():
            raise ApiError(400, "invalid_request", "`error` must be a non-empty string")
        if len(error.encode()) > MAX_ERROR_BYTES:
            raise ApiError(413, "too_large", f"error is larger than {MAX_ERROR_BYTES} bytes")
        return "FAILED", "error", error
    raise ApiError(400, "invalid_request", "expected {status: succeeded, result} or {status: failed, error}")


def handler(event, context):
    try:
        task_id = task_id_of(event)
        status, field, value = parse_callback(json_body(event))
        now = now_ms()
        try:
            dynamodb.update_item(
                TableName=TABLE,
                Key=task_key(task_id),
                UpdateExpression="SET #status = :to, #updated_at = :at, #value = :value, #expires_at = :expires_at",
                ConditionExpression="#status = :from",
                ExpressionAttributeNames={
                    "#status": "status",
                    "#updated_at": "updated_at",
                    "#value": field,
                    "#expires_at": "expires_at",
                },
                ExpressionAttributeValues={
                    ":to": {"S": status},
                    ":from": {"S": "IN_PROGRESS"},
                    ":at": {"N": str(now)},
                    ":value": {"S": value},
                    ":expires_at": {"N": str(now // 1000 + RESULT_RETENTION_SECONDS)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            log.info("task finished task_id=%s status=%s", task_id, status)
            return answer(200, {"task_id": task_id, "status": status})
        except dynamodb.exceptions.ConditionalCheckFailedException as failed:
            item = failed.response.get("Item")
            if item is None:  # some emulators return no item: read to tell missing from moved on
                item = dynamodb.get_item(TableName=TABLE, Key=task_key(task_id), ConsistentRead=True).get("Item")
            current = task_from_item(item) if item else None
            if current is None or current["expires_at"] * 1000 <= now:
                raise ApiError(404, "not_found", "no such task") from None
            stored = compact(current.get(field)) if field == "result" and field in current else current.get(field)
            if current["status"] == status and stored == value:
                log.info("repeated callback ignored task_id=%s", task_id)
                return answer(200, {"task_id": task_id, "status": status})
            raise ApiError(409, "conflict", f"the task is {current['status']} and cannot take this outcome") from None
    except ApiError as error:
        return error.response()
