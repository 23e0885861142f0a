"""Step 8: partition heat and write units per task, from the table's own definition and stream.

For each payload size (1 KiB, 32 KiB of random base64: JSON `{"data": "..."}` serialized to
exactly that many bytes) the whole local fleet runs N tasks from one client, the external-service
stub answering each with a random result of the same size. Once every task is DONE and the fleet
is quiet, the step reads DescribeTable and every stream record the tasks caused (DynamoDB
Streams API against the emulator: DescribeStream, GetShardIterator TRIM_HORIZON, GetRecords) and
replays them with heat.py's rules. The counting proxy in front of the emulator adds what the
stream cannot show: S3 requests and conditional writes that were refused.
"""

import base64
import concurrent.futures
import json
import os
import threading
import time

import boto3

import emulator
import functions
import heat
import prices
from fleet import PLUMBING, LocalFleet, StepFailed, wait_quiet
from http_io import Client
from proxy import CountingProxy, delta
from stub import ExternalService

SIZES = (("1 KiB", 1024), ("32 KiB", 32 * 1024))
# S3 request classes (prices.py): PUT, COPY, POST and LIST at the PUT price; GET and the rest at the
# GET price; DELETE free; bucket management is set-up (CloudFormation's, not a task's).
S3_PUT_CLASS = {"PutObject", "CopyObject", "PostObject", "ListObjects", "CreateMultipartUpload", "UploadPart",
                "CompleteMultipartUpload"}
S3_FREE = {"DeleteObject", "DeleteObjects"}
S3_SETUP = {"CreateBucket", "PutBucketConfiguration", "HeadBucket", "DeleteBucket"}
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
COMPACT = (",", ":")


def random_document(size):
    """`{"data": "<base64 of random bytes>"}`, exactly `size` bytes as compact JSON."""
    room = size - len(json.dumps({"data": ""}, separators=COMPACT))
    text = base64.b64encode(os.urandom(room)).decode()[:room]
    document = {"data": text}
    assert len(json.dumps(document, separators=COMPACT)) == size
    return document


def streams_client(endpoint):
    session = boto3.session.Session(region_name=emulator.REGION,
                                    **{k.lower(): v for k, v in emulator.CREDENTIALS.items()})
    return session.client("dynamodbstreams", endpoint_url=endpoint)


def read_stream(streams, stream_arn, page=100):
    """Every record of every shard, oldest first. Against the emulator a shard ends where its
    records end (DynamoDB's open shards may answer empty pages before the end: not for AWS)."""
    records, start = [], {}
    while True:
        description = streams.describe_stream(StreamArn=stream_arn, **start)["StreamDescription"]
        for shard in description.get("Shards", []):
            iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while iterator:
                answer = streams.get_records(ShardIterator=iterator, Limit=page)
                if not answer["Records"]:
                    break
                records += answer["Records"]
                iterator = answer.get("NextShardIterator")
        if not description.get("LastEvaluatedShardId"):
            return records
        start = {"ExclusiveStartShardId": description["LastEvaluatedShardId"]}


def submit(port, documents, concurrency):
    """POSTs one task per payload, all with the one benchmark client's key; answers the ids."""
    local = threading.local()
    headers = {"x-api-key": functions.API_KEY, "Content-Type": "application/json"}

    def post(document):
        if not hasattr(local, "client"):
            local.client = Client("127.0.0.1", port)
        body = json.dumps({"payload": document}, separators=COMPACT).encode()
        answer = local.client.request("POST", "/tasks", body, headers)
        if answer.status != 202:
            raise StepFailed(f"POST /tasks answered {answer.status}: {answer.body[:200]!r}")
        return json.loads(answer.body)["task_id"]

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(post, documents))


def statuses(dynamodb, table, task_ids, hash_key="pk"):
    """The status of each task (only that attribute read: the items are large)."""
    found = {}
    for start in range(0, len(task_ids), 100):
        keys = [{hash_key: {"S": f"TASK#{t}"}} for t in task_ids[start : start + 100]]
        request = {table: {"Keys": keys, "ConsistentRead": True, "ProjectionExpression": "#k, #s",
                           "ExpressionAttributeNames": {"#k": hash_key, "#s": "status"}}}
        while request:
            answer = dynamodb.batch_get_item(RequestItems=request)
            for item in answer["Responses"].get(table, []):
                found[item[hash_key]["S"][len("TASK#"):]] = item.get("status", {}).get("S", "?")
            request = answer.get("UnprocessedKeys") or None
    return found


def _calls(change):
    """{"service:operation": calls} without the local plumbing."""
    return {f"{s}:{o}": v for (s, o), v in change["calls"].items() if (s, o) not in PLUMBING}


