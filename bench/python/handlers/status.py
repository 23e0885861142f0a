"""Baseline of functions/status: `GET /tasks/{task_id}` -> consistent GetItem -> the view or 404."""

import os

import boto3
from common import ApiError, answer, api_keys, client_of, log, now_ms, task_from_item, task_id_of, task_key, view

dynamodb = boto3.client("dynamodb")
TABLE = os.environ["TASKS_TABLE"]
KEYS = api_keys(os.environ["TASKFLEET_API_KEYS"])


def handler(event, context):
    try:
        client = client_of(event, KEYS)
        task_id = task_id_of(event)
        item = dynamodb.get_item(TableName=TABLE, Key=task_key(task_id), ConsistentRead=True).get("Item")
        task = task_from_item(item) if item else None
        # Another client's task and an expired task look exactly like a missing one.
        if task is None or task["client_id"] != client or task["expires_at"] * 1000 <= now_ms():
            raise ApiError(404, "not_found", "no such task")
        log.info("task shown task_id=%s", task_id)
        return answer(200, view(task))
    except ApiError as error:
        return error.response()
