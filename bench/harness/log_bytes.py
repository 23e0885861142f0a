"""Step 10 (issue 13): the CloudWatch Logs bytes one task costs on the happy path.

A task is submitted, handed over, called back DONE and read once. Each invocation it takes is
run through the real function binaries, started as Lambda starts them with the logging
configuration serverless.yml deploys (`logFormat` → AWS_LAMBDA_LOG_FORMAT, `applicationLogLevel`
→ AWS_LAMBDA_LOG_LEVEL), one process per stage of the path fed every task's invocation of that
stage: one more task first warms the process up and its bytes are not counted. What each
measured invocation writes to stdout/stderr is split into app lines and EMF lines (a JSON object
with an `_aws` key: CloudWatch turns them into metrics).

Platform lines (Lambda's own START/REPORT records) are not written locally: they are modelled
from the documented JSON system records (`platform.start`, `platform.report`), which Lambda sends
at `systemLogLevel` INFO and not at WARN, times the invocations of the path.
"""

import json
import os
import re
import time
import urllib.parse

import emulator
import events
import functions
import seed
from runtime_api import RuntimeApi
from sandbox import Sandbox, lambda_environment

INVOKE_TIMEOUT = 30

# The path of one task at a low rate, where every record and timer is its own invocation (in
# bursts the dispatcher's and caller's invocations are shared: §9). Per task, once each.
PATH = [
    ("ingest", "POST /tasks"),
    ("dispatcher", "the insert → start timer"),
    ("caller", "start timer → hand-over"),
    ("dispatcher", "IN_PROGRESS → deadline timer"),
    ("webhook", "callback → DONE"),
    ("caller", "deadline timer, attempt ended"),
    ("status", "GET /tasks/{id}"),
]

# Lambda's JSON system records per invocation, shaped like the documented examples (time, type,
# record); a request id is a UUID, a REPORT's metrics those of a short warm invocation at 256 MB.
# At systemLogLevel INFO Lambda sends `platform.start` and `platform.report` (platform.runtimeDone
# is DEBUG); at WARN neither (docs: Lambda "Log-level filtering", event mapping for system logs).
PLATFORM_RECORDS = {
    "platform.start": {
        "time": "2026-01-01T00:00:00.000Z",
        "type": "platform.start",
        "record": {"requestId": "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa", "version": "$LATEST"},
    },
    "platform.report": {
        "time": "2026-01-01T00:00:00.000Z",
        "type": "platform.report",
        "record": {
            "requestId": "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa",
            "metrics": {"durationMs": 12.34, "billedDurationMs": 13, "memorySizeMB": 256, "maxMemoryUsedMB": 20},
            "status": "success",
        },
    },
}
PLATFORM_LEVELS = {"platform.start": "INFO", "platform.report": "INFO"}
SYSTEM_LEVELS = ["DEBUG", "INFO", "WARN"]  # most detailed first


def platform_bytes_per_invocation(system_level):
    """Bytes of the system records Lambda writes per invocation at `system_level` (one line each,
    compact JSON, a newline)."""
    wanted = SYSTEM_LEVELS.index(system_level.upper()) if system_level.upper() in SYSTEM_LEVELS else 1
    return sum(len(json.dumps(record, separators=(",", ":"))) + 1 for name, record in PLATFORM_RECORDS.items()
               if SYSTEM_LEVELS.index(PLATFORM_LEVELS[name]) >= wanted)


def deployed_logging(root):
    """serverless.yml's Lambda logging: {logFormat, applicationLogLevel, systemLogLevel}."""
    with open(os.path.join(root, "serverless.yml")) as text:
        source = text.read()
    found = {}
    for key, default in (("logFormat", "Text"), ("applicationLogLevel", "INFO"), ("systemLogLevel", "INFO")):
        match = re.search(rf"^\s*{key}:\s*([A-Za-z]+)\s*$", source, re.MULTILINE)
        found[key] = match.group(1) if match else default
    return found


def split_lines(text):
    """(app bytes, app lines, EMF bytes, EMF lines) of what a process wrote (newlines counted:
    CloudWatch bills each event's message)."""
    app_bytes = app_lines = emf_bytes = emf_lines = 0
    for line in text.splitlines(keepends=True):
        if not line.strip():
            continue
        size = len(line.encode())
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        is_emf = isinstance(parsed, dict) and "_aws" in parsed
        if is_emf:
            emf_bytes, emf_lines = emf_bytes + size, emf_lines + 1
        else:
            app_bytes, app_lines = app_bytes + size, app_lines + 1
    return app_bytes, app_lines, emf_bytes, emf_lines


