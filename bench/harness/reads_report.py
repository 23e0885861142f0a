"""§11 of bench/RESULTS.md (issue 12): what learning a 30 s task's result costs a client —
polling every 2 s, `?wait=20`, or a completion webhook — per million tasks."""

import math
import statistics

import prices

READS_HEADING = "## 11. Learning the result: polling, ?wait and webhooks (issue 12)"
# serverless.yml's provider memorySize: the status function, the dispatcher and the notifier.
MEMORY_GB = 256 / 1024
ARCH = "arm64"
# Modelled (not measured here): a notifier invocation's billed time — its two reads and one
# write (~10 ms each in AWS) and a receiver answering in ~50 ms — and a dispatcher invocation's.
NOTIFIER_SECONDS = 0.1
DISPATCHER_SECONDS = 0.02
MODES = (("poll", "poll every 2 s"), ("wait", "`?wait=20`"), ("webhook", "webhook"))


def units(size, unit):
    return max(1, math.ceil(size / unit))


def extra(run, none):
    """What learning the result made beyond the run that learned nothing, per task."""
    def more(key):
        return max(0.0, run[key] - none[key])
    rru, wcu = units(run["task_item_bytes"], 4096), units(run["task_item_bytes"], 1024)
    stream, queue = more("stream_batches_per_task"), more("queue_batches_per_task")
    requests = run["client_requests_per_task"]
    lambda_seconds = (run["client_request_seconds_per_task"] + queue * NOTIFIER_SECONDS * (run["mode"] == "webhook")
                      + stream * DISPATCHER_SECONDS)
    parts = {
        "api_requests": requests,
        "lambda_requests": requests + stream + queue,
        "lambda_gb_seconds": lambda_seconds * MEMORY_GB,
        "read_units": more("dynamodb_reads_per_task") * rru,
        "write_units": more("dynamodb_writes_per_task") * wcu,
        "sqs_requests": more("sqs_sends_per_task") + 2 * queue,  # send; the event source's receive and delete
    }
    money = {
        "api_requests": parts["api_requests"] * prices.API_GATEWAY_HTTP_REQUEST,
        "lambda_requests": parts["lambda_requests"] * prices.LAMBDA_REQUEST,
        "lambda_gb_seconds": parts["lambda_gb_seconds"] * prices.LAMBDA_GB_SECOND[ARCH],
        "read_units": parts["read_units"] * prices.DYNAMODB_READ_UNIT,
        "write_units": parts["write_units"] * prices.DYNAMODB_WRITE_UNIT,
        "sqs_requests": parts["sqs_requests"] * prices.SQS_REQUEST,
    }
    return parts, {k: v * 1e6 for k, v in money.items()}


def _knew(run):
    seconds = run["knew_after_seconds"]
    if not seconds:
        return "–"
    return f"{statistics.median(seconds):.2f} / {max(seconds):.2f}"


def reads_section(results, root=None):
    data = results.get("reads")
    if not data:
        return f"{READS_HEADING}\n\n_(not run)_\n"
    runs, none = data["runs"], data["runs"]["none"]
    header = ["client", "requests / task", "Lambda invocations", "Lambda GB-s", "read units", "write units",
              "SQS requests", "$ per million tasks", "knew after end, s (median / max)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    totals = {}
    for mode, label in MODES:
        run = runs[mode]
        parts, money = extra(run, none)
        totals[mode] = sum(money.values())
        lines.append(f"| {label} | {parts['api_requests']:.1f} | {parts['lambda_requests']:.1f} | "
                     f"{parts['lambda_gb_seconds']:.3f} | {parts['read_units']:.1f} | {parts['write_units']:.1f} | "
                     f"{parts['sqs_requests']:.1f} | **${totals[mode]:,.2f}** | {_knew(run)} |")
    detail = ["| client | " + " | ".join(k.replace("_", " ") for k in extra(none, none)[1]) + " |",
              "|---|" + "---|" * len(extra(none, none)[1])]
    for mode, label in MODES:
        money = extra(runs[mode], none)[1]
        detail.append(f"| {label} | " + " | ".join(f"${v:,.2f}" for v in money.values()) + " |")
    cheapest = min(totals, key=totals.get)
    # A delivery alone: its own dispatcher and notifier invocations and its own queue message.
    webhook = runs["webhook"]
    alone = dict(webhook, stream_batches_per_task=none["stream_batches_per_task"] + 1,
                 queue_batches_per_task=none["queue_batches_per_task"] + 1,
                 sqs_sends_per_task=none["sqs_sends_per_task"] + 1)
    alone_money = sum(extra(alone, none)[1].values())
    return "\n".join([
        READS_HEADING,
        "",
        f"A task that takes {data['task_seconds']} s (the stub calls back that long after it accepted the job), "
        f"{data['tasks']} at once, each way on a fleet of its own; a fourth run submits the same tasks and reads "
        "nothing, and each row is what its way made beyond that run, per task: the client's requests (each an API "
        "Gateway request and a status invocation, billed for as long as it took — a `?wait` request waits), the "
        "stream and queue batches beyond (one dispatcher or queue-consumer invocation each), DynamoDB calls priced "
        f"on the task item's measured size ({none['task_item_bytes']:,} B: read units of 4 KB, write units of 1 KB), "
        f"SQS sends plus the event source's receive and delete per batch. Lambda at {MEMORY_GB * 1024:.0f} MB "
        f"{ARCH}; a notifier invocation is modelled at {NOTIFIER_SECONDS * 1000:.0f} ms and a dispatcher one at "
        f"{DISPATCHER_SECONDS * 1000:.0f} ms (not measured here). Log bytes are left out (§10: a status read or "
        "a delivery logs one line). *Knew after end*: from the callback that ended the task to the client "
        "seeing it (the GET that answered DONE, or the delivery's arrival).",
        "",
        "\n".join(lines),
        "",
        "Per part, $ per million tasks:",
        "",
        "\n".join(detail),
        "",
        f"Tasks that end together share stream batches, queue messages and invocations (here {data['tasks']} "
        f"at once); a delivery alone — its own dispatcher and notifier invocation and its own queue message — "
        f"is ${alone_money:,.2f} per million. "
        f"Cheapest: {dict(MODES)[cheapest]}. Polling pays per read, at every poll of the task's life; `?wait` "
        "makes one or two requests but is billed for the Lambda waiting in them; a webhook costs one delivery "
        "(an invocation, the task read and the attempt written, a queue message) whatever the task's length.",
        "",
    ])