def one_size(ctx, label, size, n, concurrency, deadline):
    proxy = CountingProxy(ctx.endpoint)
    service = ExternalService(call_back=True, workers=concurrency, result=lambda job: random_document(size))
    fleet = None
    db, streams = ctx.clients["dynamodb"], streams_client(ctx.endpoint)
    try:
        fleet = LocalFleet(ctx, proxy.url, service.url)
        wait_quiet(proxy)
        description = db.describe_table(TableName=fleet.table)["Table"]
        stream_arn = description.get("LatestStreamArn")
        if not stream_arn:
            raise StepFailed(f"table {fleet.table} has no stream")
        hash_key = heat.Table(description).hash_key
        # What the fleet wrote at start-up (its development key) is not the tasks' doing.
        setup = {r["dynamodb"]["SequenceNumber"] for r in read_stream(streams, stream_arn)}
        before = proxy.snapshot()
        started = time.monotonic()
        ids = submit(fleet.port, [random_document(size) for _ in range(n)], concurrency)
        service.wait_finished(n, max(1.0, deadline - time.monotonic()))
        wait_quiet(proxy, limit=max(1.0, min(10.0, deadline - time.monotonic())))
        seconds = time.monotonic() - started
        change = delta(proxy.snapshot(), before)
        final = statuses(db, fleet.table, ids, hash_key)
        records = [r for r in read_stream(streams, stream_arn) if r["dynamodb"]["SequenceNumber"] not in setup]
    finally:
        if fleet:
            fleet.stop()
        service.close()
        proxy.close()
    tally = {}
    for task_id in ids:
        tally[final.get(task_id, "MISSING")] = tally.get(final.get(task_id, "MISSING"), 0) + 1
    if tally.get("DONE", 0) != n:
        raise StepFailed(f"storage {label}: not every task is DONE after {seconds:.0f} s: {tally}")
    analysis = heat.analyse(description, records, tasks=n)
    inserted = heat.count_tasks(heat.Table(description), records)
    if inserted != n:
        raise StepFailed(f"storage {label}: the stream shows {inserted} new task items for {n} tasks")
    if not analysis["table"]["writes"]:
        raise StepFailed(f"storage {label}: no writes in the stream")
    calls = _calls(change)
    s3 = {k.split(":", 1)[1]: v for k, v in calls.items() if k.startswith("s3:")}
    s3_put = sum(v for op, v in s3.items() if op in S3_PUT_CLASS)
    s3_get = sum(v for op, v in s3.items() if op not in S3_PUT_CLASS | S3_FREE | S3_SETUP)
    refused = sum(v for (service_, op, kind), v in change["errors"].items()
                  if service_ == "dynamodb" and op in DYNAMODB_WRITES and kind == "ConditionalCheckFailedException")
    per = 1 / n
    return {
        "label": label,
        "bytes": size,
        "tasks": n,
        "concurrency": concurrency,
        "seconds": seconds,
        "stream_records": len(records),
        "inserted_task_items": inserted,
        "indexes": [_definition(i) for i in description.get("GlobalSecondaryIndexes") or []],
        "key_schema": description["KeySchema"],
        "analysis": analysis,
        "calls_per_task": {k: v * per for k, v in sorted(calls.items())},
        "errors": {":".join(k): v for k, v in change["errors"].items()},
        "refused_conditional_writes_per_task": refused * per,
        "s3_put_per_task": s3_put * per,
        "s3_get_per_task": s3_get * per,
        "cost_per_million": cost_per_million(analysis["total"]["wcu_per_task"], s3_put * per, s3_get * per),
    }


def cost_per_million(wcu_per_task, s3_put_per_task, s3_get_per_task):
    dynamodb = wcu_per_task * prices.DYNAMODB_WRITE_UNIT * 1e6
    s3 = (s3_put_per_task * prices.S3_PUT_REQUEST + s3_get_per_task * prices.S3_GET_REQUEST) * 1e6
    return {"dynamodb_writes": dynamodb, "s3_requests": s3, "total": dynamodb + s3}


def _definition(index):
    return {"IndexName": index["IndexName"], "KeySchema": index["KeySchema"], "Projection": index["Projection"]}


def measure(ctx):
    """Both sizes, each with an equal share of the step's time budget."""
    n, concurrency = ctx.setting("storage_tasks"), ctx.setting("storage_concurrency")
    end = time.monotonic() + ctx.setting("budget_storage")
    runs = []
    for index, (label, size) in enumerate(SIZES):
        share = (end - time.monotonic()) / (len(SIZES) - index)
        print(f"  storage {label}: {n} tasks", flush=True)
        runs.append(one_size(ctx, label, size, n, concurrency, time.monotonic() + share))
    used = {"dynamodb_write_unit": prices.DYNAMODB_WRITE_UNIT, "s3_put": prices.S3_PUT_REQUEST,
            "s3_get": prices.S3_GET_REQUEST}
    return {"runs": runs, "fleet_binary": ctx.fleet_binary, "prices": used}


def baseline(results):
    """What bench/baseline-storage.json keeps of a run besides where it came from: enough for the
    report's before column."""
    return {"fleet_binary": results["storage"].get("fleet_binary"), "runs": results["storage"]["runs"]}
