"""State for the per-function benchmarks, made by the fleet's own code so the harness does not
hard-code a storage layout that keeps evolving:

- tables are created like the one `taskfleet-local` creates (crates/adapters/src/table.rs),
  by copying its definition (keys, indexes, stream);
- one task is taken through the real Rust functions (ingest -> dispatcher -> jobs queue -> caller
  -> webhook); its item at each stage, the start timer the dispatcher set (body and message
  group) and the callback URL are the templates;
- the n tasks a run needs are clones of a template under fresh ids, written with BatchWriteItem.
"""

import json
import os
import time
import urllib.parse
import uuid

import emulator
import events
import functions
from runtime_api import RuntimeApi
from sandbox import Sandbox, lambda_environment

TIME_FIELDS_MS = ("created_at", "updated_at", "due_at")


def copy_table(dynamodb, reference, name):
    """Creates `name` with `reference`'s keys, indexes and stream (on-demand), and copies the items
    of `reference` that are not tasks (the client key the local fleet stored there)."""
    table = dynamodb.describe_table(TableName=reference)["Table"]
    indexes = [
        {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
        for i in table.get("GlobalSecondaryIndexes", [])
    ]
    stream = table.get("StreamSpecification") or {"StreamEnabled": False}
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        StreamSpecification=stream,
        **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
    )
    items = dynamodb.scan(TableName=reference, Limit=100).get("Items", [])
    emulator.put_items(dynamodb, name, [i for i in items if not i["pk"]["S"].startswith("TASK#")])
    return name


def status_index_key(dynamodb, table, kind, default):
    """The attribute of the `by_status` index's `kind` (HASH or RANGE) key."""
    for index in dynamodb.describe_table(TableName=table)["Table"].get("GlobalSecondaryIndexes", []):
        if index["IndexName"] == "by_status":
            return next((k["AttributeName"] for k in index["KeySchema"] if k["KeyType"] == kind), default)
    return default


def status_index_range_key(dynamodb, table):
    """The sort key of the `by_status` index (the Python baseline's metrics query it)."""
    return status_index_key(dynamodb, table, "RANGE", "updated_at")


# The index layout of crates/adapters/src/table.rs: a task's shards come from its id.
STATUS_SHARDS = 64
CLIENT_SHARDS = 32


def shard_of(task_id, shards):
    return int(task_id[:8], 16) % shards


def clone(item, shift_ms=0):
    """A copy of a task item under a fresh id, with the index keys that id gets; its timestamps
    moved `shift_ms` into the past."""
    task_id = str(uuid.uuid4())
    copy = json.loads(json.dumps(item))
    copy["pk"] = {"S": f"TASK#{task_id}"}
    copy["task_id"] = {"S": task_id}
    for field in TIME_FIELDS_MS:
        if "N" in copy.get(field, {}):
            copy[field] = {"N": str(int(copy[field]["N"]) - shift_ms)}
    if "S" in copy.get("status_key", {}):
        status = copy["status_key"]["S"].split("#")[0]
        copy["status_key"] = {"S": f"{status}#{shard_of(task_id, STATUS_SHARDS)}"}
    if "S" in copy.get("client_key", {}):
        client = copy["client_key"]["S"].rsplit("#", 1)[0]
        copy["client_key"] = {"S": f"{client}#{shard_of(task_id, CLIENT_SHARDS)}"}
    if "N" in copy.get("created_at", {}):
        copy["created_key"] = {"S": f"{int(copy['created_at']['N']):015}#{task_id}"}
    for entry in copy.get("history", {}).get("L", []):
        at = entry.get("M", {}).get("at", {})
        if "N" in at:
            at["N"] = str(int(at["N"]) - shift_ms)
    return task_id, copy


def payload_item(task_id, expires_at):
    """The write-once payload item of a task (crates/adapters/src/record.rs PayloadRecord)."""
    return {"pk": {"S": f"PAYLOAD#{task_id}"}, "payload": {"S": json.dumps(functions.PAYLOAD, separators=(",", ":"))},
            "expires_at": {"N": str(expires_at)}}


