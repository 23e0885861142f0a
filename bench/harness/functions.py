"""The functions under test: how to start each (Rust binary or Python baseline), what state its
invocations need in the table (clones of the templates in seed.py), which event each invocation
gets, and what a correct answer looks like.

The two implementations are of two designs where the dispatch path is concerned: the Rust
dispatcher sets timers on the SQS jobs queue and the Rust caller reads SQS batches (issue 10);
the Python baseline is the design before it, the dispatcher publishing to an SNS topic and the
caller invoked once per SNS message. Per invocation both do the same work — the dispatcher one
batch send for a stream record, the caller one job (the Rust caller gets a one-message batch) —
so their CPU, memory and cold starts compare like for like."""

import os
import sys

import events
import seed

# Shaped like an issued key (`tfk_<8 alphanumerics>_<43 base64url>`): the fleet keeps keys as
# items in its table, and the local fleet stores this one as the development key
# (TASKFLEET_DEV_KEY); versions that read keys from the environment take TASKFLEET_API_KEYS.
API_KEY = "tfk_benchkey_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
CLIENT = "bench"
API_KEYS = f"{CLIENT}:{API_KEY}"
CALLBACK_BASE = "https://hooks.example.com/prod"
PAYLOAD = {"n": 1, "text": "héllo", "tags": ["a", "b"]}
CALLER_CONCURRENCY = 10  # serverless.yml's default (callerConcurrency)


class Function:
    """`seed(templates, dynamodb, table, n)` stores what n invocations need and answers one
    context per invocation; `event(templates, context, resources)` builds that invocation's event;
    `ok(answer)` checks the function's answer."""

    def __init__(self, name, seed, event, ok):
        self.name, self.seed, self.event, self.ok = name, seed, event, ok


def _nothing(templates, dynamodb, table, n):
    return [None] * n


def _http_ok(status):
    return lambda answer: isinstance(answer, dict) and answer.get("statusCode") == status


def _one_task(templates, dynamodb, table, n):
    """Status reads the same stored task every time."""
    return seed.store_clones(dynamodb, table, templates.received, 1) * n


def _in_progress(templates, dynamodb, table, n):
    return seed.store_clones(dynamodb, table, templates.in_progress, n)


def _received(templates, dynamodb, table, n):
    return seed.store_clones(dynamodb, table, templates.received, n)


def _new_items(templates, dynamodb, table, n):
    """Stream images of new tasks (the dispatcher reads nothing from the table)."""
    return [seed.clone(templates.received)[1] for _ in range(n)]


def _backlog(templates, dynamodb, table, n):
    """A few active tasks, so the cron has something to count."""
    seed.store_clones(dynamodb, table, templates.received, 5)
    return [None] * n


def caller_event(templates, task_id, resources):
    """One job for the caller: a one-message batch of the jobs queue (Rust), or the one SNS
    message the baseline's caller was invoked with (Python)."""
    message = templates.message_for(task_id)
    if resources.get("implementation") == "python":
        return events.sns(resources["topic_arn"], message)
    return events.sqs(resources["queue_arn"], [(message, templates.group)])


FUNCTIONS = {
    "ingest": Function("ingest", _nothing, lambda t, c, res: events.post_task(API_KEY, PAYLOAD), _http_ok(202)),
    "status": Function("status", _one_task, lambda t, task_id, res: events.get_task(API_KEY, task_id), _http_ok(200)),
    "webhook": Function("webhook", _in_progress, lambda t, task_id, res: t.callback(task_id), _http_ok(200)),
    "dispatcher": Function(
        "dispatcher",
        _new_items,
        lambda t, item, res: events.stream_insert(item, res["table"]),
        lambda answer: isinstance(answer, dict) and answer.get("batchItemFailures") == [],
    ),
    "caller": Function("caller", _received, lambda t, task_id, res: caller_event(t, task_id, res), lambda answer: (
        answer is None  # the Python baseline (SNS)
        or (isinstance(answer, dict) and answer.get("batchItemFailures") == []))),
    "metrics": Function("metrics", _backlog, lambda t, c, res: events.scheduled(), lambda answer: answer is None),
}

# The completion-webhook master key the functions are given (a fixed one: nothing here is secret).
WEBHOOK_MASTER_KEY = "whsec_YmVuY2gtbWFzdGVyLWtleS1vZi10YXNrZmxlZXQtMDE="

ORDER = ["ingest", "status", "webhook", "dispatcher", "caller", "metrics"]
# Functions of the Rust fleet with no Python counterpart to measure against: only their size is
# reported (the sweeper, issue 10; the notifier of completion webhooks, issue 12).
RUST_ONLY = ["sweeper", "notifier"]


def configuration(resources):
    """The functions' own environment (crates/adapters/src/config.rs); every function gets all
    of it, as each reads only its own."""
    return {
        "TASKS_TABLE": resources["table"],
        "JOBS_QUEUE_URL": resources["queue_url"],
        # The dispatcher's queue of delivery timers: no task of these benchmarks has a webhook_url,
        # so none is ever sent there (§11 runs the whole local fleet, which has its own).
        "DELIVERIES_QUEUE_URL": resources["queue_url"],
        "CALLER_CONCURRENCY": str(CALLER_CONCURRENCY),
        # Read only by the Python baseline's dispatcher (the design before the jobs queue).
        "DISPATCH_TOPIC_ARN": resources["topic_arn"],
        "BLOBS_BUCKET": resources["bucket"],
        "TASKFLEET_API_KEYS": API_KEYS,
        "EXTERNAL_SERVICE_URL": resources["service_url"],
        "CALLBACK_BASE_URL": CALLBACK_BASE,
        "METRICS_NAMESPACE": "TaskFleetBench",
        # Ingest and the notifier derive clients' webhook secrets from it (in AWS they read it from
        # Secrets Manager, WEBHOOK_MASTER_KEY_ARN).
        "WEBHOOK_MASTER_KEY": WEBHOOK_MASTER_KEY,
        # Read only by the Python baseline's metrics (bench/python/handlers/metrics.py).
        "STATUS_INDEX_RANGE_KEY": resources.get("status_range_key", "updated_at"),
        "STATUS_INDEX_HASH_KEY": resources.get("status_hash_key", "status"),
    }


def command(implementation, name, rust_dir, root):
    """The process Lambda would start: the Rust `bootstrap` binary, or Python's runtime loop."""
    if implementation == "rust":
        return [os.path.join(rust_dir, name)]
    venv_python = os.path.join(root, ".venv", "bin", "python")
    return [venv_python if os.path.exists(venv_python) else sys.executable,
            os.path.join(root, "bench", "python", "bootstrap.py"), name]


def python_baseline_exists(root, name):
    return os.path.exists(os.path.join(root, "bench", "python", "handlers", f"{name}.py"))