def per_task(stages, platform_per_invocation):
    """Sums the stages' bytes per invocation into bytes per task, by function and in total."""
    by_function = {}
    for stage in stages:
        row = by_function.setdefault(stage["function"], {"invocations": 0, "app": 0.0, "emf": 0.0, "platform": 0})
        row["invocations"] += 1
        row["app"] += stage["app_bytes"]
        row["emf"] += stage["emf_bytes"]
        row["platform"] += platform_per_invocation
    for row in by_function.values():
        row["total"] = row["app"] + row["emf"] + row["platform"]
    total = {key: sum(row[key] for row in by_function.values())
             for key in ("invocations", "app", "emf", "platform", "total")}
    return by_function, total


class Path:
    """The happy path of n + 1 tasks, one stage (one function process) at a time."""

    def __init__(self, ctx, tasks, logging):
        self.ctx, self.tasks, self.logging = ctx, tasks, logging
        clients = ctx.clients
        self.db, self.sqs = clients["dynamodb"], clients["sqs"]
        self.table = seed.copy_table(self.db, ctx.templates.reference_table, emulator.unique("bench-logs"))
        self.queue_url, self.queue_arn = emulator.create_queue(self.sqs, emulator.unique("bench-logs"))
        topic = clients["sns"].create_topic(Name=emulator.unique("bench-logs"))["TopicArn"]
        self.resources = {"table": self.table, "topic_arn": topic, "service_url": ctx.stub.url,
                          "bucket": ctx.templates.bucket, "queue_url": self.queue_url, "queue_arn": self.queue_arn}
        self.api = RuntimeApi()
        self.task_ids, self.items, self.starts = [], {}, {}  # items: task id -> {stage: item}
        self.samples = {}

    def close(self):
        self.api.close()

    def stage(self, index, name, make_event):
        """Runs `make_event(i)` for every task through one process of `name`; answers the bytes
        per measured invocation (task 0 warms the process up)."""
        self.api.reset()
        env = lambda_environment(name, self.api.address, self.ctx.endpoint, functions.configuration(self.resources),
                                 False)
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON" if self.logging["logFormat"].upper() == "JSON" else "Text"
        env["AWS_LAMBDA_LOG_LEVEL"] = self.logging["applicationLogLevel"].upper()
        log_path = os.path.join(self.ctx.logs, f"logs-{index}-{name}.log")
        if os.path.exists(log_path):
            os.remove(log_path)
        sandbox = Sandbox([os.path.join(self.ctx.rust_dir, name)], env, log_path)
        answers, measured_from = [], 0
        try:
            for task in range(self.tasks + 1):
                outcome = self.api.invoke(make_event(task), INVOKE_TIMEOUT)
                answer = outcome and outcome.json()
                if outcome is None or outcome.kind != "response" or not functions.FUNCTIONS[name].ok(answer):
                    why = self.api.init_error or (outcome and outcome.body[:300])
                    raise RuntimeError(f"logs: {name} failed on task {task}: {why!r}")
                answers.append(answer)
                if task == 0:
                    time.sleep(0.05)  # anything the runtime writes after posting the answer
                    measured_from = os.path.getsize(log_path)
            time.sleep(0.05)
        finally:
            sandbox.stop()
        with open(log_path, "rb") as log:
            log.seek(measured_from)
            text = log.read().decode(errors="replace")
        app_bytes, app_lines, emf_bytes, emf_lines = split_lines(text)
        app_sample = next((line for line in text.splitlines() if line.strip() and '"_aws"' not in line), None)
        if app_sample:
            self.samples.setdefault(name, app_sample)
        return answers, {"app_bytes": app_bytes / self.tasks, "app_lines": app_lines / self.tasks,
                         "emf_bytes": emf_bytes / self.tasks, "emf_lines": emf_lines / self.tasks}

    def item(self, task_id):
        key = {"pk": {"S": f"TASK#{task_id}"}}
        return self.db.get_item(TableName=self.table, Key=key, ConsistentRead=True)["Item"]

    def read_starts(self):
        """The start timers the dispatcher set, from the jobs queue: task id -> (body, group)."""
        deadline = time.monotonic() + 20
        while len(self.starts) < len(self.task_ids) and time.monotonic() < deadline:
            answer = self.sqs.receive_message(QueueUrl=self.queue_url, WaitTimeSeconds=1, MaxNumberOfMessages=10,
                                              MessageSystemAttributeNames=["All"])
            for message in answer.get("Messages", []):
                body = json.loads(message["Body"])
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                if body.get("step") == "start":
                    self.starts[body["task_id"]] = (body, message.get("Attributes", {}).get("MessageGroupId"))
        missing = len(self.task_ids) - len(self.starts)
        if missing:
            raise RuntimeError(f"logs: the dispatcher set no start timer for {missing} tasks")

    def callback(self, task_id):
        """The external service's callback at the URL the caller handed out."""
        url = self.ctx.stub.callback_urls[task_id]
        event = events.callback(task_id, {"status": "succeeded", "result": {"answer": 42}})
        query = urllib.parse.urlsplit(url).query
        if query:
            event["rawQueryString"] = query
            event["queryStringParameters"] = dict(urllib.parse.parse_qsl(query))
        return event

    def deadline(self, task_id):
        """The deadline timer of attempt 1 (as the dispatcher sets it for an IN_PROGRESS task)."""
        body, group = self.starts[task_id]
        due_at = int(self.items[task_id]["in_progress"]["due_at"]["N"])
        return events.sqs(self.queue_arn, [({**body, "step": "deadline", "due_at": due_at}, group)])

    def run(self):
        """Every stage of PATH in order: [{function, invocation, app_bytes, ...}]."""
        stages = []

        def record(index, name, what, make_event):
            answers, measured = self.stage(index, name, make_event)
            stages.append({"function": name, "invocation": what, **measured})
            print(f"  logs  {name:10} {what:32} app {measured['app_bytes']:7.0f} B  emf {measured['emf_bytes']:5.0f} B",
                  flush=True)
            return answers

        answers = record(0, *PATH[0], lambda i: events.post_task(functions.API_KEY, functions.PAYLOAD))
        self.task_ids = [json.loads(answer["body"])["task_id"] for answer in answers]
        for task_id in self.task_ids:
            self.items[task_id] = {"received": self.item(task_id)}
        record(1, *PATH[1], lambda i: events.stream_insert(self.items[self.task_ids[i]]["received"], self.table))
        self.read_starts()
        record(2, *PATH[2], lambda i: events.sqs(self.queue_arn, [self.starts[self.task_ids[i]]]))
        for task_id in self.task_ids:
            self.items[task_id]["in_progress"] = self.item(task_id)
        record(3, *PATH[3], lambda i: events.stream_modify(self.items[self.task_ids[i]]["in_progress"],
                                                           self.items[self.task_ids[i]]["received"], self.table))
        record(4, *PATH[4], lambda i: self.callback(self.task_ids[i]))
        record(5, *PATH[5], lambda i: self.deadline(self.task_ids[i]))
        record(6, *PATH[6], lambda i: events.get_task(functions.API_KEY, self.task_ids[i]))
        done = [self.item(task_id)["status"]["S"] for task_id in self.task_ids]
        if any(status != "DONE" for status in done):
            raise RuntimeError(f"logs: tasks not DONE at the end of the path: {done}")
        return stages


def measure(ctx):
    logging = deployed_logging(ctx.root)
    tasks = ctx.setting("logs_tasks")
    print(f"  logs: {tasks} tasks (+1 warming up), {logging}", flush=True)
    path = Path(ctx, tasks, logging)
    try:
        stages = path.run()
    finally:
        path.close()
    platform = platform_bytes_per_invocation(logging["systemLogLevel"])
    by_function, total = per_task(stages, platform)
    return {
        "tasks": tasks,
        "logging": logging,
        "platform_per_invocation": platform,
        "stages": stages,
        "functions": by_function,
        "total": total,
        "samples": path.samples,
        "rust_dir": ctx.rust_dir,
    }


def baseline(results):
    """What bench/baseline-logs.json keeps of a run besides where it came from: the report's "before"."""
    keys = ("tasks", "logging", "platform_per_invocation", "stages", "functions", "total", "samples")
    return {key: results["logs"][key] for key in keys}