def store_clones(dynamodb, table, item, count, shift_ms=0):
    pairs = [clone(item, shift_ms) for _ in range(count)]
    expires_at = int(item.get("expires_at", {}).get("N", "4102444800"))
    payloads = [payload_item(task_id, expires_at) for task_id, _ in pairs]
    emulator.put_items(dynamodb, table, [copy for _, copy in pairs] + payloads)
    return [task_id for task_id, _ in pairs]


class Templates:
    """One task taken through the Rust functions, kept at every stage."""

    def __init__(self, ctx, reference_table):
        self.ctx = ctx
        db, sns = ctx.clients["dynamodb"], ctx.clients["sns"]
        self.reference_table = reference_table
        self.status_range_key = status_index_range_key(db, reference_table)
        self.status_hash_key = status_index_key(db, reference_table, "HASH", "status")
        self.table = copy_table(db, reference_table, emulator.unique("bench-templates"))
        self.topic_arn = sns.create_topic(Name=emulator.unique("bench-templates"))["TopicArn"]
        self.queue_url, self.queue_arn = emulator.create_queue(ctx.clients["sqs"], emulator.unique("bench-templates"))
        self.bucket = emulator.create_bucket(ctx.clients["s3"], emulator.unique("bench-blobs"))
        resources = {"table": self.table, "topic_arn": self.topic_arn, "service_url": ctx.stub.url,
                     "bucket": self.bucket, "queue_url": self.queue_url, "queue_arn": self.queue_arn}
        api = RuntimeApi()
        try:
            answer = self._run(api, "ingest", resources, events.post_task(functions.API_KEY, functions.PAYLOAD))
            task_id = json.loads(answer["body"])["task_id"]
            self.received = self._item(task_id)
            self.message, self.group = self._dispatch_message(api, resources, task_id)
            self._run(api, "caller", resources, events.sqs(self.queue_arn, [(self.message, self.group)]))
            self.in_progress = self._item(task_id)
            self.callback_url = ctx.stub.callback_urls[task_id]
            self._run(api, "webhook", resources, self.callback(task_id))
            self.done = self._item(task_id)
        finally:
            api.close()

    def _run(self, api, name, resources, event):
        api.reset()
        env = lambda_environment(name, api.address, self.ctx.endpoint, functions.configuration(resources), False)
        sandbox = Sandbox([os.path.join(self.ctx.template_dir, name)], env,
                          os.path.join(self.ctx.logs, f"templates-{name}.log"))
        try:
            outcome = api.invoke(event, 30)
        finally:
            sandbox.stop()
        if outcome is None or outcome.kind != "response":
            raise RuntimeError(f"making the templates: {name} failed: {outcome and outcome.body[:300]!r}")
        return outcome.json()

    def _item(self, task_id):
        key = {"pk": {"S": f"TASK#{task_id}"}}
        return self.ctx.clients["dynamodb"].get_item(TableName=self.table, Key=key, ConsistentRead=True)["Item"]

    def _dispatch_message(self, api, resources, task_id):
        """The timer the dispatcher sets for a new task (its start), read back from the jobs
        queue: (body, message group)."""
        sqs = self.ctx.clients["sqs"]
        self._run(api, "dispatcher", resources, events.stream_insert(self.received, self.table))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = sqs.receive_message(QueueUrl=self.queue_url, WaitTimeSeconds=1, MaxNumberOfMessages=10,
                                         MessageSystemAttributeNames=["All"])
            for message in answer.get("Messages", []):
                body = json.loads(message["Body"])
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                if body.get("task_id") == task_id:
                    return body, message.get("Attributes", {}).get("MessageGroupId")
        raise RuntimeError("making the templates: the dispatcher set no timer on the jobs queue")

    def callback(self, task_id, outcome=None):
        """The external service's callback for `task_id`, at the URL the caller handed out (with
        whatever attempt and token it carries), as an API Gateway event."""
        parts = urllib.parse.urlsplit(self.callback_url)
        event = events.callback(task_id, outcome or {"status": "succeeded", "result": {"answer": 42}})
        if parts.query:
            event["rawQueryString"] = parts.query
            event["queryStringParameters"] = dict(urllib.parse.parse_qsl(parts.query))
        return event

    def message_for(self, task_id):
        return {**self.message, "task_id": task_id}
