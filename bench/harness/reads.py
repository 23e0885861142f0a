"""Step 11 (issue 12): what it costs a client to learn a task's result — polling `GET /tasks/{id}`
every 2 s, `GET /tasks/{id}?wait=20`, or a completion webhook — for a task that takes 30 s.

Each way runs on a fleet of its own (the whole local fleet, the emulator behind the counting
proxy), N tasks at once, the external-service stub calling each back 30 s after it accepted
the job. A fourth run, `none`, submits the same tasks and learns nothing: what the others made
beyond it is what learning the result cost. Measured: the client's requests and how long each
took (a `?wait` request is billed as a Lambda running that long), the AWS calls beyond `none`
(through the proxy), the stream batches and queue batches (one dispatcher or queue-consumer
invocation each), the task item's size (what every write of it is billed on), and how long after
the task ended the client knew. Priced in report `reads_report.py`.
"""

import concurrent.futures
import json
import math
import threading
import time

import functions
from fleet import PLUMBING, LocalFleet, StepFailed, wait_quiet
from http_io import Client, Server, respond
from proxy import CountingProxy, delta
from stub import ExternalService

MODES = ("none", "poll", "wait", "webhook")
POLL_EVERY = 2.0
WAIT = 20
HEADERS = {"x-api-key": functions.API_KEY, "Content-Type": "application/json"}
READS = {"GetItem", "BatchGetItem", "Query", "Scan"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


class Receiver:
    """The client's webhook endpoint: answers 204 and notes when each task's delivery came."""

    def __init__(self):
        self.lock = threading.Condition()
        self.arrived = {}  # task_id -> perf_counter of its first delivery
        self.deliveries = 0
        self.server = Server(self._handle)
        self.url = f"http://127.0.0.1:{self.server.port}/hook"

    def _handle(self, message, sock):
        now = time.perf_counter()
        try:
            task_id = json.loads(message.body)["data"]["task_id"]
        except (ValueError, KeyError, TypeError):
            task_id = None
        with self.lock:
            self.deliveries += 1
            if task_id:
                self.arrived.setdefault(task_id, now)
            self.lock.notify_all()
        respond(sock, 204)

    def wait_for(self, count, timeout):
        with self.lock:
            return self.lock.wait_for(lambda: len(self.arrived) >= count, timeout)

    def close(self):
        self.server.close()


def item_bytes(value):
    """DynamoDB's size of an attribute value (names counted by the caller)."""
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return math.ceil(len(inner.lstrip("-").replace(".", "")) / 2) + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + item_bytes(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + item_bytes(v) for v in inner)
    return sum(len(x.encode()) if isinstance(x, str) else len(x) for x in inner)  # SS, NS, BS


def task_item_size(dynamodb, table, task_id):
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"TASK#{task_id}"}}, ConsistentRead=True).get("Item")
    if not item:
        raise StepFailed(f"reads: task {task_id} is not stored")
    return sum(len(k.encode()) + item_bytes(v) for k, v in item.items())


def learn(port, mode, task_id, deadline):
    """Reads the task as `mode` says until it is DONE or FAILED: [(seconds each read took)], and
    when the client saw it end (perf_counter)."""
    client = Client("127.0.0.1", port, timeout=WAIT + 15)
    path = f"/tasks/{task_id}" + (f"?wait={WAIT}" if mode == "wait" else "")
    took = []
    try:
        while time.monotonic() < deadline:
            if mode == "poll":
                time.sleep(POLL_EVERY)
            start = time.perf_counter()
            answer = client.request("GET", path, b"", HEADERS)
            took.append(time.perf_counter() - start)
            if answer.status != 200:
                raise StepFailed(f"reads {mode}: GET {path} answered {answer.status}: {answer.body[:200]!r}")
            if json.loads(answer.body)["status"] in ("DONE", "FAILED"):
                return took, time.perf_counter()
        raise StepFailed(f"reads {mode}: task {task_id} did not end in time")
    finally:
        client.close()


