"""Baseline of functions/metrics: counts per status on the keys-only `by_status` index (active
tasks, recent finishes), the backlog's age, one PutMetricData."""

import datetime
import os

import boto3
from common import STATUS_INDEX, env_int, log, now_ms

dynamodb = boto3.client("dynamodb")
cloudwatch = boto3.client("cloudwatch")
TABLE = os.environ["TASKS_TABLE"]
NAMESPACE = os.environ.get("METRICS_NAMESPACE") or "TaskFleet"
WINDOW_SECONDS = env_int("METRICS_WINDOW_SECONDS", 60)
# The index's sort key: `updated_at` in the layout this baseline was written against; the harness
# names the one of the table it runs on (the Rust fleet's layout keeps evolving).
RANGE_KEY = os.environ.get("STATUS_INDEX_RANGE_KEY") or "updated_at"
# Its partition key: `status` then; the Rust fleet's index is sharded now (`status_key` =
# `{STATUS}#{shard}`, 64 shards, active tasks only), and this baseline reads it the same way.
HASH_KEY = os.environ.get("STATUS_INDEX_HASH_KEY") or "status"
SHARDS = 64 if HASH_KEY == "status_key" else 1


def keys_of(status):
    return [f"{status}#{shard}" for shard in range(SHARDS)] if HASH_KEY == "status_key" else [status]


def count(status, since=None):
    return sum(count_key(key, since) for key in keys_of(status))


def count_key(key, since=None):
    condition, values = "#status = :status", {":status": {"S": key}}
    names = {"#status": HASH_KEY}
    if since is not None:
        condition += " AND #range >= :since"
        values[":since"] = {"N": str(since)}
        names["#range"] = RANGE_KEY
    total, start = 0, None
    while True:
        page = dynamodb.query(
            TableName=TABLE,
            IndexName=STATUS_INDEX,
            KeyConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            Select="COUNT",
            **({"ExclusiveStartKey": start} if start else {}),
        )
        total += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return total


def oldest_received():
    oldest = None
    for key in keys_of("RECEIVED"):
        page = dynamodb.query(
            TableName=TABLE,
            IndexName=STATUS_INDEX,
            KeyConditionExpression="#status = :status",
            ExpressionAttributeNames={"#status": HASH_KEY},
            ExpressionAttributeValues={":status": {"S": key}},
            ScanIndexForward=True,
            Limit=1,
        )
        items = page.get("Items", [])
        if items:
            due = int(items[0][RANGE_KEY]["N"])
            oldest = due if oldest is None else min(oldest, due)
    return oldest


def handler(event, context):
    now = now_ms()
    since = now - WINDOW_SECONDS * 1000
    gauges = [("TasksActive", s, count(s), "Count") for s in ("RECEIVED", "IN_PROGRESS")]
    if HASH_KEY == "status":  # finished tasks are no longer in the sharded index
        gauges += [("TasksFinished", s, count(s, since), "Count") for s in ("DONE", "FAILED")]
    oldest = oldest_received()
    gauges.append(("OldestReceivedAgeSeconds", None, (now - oldest) / 1000 if oldest else 0.0, "Seconds"))
    stamp = datetime.datetime.now(tz=datetime.timezone.utc)
    data = []
    for name, status, value, unit in gauges:
        datum = {"MetricName": name, "Value": float(value), "Unit": unit, "Timestamp": stamp}
        if status:
            datum["Dimensions"] = [{"Name": "Status", "Value": status}]
        data.append(datum)
    cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data)
    for name, status, value, _ in gauges:
        log.info("gauge pushed metric=%s status=%s value=%s", name, status, value)
    return None
