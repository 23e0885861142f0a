"""Steps 5-7: the whole fleet (`taskfleet-local`, every function wired as AWS wires them) against
the emulator — AWS calls per task through the counting proxy, end-to-end throughput beside the
emulator's raw write rate, and the cost of the cron runs as stored tasks grow."""

import concurrent.futures
import json
import os
import subprocess
import threading
import time

import emulator
import events
import functions
import invoke
import seed
from emulator import free_port, wait_for_port
from http_io import Client
from proxy import CountingProxy, delta
from stub import ExternalService

# What Lambda's event source mappings do in AWS; locally the fleet does it itself (stream
# polling; the jobs queue's pollers). Stream reads are free in AWS; the queue's receives and
# deletes are billed SQS requests — the report counts those that carried messages (one per
# caller invocation) and the deletes per task, and leaves out the idle polls.
PLUMBING = {
    ("dynamodbstreams", "GetRecords"),
    ("dynamodbstreams", "GetShardIterator"),
    ("dynamodbstreams", "DescribeStream"),
    ("sqs", "ReceiveMessage"),
    ("sqs", "DeleteMessage"),
    ("sqs", "DeleteMessageBatch"),
}
# Created once when the fleet starts (CloudFormation does it in AWS).
SETUP = {"CreateTable", "UpdateTimeToLive", "DescribeTable", "CreateTopic", "CreateQueue", "GetQueueAttributes",
         "Subscribe"}
# Seconds an attempt waits for its callback in the steps that count a task's whole cost: its
# deadline timer (one per started attempt) then fires, and is counted, within the step. The
# stub calls back at once, so no attempt times out.
SHORT_CALLBACK_TIMEOUT = 8


class LocalFleet:
    """`taskfleet-local` as scripts/dev.sh starts it, with its own resource prefix."""

    def __init__(self, ctx, endpoint, service_url, fast_retries=False, env_overrides=None, prefix=None):
        self.port = free_port()
        self.log_path = os.path.join(ctx.logs, f"fleet-{self.port}.log")
        self.prefix = prefix or emulator.unique("bench")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": emulator.REGION,
            "AWS_DEFAULT_REGION": emulator.REGION,
            "AWS_EC2_METADATA_DISABLED": "true",  # loopback only, whatever the SDK's fallbacks
            **emulator.CREDENTIALS,
            "PORT": str(self.port),
            "TASKFLEET_PREFIX": self.prefix,
            "TASKFLEET_API_KEYS": functions.API_KEYS,
            "TASKFLEET_DEV_KEY": functions.API_KEY,
            "TASKFLEET_DEV_CLIENT": functions.CLIENT,
            "EXTERNAL_SERVICE_URL": service_url,
            # The schedule's first tick runs at start-up (before counting); no later one may
            # land inside a measurement.
            "METRICS_INTERVAL_SECONDS": "86400",
            # No AWS metrics, queue-depth polls or alarm evaluation: the local stand-ins of
            # CloudWatch's own work, which the fleet does not do in AWS (ignored by versions of
            # taskfleet-local without them).
            "LOCAL_AWS_METRICS": "off",
            "RUST_LOG": "warn",
        }
        if fast_retries:
            # Retries within seconds, not minutes, so the one-retry scenario finishes inside its
            # time budget: backoff 1-2 s (the retry's timer fires when it is due; the sweeper
            # keeps its minute).
            env.update(RETRY_BASE_SECONDS="1", RETRY_MAX_SECONDS="2")
        env.update(env_overrides or {})
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([ctx.fleet_binary], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while b"local fleet is up" not in self._log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"taskfleet-local did not start; see {self.log_path}")
            time.sleep(0.1)
        wait_for_port(self.port, 10)
        self.table = self.prefix + "-tasks"
        self.queue = self.prefix + "-jobs"

    def _log(self):
        with open(self.log_path, "rb") as log:
            return log.read()

    def submit(self, count, concurrency):
        """POSTs `count` tasks from `concurrency` keep-alive clients; answers the task ids."""
        local = threading.local()

        def post(n):
            if not hasattr(local, "client"):
                local.client = Client("127.0.0.1", self.port)
            body = json.dumps({"payload": {"n": n, "text": "héllo"}}).encode()
            headers = {"x-api-key": functions.API_KEY, "Content-Type": "application/json"}
            answer = local.client.request("POST", "/tasks", body, headers)
            if answer.status != 202:
                raise RuntimeError(f"POST /tasks answered {answer.status}: {answer.body[:200]!r}")
            return json.loads(answer.body)["task_id"]

        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(post, range(count)))

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def task_states(dynamodb, table, task_ids):
    """(status, attempts) of each task, read straight from the emulator (not via the proxy)."""
    states = {}
    for start in range(0, len(task_ids), 100):
        keys = [{"pk": {"S": f"TASK#{t}"}} for t in task_ids[start : start + 100]]
        answer = dynamodb.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
        for item in answer["Responses"][table]:
            states[item["task_id"]["S"]] = (item["status"]["S"], int(item["attempts"]["N"]))
    return states