def one_mode(ctx, mode, n, task_seconds, deadline):
    proxy = CountingProxy(ctx.endpoint)
    service = ExternalService(call_back=True, workers=n, call_back_after=task_seconds)
    receiver = Receiver() if mode == "webhook" else None
    fleet = None
    try:
        fleet = LocalFleet(ctx, proxy.url, service.url)
        api = Client("127.0.0.1", fleet.port)
        if receiver:
            answer = api.request("POST", "/webhook-secret", b"", HEADERS)
            if answer.status != 200:
                raise StepFailed(f"reads: POST /webhook-secret answered {answer.status}: {answer.body[:200]!r}")
        wait_quiet(proxy)
        before = proxy.snapshot()
        ids = []
        for index in range(n):
            body = {"payload": {"n": index}}
            if receiver:
                body["webhook_url"] = receiver.url
            answer = api.request("POST", "/tasks", json.dumps(body).encode(), HEADERS)
            if answer.status != 202:
                raise StepFailed(f"reads: POST /tasks answered {answer.status}: {answer.body[:200]!r}")
            ids.append(json.loads(answer.body)["task_id"])
        api.close()
        reads = {}
        if mode in ("poll", "wait"):
            with concurrent.futures.ThreadPoolExecutor(n) as pool:
                reads = dict(zip(ids, pool.map(lambda t: learn(fleet.port, mode, t, deadline), ids)))
        if not service.wait_finished(n, max(1.0, deadline - time.monotonic())):
            raise StepFailed(f"reads {mode}: not every task was called back in time")
        if receiver and not receiver.wait_for(n, max(1.0, deadline - time.monotonic())):
            raise StepFailed(f"reads webhook: {len(receiver.arrived)} of {n} deliveries came in time")
        wait_quiet(proxy, seconds=2.0, limit=max(2.0, min(15.0, deadline - time.monotonic())))
        change = delta(proxy.snapshot(), before)
        size = task_item_size(ctx.clients["dynamodb"], fleet.table, ids[0])
    finally:
        if fleet:
            fleet.stop()
        service.close()
        proxy.close()
        if receiver:
            receiver.close()
    ended = service.finished_at
    if mode in ("poll", "wait"):
        knew = {t: seen for t, (_, seen) in reads.items()}
    elif receiver:
        knew = dict(receiver.arrived)
    else:
        knew = {}
    calls = {f"{s}:{o}": v for (s, o), v in change["calls"].items() if (s, o) not in PLUMBING}
    per = 1 / n
    return {
        "mode": mode,
        "tasks": n,
        "task_item_bytes": size,
        "client_requests_per_task": sum(len(took) for took, _ in reads.values()) * per,
        "client_request_seconds_per_task": sum(sum(took) for took, _ in reads.values()) * per,
        "deliveries_per_task": (receiver.deliveries * per) if receiver else 0.0,
        "knew_after_seconds": sorted(knew[t] - ended[t] for t in ids if t in knew and t in ended),
        "calls_per_task": {k: v * per for k, v in sorted(calls.items())},
        "dynamodb_reads_per_task": sum(v for k, v in calls.items() if k.split(":")[1] in READS and
                                       k.startswith("dynamodb:")) * per,
        "dynamodb_writes_per_task": sum(v for k, v in calls.items() if k.split(":")[1] in WRITES and
                                        k.startswith("dynamodb:")) * per,
        "sqs_sends_per_task": sum(v for k, v in calls.items() if k in ("sqs:SendMessage", "sqs:SendMessageBatch")) * per,
        "stream_batches_per_task": change["stream_batches"] * per,
        "queue_batches_per_task": change["queue_batches"] * per,
    }


def measure(ctx):
    n, task_seconds = ctx.setting("reads_tasks"), ctx.setting("reads_task_seconds")
    end = time.monotonic() + ctx.setting("budget_reads")
    runs = {}
    for index, mode in enumerate(MODES):
        share = (end - time.monotonic()) / (len(MODES) - index)
        print(f"  reads {mode}: {n} tasks of {task_seconds} s", flush=True)
        runs[mode] = one_mode(ctx, mode, n, task_seconds, time.monotonic() + share)
    return {"tasks": n, "task_seconds": task_seconds, "poll_every": POLL_EVERY, "wait": WAIT, "runs": runs,
            "fleet_binary": ctx.fleet_binary}