def wait_terminal(dynamodb, table, task_ids, seconds):
    deadline = time.monotonic() + seconds
    while True:
        states = task_states(dynamodb, table, task_ids)
        if all(states.get(t, ("?",))[0] in ("DONE", "FAILED") for t in task_ids) or time.monotonic() > deadline:
            return states
        time.sleep(0.25)


def queue_left(sqs, queue_url):
    """Messages still on a queue: visible, delayed (timers not due yet) and in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed",
             "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def wait_queue_empty(sqs, queue_url, seconds):
    """Waits until every timer on the jobs queue fired and was handled (the queue empty twice,
    half a second apart: its counts may be a quarter of a second old, emulator_server.py);
    answers what is left. Call it once the dispatcher is quiet (wait_quiet), so that every timer
    was sent."""
    deadline = time.monotonic() + seconds
    empty_since = None
    while True:
        left = queue_left(sqs, queue_url)
        now = time.monotonic()
        if left:
            empty_since = None
        elif empty_since is None:
            empty_since = now
        elif now - empty_since >= 0.5:
            return 0
        if now > deadline:
            return left
        time.sleep(0.25)


def wait_quiet(proxy, seconds=1.0, limit=10.0):
    """Waits until no call but plumbing passed the proxy for `seconds` (stream records of the
    last writes reach the dispatcher, late callbacks land)."""
    deadline = time.monotonic() + limit
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        calls = {k: v for k, v in proxy.snapshot()["calls"].items() if k not in PLUMBING}
        if calls != last:
            last, since = calls, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return
        time.sleep(0.1)


def requests_per_task(ctx):
    """AWS calls per task: happy path one at a time (each task its own stream batch), happy path
    in a burst (stream batches of many tasks), and with the first job of each task refused.
    Each scenario lasts until every timer it set fired (the deadline timers, a short callback
    timeout later), so that a task's whole cost is counted."""
    n = ctx.setting("fleet_tasks")
    budget_end = time.monotonic() + ctx.setting("budget_requests")
    proxy = CountingProxy(ctx.endpoint)
    # A refusal without Retry-After: the retry path alone, without the fleet-wide hold a
    # Retry-After would start (issue 10; §9 measures the hold's effects).
    service = ExternalService(call_back=True, retry_after=None)
    fleet = LocalFleet(ctx, proxy.url, service.url, fast_retries=True,
                       env_overrides={"CALLBACK_TIMEOUT_SECONDS": str(SHORT_CALLBACK_TIMEOUT)})
    db, sqs = ctx.clients["dynamodb"], ctx.clients["sqs"]
    queue_url = sqs.get_queue_url(QueueName=fleet.queue)["QueueUrl"]
    scenarios = {}
    try:
        wait_quiet(proxy)
        for label, count, concurrency, refuse in (
            ("happy path, one task at a time", max(1, n // 5), 1, False),
            ("happy path, burst", n, 10, False),
            ("one retry: first job refused (503, no Retry-After)", max(1, n // 5), 10, True),
        ):
            service.refuse_first = refuse
            before = proxy.snapshot()
            started = time.monotonic()
            if concurrency == 1:
                ids = []
                for _ in range(count):
                    ids += fleet.submit(1, 1)
                    wait_terminal(db, fleet.table, ids[-1:], max(5, budget_end - time.monotonic()))
            else:
                ids = fleet.submit(count, concurrency)
            states = wait_terminal(db, fleet.table, ids, max(5, min(45, budget_end - time.monotonic())))
            wait_quiet(proxy)  # the dispatcher has set every timer
            timers_left = wait_queue_empty(sqs, queue_url, SHORT_CALLBACK_TIMEOUT + 10)
            wait_quiet(proxy)
            seconds = time.monotonic() - started
            after = proxy.snapshot()
            change = delta(after, before)
            unfinished = [t for t in ids if states.get(t, ("?",))[0] not in ("DONE", "FAILED")]
            if unfinished or (not refuse and any(states[t][0] != "DONE" for t in ids)):
                raise StepFailed(f"{label}: tasks did not finish as expected: {_tally(states, ids)}")
            scenarios[label] = {
                "tasks": count,
                "seconds": seconds,
                "counts": {f"{s}:{o}": v for (s, o), v in change["calls"].items()},
                "scanned": {f"{s}:{o}": v for (s, o), v in change["scanned"].items()},
                "stream_batches": change["stream_batches"],
                # Caller invocations (ReceiveMessage answers with messages) and their messages.
                "queue_batches": change["queue_batches"],
                "queue_received": change["queue_received"],
                "queue_sent": change["queue_sent"],
                "timers_left": timers_left,
                "final": _tally(states, ids),
                "jobs_per_task": sum(service.jobs[t] for t in ids) / count,
            }
    finally:
        fleet.stop()
        service.close()
        proxy.close()
    return {"scenarios": scenarios, "plumbing": sorted(f"{s}:{o}" for s, o in PLUMBING),
            "callback_timeout_seconds": SHORT_CALLBACK_TIMEOUT}


class StepFailed(Exception):
    """The fleet did not do its job (a task not finished, a cron run failed): the numbers of
    the step would be meaningless. The smoke run exists to catch exactly this."""


def _tally(states, ids):
    tally = {}
    for task_id in ids:
        status, attempts = states.get(task_id, ("MISSING", 0))
        key = f"{status} after {attempts} attempt(s)"
        tally[key] = tally.get(key, 0) + 1
    return tally


def raw_write_rate(ctx, seconds, concurrency):
    """PutItem calls/s the emulator sustains on a table laid out like the fleet's (stream and
    index included), from lean raw-HTTP clients (moto does not check signatures)."""
    db = ctx.clients["dynamodb"]
    table = seed.copy_table(db, ctx.templates.reference_table, emulator.unique("bench-raw"))
    port = int(ctx.endpoint.rsplit(":", 1)[1])
    stop_at = time.monotonic() + seconds
    counts = [0] * concurrency

    def loop(slot):
        client = Client("127.0.0.1", port)
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.PutItem",
            "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=0",
        }
        while time.monotonic() < stop_at:
            _, item = seed.clone(ctx.templates.received)
            body = json.dumps({"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"})
            answer = client.request("POST", "/", body.encode(), headers)
            if answer.status != 200:
                raise RuntimeError(f"raw PutItem answered {answer.status}: {answer.body[:200]!r}")
            counts[slot] += 1

    started, moto_cpu = time.monotonic(), ctx.moto.cpu_seconds()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, moto_cpu = time.monotonic() - started, ctx.moto.cpu_seconds() - moto_cpu
    return {"rate": sum(counts) / elapsed, "moto_cpu_ms_per_put": moto_cpu * 1000 / max(1, sum(counts)),
            "moto_busy": moto_cpu / elapsed}


def throughput(ctx):
    """Tasks/s end to end (POST -> callback recorded) at a fixed client concurrency, beside the
    emulator's raw PutItem rate measured just before and just after, in the same run."""
    n, concurrency = ctx.setting("throughput_tasks"), ctx.setting("throughput_concurrency")
    raw_seconds = ctx.setting("raw_seconds")
    budget = ctx.setting("budget_throughput")
    raw_before = raw_write_rate(ctx, raw_seconds, concurrency)
    service = ExternalService(call_back=True, workers=concurrency)
    fleet = LocalFleet(ctx, ctx.endpoint, service.url)
    try:
        started, moto_cpu = time.monotonic(), ctx.moto.cpu_seconds()
        fleet_cpu = emulator.cpu_seconds(fleet.process.pid)
        ids = fleet.submit(n, concurrency)
        submitted = time.monotonic() - started
        finished = service.wait_finished(n, budget)
        elapsed = time.monotonic() - started
        moto_cpu = ctx.moto.cpu_seconds() - moto_cpu
        fleet_cpu = emulator.cpu_seconds(fleet.process.pid) - fleet_cpu
        done = sum(service.finished.get(t) == 200 for t in ids)
    finally:
        fleet.stop()
        service.close()
    raw_after = raw_write_rate(ctx, raw_seconds, concurrency)
    raw = (raw_before["rate"] + raw_after["rate"]) / 2
    achieved = done / elapsed
    return {
        "moto_cpu_ms_per_task": moto_cpu * 1000 / max(1, done),
        "moto_busy": moto_cpu / elapsed,
        "fleet_cpu_ms_per_task": fleet_cpu * 1000 / max(1, done),
        "moto_cpu_ms_per_put": (raw_before["moto_cpu_ms_per_put"] + raw_after["moto_cpu_ms_per_put"]) / 2,
        "raw_moto_busy": (raw_before["moto_busy"] + raw_after["moto_busy"]) / 2,
        "tasks": n,
        "finished": done,
        "all_finished": finished,
        "concurrency": concurrency,
        "seconds": elapsed,
        "submit_seconds": submitted,
        "tasks_per_s": achieved,
        "raw_before": raw_before["rate"],
        "raw_after": raw_after["rate"],
        "raw_puts_per_s": raw,
        "writes_per_task": 3,
        "limit_tasks_per_s": raw / 3,
        "ratio": achieved / (raw / 3),
    }


CRON_FUNCTIONS = ("metrics", "sweeper")
TWO_HOURS_MS = 2 * 3600 * 1000


def cron_scaling(ctx):
    """One run of each cron function with 10 and 1,000 finished tasks (run.py `cron_sizes`) stored
    beside the same small set of active ones: calls and items read per run must not grow."""
    bench = invoke.Bench(ctx)
    db = ctx.clients["dynamodb"]
    budget_end = time.monotonic() + ctx.setting("budget_cron")
    proxy = CountingProxy(ctx.endpoint)
    runs = []
    try:
        for stored in ctx.setting("cron_sizes"):
            if runs and time.monotonic() > budget_end:
                break
            resources = bench.resources("rust", "cron")
            table, templates = resources["table"], ctx.templates
            seed.store_clones(db, table, templates.received, 3)
            seed.store_clones(db, table, templates.in_progress, 3)
            seed.store_clones(db, table, templates.done, 2, shift_ms=5_000)
            seeded = time.monotonic()
            seed.store_clones(db, table, templates.done, stored, shift_ms=TWO_HOURS_MS)
            seed_seconds = time.monotonic() - seeded
            for name in CRON_FUNCTIONS:
                binary = os.path.join(ctx.rust_dir, name)
                if not os.path.exists(binary):
                    continue
                before = proxy.snapshot()
                sandbox = bench.spawn("rust", name, resources, endpoint=proxy.url)
                try:
                    request_id = bench.api.submit(events.scheduled())
                    outcome = bench.api.wait(request_id, invoke.INVOKE_TIMEOUT)
                finally:
                    sandbox.stop()
                change = delta(proxy.snapshot(), before)
                runs.append(
                    {
                        "function": name,
                        "stored_finished": stored,
                        "active": 6,
                        "ok": outcome is not None and outcome.kind == "response",
                        "answer": None if outcome is None else outcome.body.decode(errors="replace")[:200],
                        "invocation_ms": None if outcome is None else (outcome.posted_at - outcome.served_at) * 1000,
                        "calls": {f"{s}:{o}": v for (s, o), v in change["calls"].items()},
                        "scanned": sum(change["scanned"].values()),
                        "returned": sum(change["returned"].values()),
                        "seed_seconds": seed_seconds,
                    }
                )
    finally:
        proxy.close()
        bench.api.close()
    failed = [f"{r['function']} with {r['stored_finished']} stored: {r['answer']}" for r in runs if not r["ok"]]
    if failed:
        raise StepFailed("cron runs failed: " + "; ".join(failed))
    present = [n for n in CRON_FUNCTIONS if os.path.exists(os.path.join(ctx.rust_dir, n))]
    return {"runs": runs, "functions": present, "missing": [n for n in CRON_FUNCTIONS if n not in present]}
