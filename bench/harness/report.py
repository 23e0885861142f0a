"""Writes bench/RESULTS.md from one run's results: tables per step, the targets of issue 6 with
a verdict each, and the cost per million tasks. Hand-written analysis lives in bench/NOTES.md and
the release-profile comparison in bench/profiles.md; both are included as they are."""

import math
import os
import platform
import subprocess
import time

import baselines
import functions
import log_report
import reads_report
import prices

STORAGE_HEADING = "## 8. Storage: partition heat and write units per task"
STORAGE_TARGETS = {1024: 11, 32 * 1024: 16}  # write units per task (table + indexes)
STORAGE_CEILING_TARGET = 10_000  # tasks/s from one client

WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
READS = ("GetItem", "Query", "Scan", "BatchGetItem")


def _run(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _machine(ctx):
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    venv_python = os.path.join(ctx.venv, "bin", "python")
    versions = _run([venv_python, "-c", "import boto3, moto, sys; print(sys.version.split()[0], boto3.__version__, "
                                        "moto.__version__)"]).split()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "rustc": _run(["rustc", "--version"]),
        "python": versions[0] if versions else "?",
        "boto3": versions[1] if len(versions) > 1 else "?",
        "moto": versions[2] if len(versions) > 2 else "?",
    }


def commit(root):
    """HEAD, and whether the Rust sources differ from it (read-only git commands)."""
    head = _run(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "-C", root, "status", "--porcelain", "--", "crates", "functions", "Cargo.toml"])
    return head + (" (the work tree's Rust sources have uncommitted changes)" if dirty else "")


def _shown(path, root):
    """A path relative to the repository when inside it."""
    relative = os.path.relpath(path, root)
    return path if relative.startswith("..") else relative


def _f(value, digits=1):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _times(ratio):
    return f"{ratio:,.1f}×" if ratio else "–"


def _mib(size):
    return "–" if size is None else f"{size / 1024 / 1024:.2f} MiB"


def _verdict(ok, how):
    return ("met" if ok else "**missed**") + (f" ({how})" if how else "")


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _include(path):
    if os.path.exists(path):
        with open(path) as text:
            return text.read().strip()
    return f"_({os.path.basename(path)} not found)_"


def _own_ratio(rust, python):
    """Python's "own" time (spawn -> answer less the time waiting on AWS) over Rust's."""
    if not python or not python.get("own_median") or not rust.get("own_median"):
        return None
    return python["own_median"] / rust["own_median"]


def _cold(results):
    rows, ratios, ready_ratios = [], {}, {}
    for name in functions.ORDER:
        row = results.get("cold", {}).get(name, {})
        rust, python = row.get("rust"), row.get("python")
        if not rust:
            continue
        ratio = python["done_median"] / rust["done_median"] if python else None
        ratio_ready = python["ready_median"] / rust["ready_median"] if python else None
        ratio_own = _own_ratio(rust, python)
        ratios[name] = (ratio, rust)
        ready_ratios[name] = (ratio, ratio_ready, rust, ratio_own)
        rows.append([
            name, rust["n"], _f(rust["ready_median"]), _f(rust["ready_max"]), _f(rust["done_median"]),
            _f(rust["done_max"]), _f(rust.get("own_median")), _f(python and python["ready_median"]),
            _f(python and python["done_median"]), _f(python and python["done_max"]),
            _f(python and python.get("own_median")), _f(ratio_ready) + "×" if python else "–",
            _f(ratio) + "×" if python else "–", _f(ratio_own) + "×" if ratio_own else "–",
        ])
    header = ["function", "reps", "Rust ready med", "Rust ready max", "Rust done med", "Rust done max",
              "Rust own med", "Python ready med", "Python done med", "Python done max", "Python own med",
              "ready ratio", "done ratio", "own ratio"]
    return _table(header, rows), ratios, ready_ratios


def _warm(results):
    rows, ratios = [], {}
    for name in functions.ORDER:
        row = results.get("warm", {}).get(name, {})
        rust, python = row.get("rust"), row.get("python")
        if not rust:
            continue
        py = python or {}
        ratio = _cpu(python) / _cpu(rust) if python and _cpu(rust) else None
        user_ratio = py["cpu_user_ms"] / rust["cpu_user_ms"] if python and rust.get("cpu_user_ms") else None
        ratios[name] = (ratio, user_ratio)
        rows.append([
            name, rust["n"], _f(_cpu(rust), 3), _f(rust.get("cpu_user_ms"), 2), _f(rust.get("cpu_system_ms"), 2),
            _f(rust["wall_p50"], 2), _f(rust["wall_p99"], 2), _f(python and _cpu(python), 3),
            _f(py.get("cpu_user_ms"), 2), _f(py.get("cpu_system_ms"), 2), _f(py.get("wall_p50"), 2),
            _f(py.get("wall_p99"), 2), _times(ratio), _times(user_ratio),
        ])
    header = ["function", "n", "Rust CPU/inv", "user", "sys", "wall p50", "wall p99", "Python CPU/inv", "user", "sys",
              "wall p50", "wall p99", "CPU ratio", "user-CPU ratio"]
    return _table(header, rows), ratios


def _cpu(measured):
    """CPU ms per invocation: schedstat's nanoseconds when trustworthy, else rusage's ticks."""
    return measured["cpu_sched_ms"] if measured.get("cpu_sched_ms") is not None else measured["cpu_rusage_ms"]


def _memory_and_size(results):
    rows, peak, largest_zip = [], 0, 0
    size = results.get("size", {}).get("functions", {})
    for name in list(functions.ORDER) + [name for name in functions.RUST_ONLY if name in size]:
        warm = results.get("warm", {}).get(name, {})
        rust, python = warm.get("rust"), warm.get("python")
        sized = size.get(name, {})
        zips = [sized.get("zip_x86_64"), sized.get("zip_arm64")]
        largest_zip = max([largest_zip] + [z for z in zips + [sized.get("binary_zipped")] if z])
        if rust:
            peak = max(peak, rust["hwm_kb"])
        rows.append([
            name, _f(rust and rust["hwm_kb"] / 1024), _f(python and python["hwm_kb"] / 1024),
            _mib(sized.get("binary")), _mib(sized.get("binary_zipped")), _mib(zips[0]), _mib(zips[1]),
        ])
    header = ["function", "Rust peak RSS (MiB)", "Python peak RSS (MiB)", "binary measured here", "…zipped",
              "cargo lambda zip x86_64", "cargo lambda zip arm64"]
    return _table(header, rows), peak, largest_zip


def _calls(scenario):
    """{operation: calls} of one scenario made for its tasks: without the plumbing and the
    scheduled runs."""
    return {k: v for k, v in scenario["counts"].items() if not _plumbing(k) and not _scheduled(k)}


def _plumbing(key):
    """What Lambda's event source mappings do (stream reads; the jobs queue's receives and
    deletes, which the report counts apart: `_queue_requests`)."""
    service, operation = key.split(":")
    return service == "dynamodbstreams" or (service == "sqs" and operation.startswith(("Receive", "Delete")))


def _queue_requests(scenario):
    """The jobs queue's billed requests of the event source mapping: receives that carried
    messages (one per caller invocation) and deletes. Idle polls are left out (they cost per
    poller and minute, not per task: in AWS a long poll of up to 20 s)."""
    deletes = sum(v for k, v in scenario["counts"].items() if k in ("sqs:DeleteMessageBatch", "sqs:DeleteMessage"))
    return scenario.get("queue_batches", 0), deletes


def _messaging(calls):
    """Calls that send messages: SNS publishes (the design before the jobs queue) and SQS sends."""
    return sum(v for k, v in calls.items() if k.startswith(("sns:Publish", "sqs:Send")))


def _scheduled(key):
    """Calls of the cron functions (metrics, sweeper): they run on a clock, whatever the tasks;
    their cost per run is §7. Reads of the index happen nowhere else."""
    service, operation = key.split(":")
    return service == "monitoring" or (service == "dynamodb" and operation in ("Query", "Scan"))


def _requests(results):
    sections, summary = [], {}
    data = results.get("requests", {})
    for label, scenario in data.get("scenarios", {}).items():
        n = scenario["tasks"]
        fleet_calls = _calls(scenario)
        rows = [[op, count, _f(count / n, 2)] for op, count in sorted(fleet_calls.items())]
        rows.append(["(stream batches = dispatcher invocations)", scenario["stream_batches"],
                     _f(scenario["stream_batches"] / n, 2)])
        if "queue_batches" in scenario:
            receives, deletes = _queue_requests(scenario)
            timers = ", ".join(f"{k} {v}" for k, v in sorted(scenario.get("queue_received", {}).items())) or "none"
            rows.append([f"(jobs-queue batches received = caller invocations; timers: {timers})", receives,
                         _f(receives / n, 2)])
            rows.append(["(jobs-queue deletes by the event source)", deletes, _f(deletes / n, 2)])
        plumbing = {k: v for k, v in scenario["counts"].items() if _plumbing(k)}
        local = ", ".join(f"{k} {v}" for k, v in sorted(plumbing.items()) if not k.startswith("sqs:Delete")) or "none"
        cron = {k: v for k, v in scenario["counts"].items() if _scheduled(k)}
        scheduled = ", ".join(f"{k} {v}" for k, v in sorted(cron.items())) or "none"
        final = ", ".join(f"{v} {k}" for k, v in scenario["final"].items())
        sections.append(
            f"**{label}** — {n} tasks in {scenario['seconds']:.1f} s; final: {final}; jobs sent to the "
            f"external service per task: {scenario['jobs_per_task']:.2f}\n\n"
            + _table(["AWS call", "calls", "per task"], rows)
            + f"\n\nEvent source plumbing not counted above (stream reads are free in AWS; SQS receives "
              f"include the local pollers' idle 1 s polls): {local}.\n"
            + f"Scheduled runs during the scenario (per run, not per task; §7): {scheduled}.\n"
        )
        writes = sum(v for k, v in fleet_calls.items() if k.split(":")[1] in WRITES and k.startswith("dynamodb"))
        summary[label] = {"writes": writes / n, "sns": _messaging(fleet_calls) / n, "scenario": scenario}
    return "\n".join(sections), summary


def _billed_ms(measured, jobs=1):
    """Billed duration at 128 MB: the wall time measured here (moto-bound I/O plus CPU at a full
    core) plus the CPU time stretched to 128 MB's share of a vCPU, rounded up to 1 ms. An
    invocation of `jobs` jobs at once (a batch of the jobs queue) waits about one job's wall time
    and spends each job's CPU."""
    cpu = _cpu(measured)
    stretch = prices.FULL_VCPU_MB / 128 - 1
    return math.ceil(measured["wall_p50"] + jobs * cpu * stretch)


def _cost(results, summary):
    """Cost per million tasks, happy path in a burst, x86_64 at 128 MB."""
    scenario = summary.get("happy path, burst", {}).get("scenario")
    if not scenario:
        return "_(no requests-per-task run)_", None
    n = scenario["tasks"]
    calls = _calls(scenario)
    per = {k: v / n for k, v in calls.items()}
    puts = per.get("dynamodb:PutItem", 0)
    updates = per.get("dynamodb:UpdateItem", 0)
    writes = sum(v for k, v in per.items() if k.startswith("dynamodb") and k.split(":")[1] in WRITES)
    reads = sum(v for k, v in per.items() if k.startswith("dynamodb") and k.split(":")[1] in READS)
    # Every task write also writes the keys-only status index: a new item adds one index entry,
    # a status change moves it (delete + put, two index writes).
    index_writes = puts + 2 * updates
    sns = sum(v for k, v in per.items() if k.startswith("sns:Publish"))
    receives, deletes = _queue_requests(scenario)
    sqs = sum(v for k, v in per.items() if k.startswith("sqs:Send")) + (receives + deletes) / n
    invocations = {
        "ingest": 1,
        "dispatcher": scenario["stream_batches"] / n,
        # One invocation per batch of the jobs queue; before it, one per SNS message (= job).
        "caller": receives / n if "queue_batches" in scenario else scenario["jobs_per_task"],
        "webhook": 1,
    }
    # Timers per caller invocation (a batch's jobs run at once).
    timers = sum(scenario.get("queue_received", {}).values())
    per_batch = {"caller": timers / receives if receives and timers else 1}
    rows = []

    def line(item, units, price):
        cost = units * price * 1e6
        rows.append([item, _f(units, 2), f"${price * 1e6:,.3f} per M", f"${cost:,.2f}"])
        return cost

    total = line("API Gateway HTTP API requests (POST /tasks, callback)", 2, prices.API_GATEWAY_HTTP_REQUEST)
    total += line("DynamoDB write units, table", writes, prices.DYNAMODB_WRITE_UNIT)
    total += line("DynamoDB write units, `by_status` index (estimate)", index_writes, prices.DYNAMODB_WRITE_UNIT)
    total += line("DynamoDB read units", reads, prices.DYNAMODB_READ_UNIT)
    if sns:
        total += line("SNS publish requests", sns, prices.SNS_PUBLISH_REQUEST)
    total += line("SQS requests (timers sent; batches received and deleted by the event source)", sqs,
                  prices.SQS_REQUEST)
    total += line("Lambda requests", sum(invocations.values()), prices.LAMBDA_REQUEST)
    shared = total
    gb_s = {}
    for implementation in ("rust", "python"):
        seconds = 0.0
        for name, count in invocations.items():
            measured = results.get("warm", {}).get(name, {}).get(implementation)
            if measured is None:
                seconds = None
                break
            seconds += count * _billed_ms(measured, per_batch.get(name, 1)) / 1000
        gb_s[implementation] = None if seconds is None else seconds * 128 / 1024
    costs = {}
    for implementation, value in gb_s.items():
        if value is None:
            continue
        costs[implementation] = shared + value * prices.LAMBDA_GB_SECOND["x86_64"] * 1e6
        rows.append([f"Lambda GB-s at 128 MB, {implementation} (model below)", _f(value, 4),
                     f"${prices.LAMBDA_GB_SECOND['x86_64'] * 1e6:,.2f} per M",
                     f"${value * prices.LAMBDA_GB_SECOND['x86_64'] * 1e6:,.2f}"])
    text = _table(["per task", "units", "price", "per million tasks"], rows)
    for implementation, cost in costs.items():
        text += f"\n\n**Total per million tasks, {implementation}: ${cost:,.2f}**"
    return text, costs


def write(path, results, ctx, command):
    machine = _machine(ctx)
    now = results.get("generated_at") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    binaries = _shown(ctx.rust_dir, ctx.root) + (f", built from {ctx.built_from}" if ctx.built_from else "")
    cold_table, cold, cold_ready = _cold(results)
    warm_table, warm = _warm(results)
    memory_table, peak_kb, largest_zip = _memory_and_size(results)
    requests_text, summary = _requests(results)
    cost_text, costs = _cost(results, summary)
    throughput = results.get("throughput")
    cron = results.get("cron", {})

    targets = []
    if cold:
        worst_ratio = min((r for r, _ in cold.values() if r), default=None)
        worst_init = min((r for _, r, _, _ in cold_ready.values() if r), default=None)
        worst_own = min((r for _, _, _, r in cold_ready.values() if r), default=None)
        worst_ready = max(rust["ready_median"] for _, rust in cold.values())
        targets.append(["Rust cold start ≥ 20× faster than Python (median, spawn → answer)",
                        f"lowest ratio {_f(worst_ratio)}×", _verdict(worst_ratio and worst_ratio >= 20,
                        None if not worst_ratio or worst_ratio >= 20 else f"short by {_f(20 - worst_ratio)}×")])
        targets.append(["… the same for init alone (median, spawn → ready)", f"lowest ratio {_f(worst_init)}×",
                        _verdict(worst_init and worst_init >= 20, None)])
        targets.append(["… the same less the time waiting on AWS (median, spawn → answer − AWS calls)",
                        f"lowest ratio {_f(worst_own)}×", _verdict(worst_own and worst_own >= 20, None)])
        targets.append(["Rust ≤ 15 ms to ready (median)", f"slowest {_f(worst_ready)} ms",
                        _verdict(worst_ready <= 15, None if worst_ready <= 15 else f"+{_f(worst_ready - 15)} ms")])
    if warm:
        lowest = min((r for r, _ in warm.values() if r), default=None)
        lowest_user = min((u for _, u in warm.values() if u), default=None)
        targets.append(["CPU per warm invocation ≥ 5× less", f"lowest ratio {_f(lowest)}× (user CPU only: "
                        f"{_f(lowest_user)}×)", _verdict(lowest and lowest >= 5, None)])
    if peak_kb:
        targets.append(["peak RSS ≤ 16 MB per function", f"largest {_f(peak_kb / 1024)} MiB",
                        _verdict(peak_kb <= 16 * 1024, None)])
    if largest_zip:
        targets.append(["zip ≤ 4 MB", f"largest {_mib(largest_zip)}", _verdict(largest_zip <= 4 * 1024 * 1024, None)])
    for label, values in summary.items():
        if label.startswith("happy"):
            ok = values["writes"] <= 3 and values["sns"] <= 0.1
            targets.append([f"≤ 3 DynamoDB writes + ≤ 0.1 SNS calls per task ({label}; SNS is SQS sends since "
                            "issue 10)", f"{_f(values['writes'], 2)} writes, {_f(values['sns'], 2)} sends",
                            _verdict(ok, None)])
    if throughput:
        targets.append(["end to end ≥ 0.7 of the emulator-bound limit", f"{_f(throughput['ratio'], 2)}",
                        _verdict(throughput["ratio"] >= 0.7, None)])
    flat = _cron_flat(cron)
    if flat is not None:
        targets.append(["cron cost flat in stored tasks", "see §7", _verdict(flat, None)])
    targets += _storage_targets(results)

    parts = [
        "# Benchmarks: taskfleet (Rust) against the Python baseline",
        "",
        f"Generated by `{command}` on {now} in {results.get('seconds', 0):.0f} s. Numbers come from one run on one "
        "shared, noisy machine: compare the ratios within this run, not absolute times across runs.",
        "",
        _table(["machine", ""], [
            ["CPU", f"{machine['cpu']} ({machine['cores']} cores)"], ["kernel", machine["kernel"]],
            ["Rust", machine["rustc"]], ["Python (baseline)", f"{machine['python']}, boto3 {machine['boto3']}"],
            ["AWS emulator", f"moto server {machine['moto']} on 127.0.0.1: scripts/emulator.py (atomic DynamoDB, "
                             "fair SQS queues) through bench/harness/emulator_server.py (moto's long queues "
                             "cheap per message)"],
            ["repository at run time", results.get("commit") or commit(ctx.root)],
            ["Rust binaries", binaries],
        ]),
        "",
        "## Targets (issue 6)",
        "",
        _table(["target", "measured", "verdict"], targets),
        "",
        "Why a target is missed, and what each number means: see [Notes](#notes).",
        "",
        "## 1. Cold start (ms)",
        "",
        "A fresh process per repetition, started by the harness's Runtime API emulator with the Lambda "
        "environment and one real event; *ready* = spawn → first `GET /next` (init done), *done* = spawn → "
        "answer posted. The Python baseline's imports and boto3 clients are part of its init. *own* = the "
        "same again with the AWS endpoint behind a timing proxy, spawn → answer less the time some AWS call "
        "was waiting on the emulator: the baseline is the earlier design and makes fewer calls (its ingest "
        "reads keys from the environment and writes once; the Rust ingest reads the key item and, once per "
        "instance, the status index's layout item, then writes the payload and the task), so *own* compares what each process spends "
        "itself (the caller's wait on the stub service is in both).",
        "",
        cold_table,
        "",
        "## 2. Warm cost",
        "",
        "One process, 10 unmeasured warm-up invocations, then n measured ones; times in ms per invocation. "
        "CPU = on-CPU time of all the process's threads (`/proc/<pid>/task/*/schedstat`, ns); user / sys = "
        "its utime / stime delta / n (`/proc/<pid>/stat`, what getrusage reports, 10 ms ticks summed over "
        "the run). Wall = event handed out → answer posted, mostly the emulator's latency, the same for both: "
        "compare CPU.",
        "",
        warm_table,
        "",
        "## 3. Memory and size",
        "",
        "Peak RSS is VmHWM of the warm-run process (after its n+11 invocations). Zips are what "
        "`cargo lambda build --release --output-format zip` writes.",
        "",
        memory_table,
        "",
        "## 4. Release profile",
        "",
        _include(os.path.join(ctx.root, "bench", "profiles.md")),
        "",
        "## 5. AWS requests per task",
        "",
        "The local fleet (`taskfleet-local`) with `AWS_ENDPOINT_URL` at a counting proxy in front of the "
        "emulator. Counted between the first POST and the moment the last task is terminal, every timer it "
        "set has fired (callback timeout "
        f"{results.get('requests', {}).get('callback_timeout_seconds', '?')} s here, so each started attempt's "
        "deadline timer is counted: in AWS it fires 15 minutes later and finds the task done) and the fleet "
        "is quiet.",
        "",
        requests_text,
        f"### Cost per million tasks (happy path, burst; prices: {prices.PRICES_AS_OF})",
        "",
        cost_text,
        "",
        "Lambda duration model: billed ms = measured warm wall p50 + CPU ms × (1769/128 − 1), rounded up — "
        "at 128 MB a function gets 128/1769 of a vCPU, so its CPU work takes ~13.8× longer than measured "
        "here on a full core; a caller invocation of a batch of k timers is billed one job's wall time plus "
        "k jobs' CPU. The Python line prices the same invocations run by the baseline's code (per-job warm "
        "cost from §2); the baseline itself is the design before the jobs queue (one caller invocation per "
        "SNS message), so it is a language comparison, not a design one. Status polls are extra, per poll: "
        "1 API Gateway request, 1 Lambda request, 1 read unit. The metrics cron is per run, not per task (§7). "
        "The jobs queue's idle polls (Lambda's pollers, 20 s long polls) cost per minute, not per task: not "
        "here.",
        "",
        "## 6. Throughput",
        "",
        _throughput(throughput),
        "",
        "## 7. Cron cost against stored tasks",
        "",
        _cron(cron),
        "",
        storage_section(results, ctx.root),
        timers_section(results, ctx.root),
        log_report.logs_section(results, ctx.root),
        reads_report.reads_section(results, ctx.root),
        notes_section(ctx.root),
    ]
    if results.get("failures"):
        parts += ["## Failed steps", "", *[f"- {f}" for f in results["failures"]], ""]
    with open(path, "w") as out:
        out.write("\n".join(parts))


def _throughput(t):
    if not t:
        return "_(not run)_"
    rows = [
        ["tasks (finished / submitted)", f"{t['finished']} / {t['tasks']}"],
        ["client concurrency", t["concurrency"]],
        ["end to end", f"{_f(t['seconds'], 2)} s → **{_f(t['tasks_per_s'])} tasks/s**"],
        ["emulator raw PutItem rate (before / after / mean)",
         f"{_f(t['raw_before'])} / {_f(t['raw_after'])} / {_f(t['raw_puts_per_s'])} per s"],
        ["emulator-bound limit = raw rate / 3 writes per task", f"{_f(t['limit_tasks_per_s'])} tasks/s"],
        ["achieved / limit", f"**{_f(t['ratio'], 2)}**"],
        ["emulator CPU per raw PutItem / its busy share of a core",
         f"{_f(t.get('moto_cpu_ms_per_put'), 2)} ms / {_f(t.get('raw_moto_busy'), 2)}"],
        ["emulator CPU per task end to end / its busy share of a core",
         f"{_f(t.get('moto_cpu_ms_per_task'), 2)} ms / {_f(t.get('moto_busy'), 2)}"],
        ["a task costs the emulator, in raw PutItems (k)", _f(_puts_per_task(t), 1)],
        ["ratio the emulator's CPU predicts: 3 / k", _f(3 / _puts_per_task(t), 2) if _puts_per_task(t) else "–"],
        ["fleet (Rust, all functions + local plumbing) CPU per task", f"{_f(t.get('fleet_cpu_ms_per_task'), 2)} ms"],
    ]
    return ("End to end = first POST /tasks → last callback answered 200, through the whole local fleet "
            "(front → ingest → stream → dispatcher → jobs queue (SQS) → caller → external stub → webhook).\n\n"
            + _table(["", ""], rows))


def _puts_per_task(t):
    """What one task costs the emulator's CPU, in raw PutItems."""
    if not t.get("moto_cpu_ms_per_put"):
        return None
    return t["moto_cpu_ms_per_task"] / t["moto_cpu_ms_per_put"]


def _cron_flat(cron):
    by_function = {}
    for run in cron.get("runs", []):
        by_function.setdefault(run["function"], []).append(run)
    if not by_function:
        return None
    for runs in by_function.values():
        calls = {sum(r["calls"].values()) for r in runs}
        scanned = {r["scanned"] for r in runs}
        if len(calls) > 1 or len(scanned) > 1 or not all(r["ok"] for r in runs):
            return False
    return True


def _cron(cron):
    if not cron:
        return "_(not run)_"
    rows = []
    for run in cron.get("runs", []):
        calls = ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(run["calls"].items()))
        rows.append([run["function"], f"{run['stored_finished']:,}", f"{run['active']} + 2",
                     "yes" if run["ok"] else "NO", sum(run["calls"].values()), calls, run["scanned"],
                     _f(run["invocation_ms"])])
    text = ("Each size: a fresh table with 6 active tasks (3 RECEIVED, 3 IN_PROGRESS), 2 finished within the "
            "metrics window, and N finished two hours ago (inserted with BatchWriteItem). One cold run of each "
            "cron function through the Runtime API emulator, its calls counted by the proxy; *items read* is "
            "the sum of DynamoDB's ScannedCount (what a Query is billed on).\n\n")
    header = ["function", "old finished tasks stored", "active + recently finished", "ok", "calls", "which",
              "items read", "invocation ms (moto)"]
    text += _table(header, rows)
    if cron.get("missing"):
        text += (f"\n\n{', '.join(cron['missing'])}: no release binary in this run (functions/sweeper is being "
                 "added by issue 3); the harness runs it the same way once it exists.")
    return text


# ---- §8 storage ------------------------------------------------------------------------------


def _storage_targets(results):
    rows = []
    for run in results.get("storage", {}).get("runs", []):
        target = STORAGE_TARGETS.get(run["bytes"])
        wcu = run["analysis"]["total"]["wcu_per_task"]
        if target:
            rows.append([f"≤ {target} write units per task at {run['label']} (table + indexes)", _f(wcu, 2),
                         _verdict(wcu <= target, None)])
    runs = results.get("storage", {}).get("runs", [])
    if runs:
        ceilings = [r["analysis"]["ceiling_tasks_per_s"] for r in runs]
        lowest = min((c for c in ceilings if c), default=None)
        rows.append([f"≥ {STORAGE_CEILING_TARGET:,} tasks/s from one client (hottest shared key ≤ "
                     f"{1000 / STORAGE_CEILING_TARGET:g} write units per task)",
                     f"{_f(lowest, 0)} tasks/s" if lowest else "no shared key",
                     _verdict(lowest is None or lowest >= STORAGE_CEILING_TARGET, "see §8")])
    return rows


def _key(value, one_task=False, width=24):
    if value is None:
        return "–"
    text = value if len(value) <= width else value[: width - 1] + "…"
    return f"`{text}`" + (" (one task's item)" if one_task else "")


def _by_label(runs):
    return {run["label"]: run for run in runs or []}


def _storage_summary(now, before):
    labels = [label for label in ("1 KiB", "32 KiB") if label in now or label in before]
    header = ["per task"]
    for label in labels:
        header += [f"before, {label}", f"now, {label}"]
    header.append("target")

    def cells(get, digits=2):
        row = []
        for label in labels:
            for side in (before, now):
                run = side.get(label)
                value = get(run) if run else None
                row.append(value if isinstance(value, str) else _f(value, digits))
        return row

    def total(field):
        return lambda run: run["analysis"]["total"][field]

    def ceiling(run):
        value = run["analysis"]["ceiling_tasks_per_s"]
        return f"{value:,.0f} ({run['analysis']['ceiling_set_by']})" if value else "none"

    def hottest(run):
        tallies = [run["analysis"]["table"]] + run["analysis"]["indexes"]
        shared = max(tallies, key=lambda t: t["shared_hottest_wcu_per_task"])
        if not shared["shared_hottest_key"]:
            return "–"
        return (f"{_f(shared['shared_hottest_wcu_per_task'], 3)} WCU / "
                f"{_f(shared['shared_hottest_writes_per_task'], 3)}"
                f" writes: {shared['name']} {_key(shared['shared_hottest_key'])}")

    def cost(field):
        return lambda run: run["cost_per_million"][field]

    wcu_target = " / ".join(f"≤ {v} at {k // 1024} KiB" for k, v in STORAGE_TARGETS.items())
    rows = [
        ["DynamoDB write units (table + indexes)", *cells(total("wcu_per_task")), wcu_target],
        ["DynamoDB writes (table + indexes)", *cells(total("writes_per_task")), ""],
        ["… of the table", *cells(lambda r: r["analysis"]["table"]["writes_per_task"]), ""],
        ["hottest shared key: write units / writes per task", *cells(hottest), "≤ 0.1"],
        ["ceiling from one client (1,000 WCU/s per key value), tasks/s", *cells(ceiling),
         f"≥ {STORAGE_CEILING_TARGET:,}"],
        ["no-op writes (billed, no stream record in AWS)",
         *cells(lambda r: r["analysis"]["noop_writes"] / r["tasks"]), ""],
        ["refused conditional writes (billed, not in the stream)",
         *cells(lambda r: r["refused_conditional_writes_per_task"]), ""],
        ["S3 requests, PUT class / GET class",
         *cells(lambda r: f"{_f(r['s3_put_per_task'], 2)} / {_f(r['s3_get_per_task'], 2)}"), ""],
        ["$ per million tasks, DynamoDB writes", *cells(cost("dynamodb_writes")), ""],
        ["$ per million tasks, S3 requests", *cells(cost("s3_requests"), 3), ""],
        ["**$ per million tasks, storage writes + S3**", *cells(cost("total")), ""],
    ]
    return _table(header, rows)


def _storage_detail(run):
    analysis = run["analysis"]
    rows = []
    for t in [analysis["table"]] + analysis["indexes"]:
        ops = ", ".join(f"{k} {v / run['tasks']:.2f}" for k, v in sorted(t["operations"].items())) or "–"
        rows.append([
            "table" if t["kind"] == "table" else f"{t['name']} ({t['kind']})",
            t["detail"], _f(t["writes_per_task"], 2), _f(t["wcu_per_task"], 2), ops, t["key_values"],
            _key(t["hottest_key"], t["hottest_key_one_task"]), _f(t["hottest_writes_per_task"], 3),
            _key(t["shared_hottest_key"]),
            _f(t["shared_hottest_wcu_per_task"], 3) if t["shared_hottest_key"] is not None else "–",
            _f(t["ceiling_tasks_per_s"], 0) if t["ceiling_tasks_per_s"] else "none",
        ])
    total = analysis["total"]
    rows.append(["**total**", "", f"**{_f(total['writes_per_task'], 2)}**", f"**{_f(total['wcu_per_task'], 2)}**",
                 "", "", "", "", "", "", ""])
    header = ["", "keys, projection", "writes", "WCU", "writes by kind", "key values", "hottest key (writes)",
              "its writes", "hottest shared key (WCU)", "its WCU", "ceiling tasks/s"]
    records = ", ".join(f"{k} {v}" for k, v in sorted(analysis["records"].items()))
    return (f"**{run['label']}** — {run['tasks']} tasks from one client ({run['concurrency']} connections) in "
            f"{run['seconds']:.1f} s; {run['stream_records']} stream records ({records}); per task:\n\n"
            + _table(header, rows))


def storage_section(results, root):
    data = results.get("storage")
    baseline = baselines.load(root, "storage")
    if not data and not baseline:
        return f"{STORAGE_HEADING}\n\n_(not run)_\n"
    now = _by_label(data and data.get("runs"))
    before = _by_label(baseline and baseline.get("runs"))
    parts = [
        STORAGE_HEADING,
        "",
        "The whole local fleet, one client, N tasks per payload size: a random payload (JSON `{\"data\": "
        "\"<base64 of random bytes>\"}`, exactly 1 KiB or 32 KiB serialized) and a random result of the same "
        "size from the external-service stub. When every task is DONE, the table's stream records and its "
        "DescribeTable are replayed with DynamoDB's billing rules (bench/harness/heat.py): table writes are "
        "billed on the larger of the old and new image per started KB; an index is written only when its "
        "keys are all present (sparse), twice when its key moves (delete + put), once when a projected "
        "attribute changes; an index entry is its projected attributes + 100 bytes. Write units per task "
        "(WCU) are DynamoDB on-demand write request units; each is "
        f"${prices.DYNAMODB_WRITE_UNIT * 1e6:,.3f} per million. S3 requests are counted at the emulator "
        f"proxy: PUT/COPY/POST/LIST ${prices.S3_PUT_REQUEST * 1e6:,.0f} and GET "
        f"${prices.S3_GET_REQUEST * 1e6:,.1f} per million.",
        "",
        "*Heat*: a partition key value takes at most 1,000 write units per second. The ceiling is 1,000 / "
        "(write units per task of the hottest *shared* key value): a status, a client id, any item that is "
        "not a task's own. A task's own item takes a fixed number of writes over its life whatever the rate "
        "(the table's hottest key, per task = its writes / N): reported, but no ceiling. The emulator "
        "emits a MODIFY record for a write that changes nothing, where DynamoDB emits none but bills the "
        "write: such writes are billed on the table above and counted apart; conditional writes whose "
        "condition failed are billed by DynamoDB and show in no stream: counted at the proxy, not in the "
        "write units. TTL deletions are free and not in a local run (the emulator never expires items).",
        "",
    ]
    if data:
        parts += [f"*This run*: {results.get('generated_at', '?')}, {_provenance(results, data, root)}.", ""]
    if baseline:
        parts += [f"*Before*: bench/baseline-storage.json — {baseline.get('note') or 'the layout before'} "
                  f"(measured {baseline.get('generated_at', '?')}, {_provenance(baseline, baseline, root)}).", ""]
    parts += [_storage_summary(now, before), ""]
    same = bool(data and baseline) and baseline.get("generated_at") == results.get("generated_at")
    for title, runs in (("This run", now), ("Before", before)):
        if not runs or (title == "Before" and same):  # the baseline was taken from this very run
            continue
        parts += [f"#### {title}: per table and index", ""]
        for run in runs.values():
            parts += [_storage_detail(run), ""]
    return "\n".join(parts)


def _provenance(results, data, root):
    built = results.get("built_from")
    return (f"fleet binary {_shown(data.get('fleet_binary') or '?', root)}"
            + (f" built from {built}" if built else f", repository at {results.get('commit', '?')}"))


def splice_section(report, heading, section):
    """`report` with the section under `heading` replaced by `section`, or `section` put before
    the notes when the report has none yet."""
    section = section.rstrip("\n") + "\n\n"
    start = report.find(heading)
    if start >= 0:
        end = report.find("\n## ", start + len(heading))
        return report[:start] + section + (report[end + 1 :] if end >= 0 else "")
    notes = report.find("\n## Notes")
    at = notes + 1 if notes >= 0 else len(report)
    return report[:at] + section + report[at:]


NOTES_HEADING = "## Notes"


def notes_section(root):
    """The hand-written analysis, bench/NOTES.md, as it is now."""
    return "\n".join([NOTES_HEADING, "", _include(os.path.join(root, "bench", "NOTES.md")), ""])


SECTIONS = {
    "storage": (lambda: STORAGE_HEADING, lambda results, root: storage_section(results, root)),
    "timers": (lambda: TIMERS_HEADING, lambda results, root: timers_section(results, root)),
    "logs": (lambda: log_report.LOGS_HEADING, log_report.logs_section),
    "reads": (lambda: reads_report.READS_HEADING, reads_report.reads_section),
}


def splice(path, results, root, steps):
    """Rewrites only the sections of `steps` (say the timers step run alone) of an existing
    report, in order, and the notes (bench/NOTES.md as it is now), keeping everything else."""
    with open(path) as text:
        report = text.read()
    for step in steps:
        heading, make = SECTIONS[step]
        report = splice_section(report, heading(), make(results, root))
    if NOTES_HEADING in report:
        report = splice_section(report, NOTES_HEADING, notes_section(root))
    with open(path, "w") as out:
        out.write(report)


def splice_storage(path, results, root):
    splice(path, results, root, ["storage"])


# ---- §9 timers (issue 10) ----------------------------------------------------------------------

TIMERS_HEADING = "## 9. Timers and the batched caller (issue 10)"
ISSUE_BACKLOG = 10_000  # due retries issue 10 asks about
INVOCATIONS_TARGET = 0.2  # caller invocations per task in a burst
# Lambda's SQS event source: five concurrent batches at first, then up to 300 more per minute
# (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html).
ESM_START, ESM_PER_MINUTE = 5, 300


def aws_drain_seconds(tasks, accept_seconds, max_concurrency, each, start=ESM_START, per_minute=ESM_PER_MINUTE):
    """Seconds to hand over `tasks` due jobs when every invocation hands `each` at once, each job
    takes `accept_seconds`, and the event source's concurrent invocations grow from `start` by
    `per_minute` a minute up to `max_concurrency`: the rate is concurrency × each / accept."""
    rate_per_invocation = each / accept_seconds
    grow = per_minute / 60.0  # invocations per second
    ramp = max(0.0, (max_concurrency - start) / grow)
    # jobs handed over during the whole ramp: ∫ (start + grow t) dt × rate_per_invocation
    during_ramp = (start * ramp + grow * ramp * ramp / 2) * rate_per_invocation
    if tasks <= during_ramp:
        # solve (grow/2) t² + start t = tasks / rate_per_invocation
        a, b, c = grow / 2, start, -tasks / rate_per_invocation
        return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a) if a else -c / b
    return ramp + (tasks - during_ramp) / (max_concurrency * rate_per_invocation)


def _burst_rows(burst):
    n = burst["tasks"]
    kinds = burst.get("kinds", {})
    shares = burst.get("shares", {})
    received = burst.get("received", {})
    rows = [
        ["tasks (POSTed by clients at once)", f"{n} ({burst['clients']} clients, {_f(burst['submit_seconds'], 1)} s "
                                              "to submit)"],
        ["caller invocations, all", f"{burst['invocations']} → **{_f(burst['invocations'] / n, 3)} per task**"],
        ["… batches of start timers / of deadline timers / of both",
         f"{kinds.get('start', '–')} / {kinds.get('deadline', '–')} / {kinds.get('mixed', '–')}"],
        ["… the starts' share (a mixed batch split by what it held)",
         f"{_f(shares.get('start'), 1)} → **{_f(shares.get('start', 0) / n, 3)} per task**"],
        ["… the deadline timers' share", f"{_f(shares.get('deadline'), 1)} → {_f(shares.get('deadline', 0) / n, 3)} "
                                         "per task"],
        ["timers received (start / deadline)", f"{received.get('start', 0)} / {received.get('deadline', 0)}"],
        ["timers per invocation (mean)", _f(sum(received.values()) / max(1, burst["invocations"]), 2)],
        ["jobs sent to the service", burst["jobs"]],
        ["timers left on the queue at the end", burst["timers_left"]],
    ]
    return rows


def _accept_columns(now, before):
    def row(label, get, digits=2):
        return [label] + [_f(get(side), digits) if side and get(side) is not None else "–" for side in (now, before)]

    return [
        ["event source batch × jobs at once per invocation (pollers)"]
        + [f"{side['batch']} × {side['each']} ({side['pollers']})" if side else "–" for side in (now, before)],
        ["due retries (handed over)"] + [f"{side['tasks']} ({side['handed_over']})" if side else "–"
                                         for side in (now, before)],
        row("jobs handed over per second, λ", lambda x: x["rate"], 1),
        row("jobs per invocation, b", lambda x: x["jobs_per_invocation"]),
        row("invocation, batch received → its messages deleted, W (s)", lambda x: x["invocation_seconds"], 3),
        row("… batch received → its jobs at the service (the hand-over's own calls) (s)",
            lambda x: x.get("handover_wait_seconds"), 3),
        row("… a job at the service, arrival → answer (s)", lambda x: x["job_seconds"], 3),
        row("invocations in flight, mean (measured)", lambda x: x["invocations_in_flight_mean"]),
        row("… Little's law: λ / b × W", lambda x: x["little_invocations"]),
        row("invocations in flight, most", lambda x: x["invocations_in_flight_peak"], 0),
        row("invocations begun before due (they wait for it), mean lead (s)", lambda x: x.get("early_lead_seconds"),
            2),
        row("jobs in flight at the service, mean", lambda x: x["jobs_in_flight_mean"]),
        row("jobs in flight at the service, most", lambda x: x["jobs_in_flight_peak"], 0),
        row(f"**Lambda concurrency at {TARGET_TASKS_PER_S:,} tasks/s = {TARGET_TASKS_PER_S:,} / b × W**",
            lambda x: x["needed_at_target"], 0),
    ]


TARGET_TASKS_PER_S = 1000
# A job's own calls before the service, in AWS: the attempt's conditional UpdateItem and the
# payload's GetItem, single-digit ms each in-region (an assumption, not measured here).
AWS_HANDOVER_SECONDS = 0.01


def _timers_set(backlog):
    after = backlog.get("timers_set_after_due")
    if after is None:
        return "the dispatcher had not set every timer a minute after due"
    if after <= 0:
        return f"the dispatcher had set every timer {_f(-after, 1)} s before due"
    return f"**the dispatcher set the last timers {_f(after, 1)} s after due**: the drain waited for them"


def timers_section(results, root):
    data = results.get("timers")
    if not data:
        return f"{TIMERS_HEADING}\n\n_(not run)_\n"
    burst, now, before, drain = (data.get(k) for k in ("burst", "accept", "accept_before", "drain"))
    pollers, each, deployed = data["pollers"], data["caller_concurrency"], data["deployed_max_concurrency"]
    accept = data["accept_seconds"]
    rate = data["target_rate"]
    sweep_batch = data["sweep_batch_before"]
    per_task = burst["invocations"] / burst["tasks"] if burst else None
    starts_per_task = burst.get("shares", {}).get("start", 0) / burst["tasks"] if burst else None
    floor_after = rate * accept / each
    floor_before = rate * accept
    backlog = ISSUE_BACKLOG
    runs = math.ceil(backlog / sweep_batch)
    aws = aws_drain_seconds(backlog, accept, deployed, each)
    aws_flat = backlog / (deployed * each / accept)
    drained = drain and drain["all_handed_over"]
    # A burst of due starts (the concurrency scenario's backlog, all due at one instant).
    due_burst = now["invocations"] / now["tasks"] if now else None
    if not drain:
        drained_text = "–"
    elif drained and drain["tasks"] >= backlog:
        drained_text = f"**{_f(drain['seconds'], 0)} s** here ({_f(drain['rate'], 0)} per s, emulator-bound)"
    else:
        done = (f"{drain['tasks']:,} in {_f(drain['seconds'], 0)} s" if drained else
                f"{drain['handed_over']:,} of {drain['tasks']:,} in {_f(drain['seconds'], 0)} s (budget ran out)")
        drained_text = (f"{done} here ({_f(drain['rate'], 0)} per s, emulator-bound) → **~{_f(backlog / drain['rate'], 0)}"
                        f" s** for {backlog:,} at that rate")
    summary = [
        ["caller invocations per task in a burst",
         "1.00 (one invocation per SNS message = per job; §5 of the runs before issue 10: 50 tasks, 50 jobs; no "
         "deadline timers: the sweeper timed attempts out)",
         (f"**{_f(due_burst, 3)}** for a burst of due starts ({now['tasks']} due at once); POSTed at the emulator's "
          f"pace ({_f(burst['tasks'] / burst['submit_seconds'], 1)} tasks/s): {_f(starts_per_task, 3)} for the "
          f"starts, {_f(per_task, 3)} with the deadline timers" if burst and now else "–"),
         (f"≤ {INVOCATIONS_TARGET}: {_verdict(due_burst <= INVOCATIONS_TARGET, 'a burst faster than the caller')}; "
          f"{_verdict(starts_per_task <= INVOCATIONS_TARGET, 'the POSTed trickle')}; a task's two timers make "
          f"{2 / data['batch']:.1f} the floor with deadline timers" if burst and now else "–")],
        [f"Lambda concurrency at {rate:,} tasks/s, service {accept * 1000:.0f} ms to accept",
         (f"{_f(before['needed_at_target'], 0)} measured ({rate:,} × W, W = {_f(before['invocation_seconds'], 2)} s); "
          f"~{rate * (accept + AWS_HANDOVER_SECONDS):,.0f} in AWS" if before else "–"),
         (f"**{_f(now['needed_at_target'], 0)}** measured ({rate:,} / b × W, b = {_f(now['jobs_per_invocation'], 1)}, "
          f"W = {_f(now['invocation_seconds'], 2)} s, {_f(now.get('handover_wait_seconds'), 2)} s of it waiting on the "
          f"emulator); ~{rate / each * (accept + AWS_HANDOVER_SECONDS):,.0f} in AWS" if now else "–"),
         f"floor {floor_after:,.0f} = {rate:,} × {accept} s / {each} (before: {floor_before:,.0f}); AWS: W = "
         f"{accept * 1000:.0f} + ~{AWS_HANDOVER_SECONDS * 1000:.0f} ms of DynamoDB calls; bound {deployed} × {each} = "
         f"{deployed * each} jobs at once ≥ {rate * accept:,.0f} in flight"],
        [f"{backlog:,} due retries drained",
         f"{runs}–{runs + 1} min (the sweeper: {sweep_batch} per run, a run a minute, after a 60 s grace; computed)",
         drained_text,
         f"AWS estimate ~{_f(aws, 0)} s ({deployed} × {each} jobs at once, {accept * 1000:.0f} ms each, the event "
         f"source's ramp from {ESM_START}; {_f(aws_flat, 0)} s at full concurrency)"],
    ]
    parts = [
        TIMERS_HEADING,
        "",
        "The whole local fleet (`taskfleet-local`): the dispatcher sets timers on the jobs queue (a start per "
        "RECEIVED task, delayed to its due time; a deadline check per started attempt, delayed to its callback "
        "deadline), the queue's event source invokes the caller with batches of up to "
        f"{data['batch']} (window 0, {pollers} pollers: `CALLER_MAX_CONCURRENCY`), and each invocation hands "
        f"over up to {each} jobs at once (`CALLER_CONCURRENCY`). The fleet-wide bound is pollers × "
        f"CALLER_CONCURRENCY: {pollers} × {each} = {pollers * each} here, {deployed} × {each} = {deployed * each} "
        "deployed (serverless.yml's `callerMaxConcurrency`). A caller invocation is counted at the counting proxy "
        "as a ReceiveMessage answer that carried messages; it ends when its messages are deleted. Scheduled runs "
        "are off after their first (at start-up, on an empty table).",
        "",
        f"*This run*: {results.get('generated_at', '?')}, {_provenance(results, data, root)}.",
        "",
        "*Before* is the design before issue 10: the dispatcher published one SNS message per task and the "
        "caller was invoked once per message, holding the invocation while the service accepted; retries and "
        "timeouts waited for the sweeper (once a minute, `SWEEP_BATCH` = 500 tasks per run, after a 60 s grace).",
        "",
        _table(["measure", "before", "now", "target / bound / AWS"], summary),
        "",
    ]
    if burst:
        parts += [
            f"**Burst** — {burst['tasks']} tasks POSTed at once, a service that accepts and calls back at once, "
            f"callback timeout {burst['callback_timeout_seconds']} s so that every deadline timer fires (and finds "
            f"its task done) inside the measurement; {_f(burst['seconds'], 1)} s in all.",
            "",
            _table(["", ""], _burst_rows(burst)),
            "",
        ]
    if now or before:
        parts += [
            f"**Concurrency** — a backlog of due retries (RECEIVED tasks with one failed attempt, seeded into the "
            f"table due at one instant; the dispatcher sets their start timers from the stream) and a service that "
            f"takes {accept * 1000:.0f} ms to accept each job (`answer_after`). Left: as deployed; right: the "
            "design before's shape — one job per invocation (batch 1, `CALLER_CONCURRENCY` 1), the same binary. "
            "The window is the due instant to the last job's answer (an invocation that began earlier, its "
        "timers having arrived up to a second early, counts from the due instant). By Little's law (in flight = rate × "
            "time in flight) an invocation stream of λ / b invocations per second, each lasting W, keeps λ / b × W "
            "invocations in flight — measured against that here — so "
            f"{rate:,} tasks/s need {rate:,} / b × W. W here is the accept time plus the emulator's latency for the "
            "batch's writes and reads (moto serves one DynamoDB request at a time); in AWS those calls take a few "
            f"ms, so the floor, W = {accept * 1000:.0f} ms and full batches, is {floor_after:,.0f} (before: "
            f"{floor_before:,.0f}).",
            "",
            _table(["", f"now: batch {data['batch']} × {each}", "before's shape: 1 × 1"], _accept_columns(now, before)),
            "",
        ]
    if drain:
        progress = drain.get("progress", {})
        steps = ", ".join(f"{float(k) * 100:.0f} % at {_f(v, 1)} s" for k, v in sorted(progress.items(),
                                                                                       key=lambda kv: float(kv[0])))
        rows = [
            ["due retries", f"{drain['tasks']:,} (seeded in {_f(drain['seed_seconds'], 1)} s, due "
                            f"{_f(drain.get('margin'), 0)} s after the seeding began; " + _timers_set(drain) + ")"],
            ["handed over", f"{drain['handed_over']:,}" + ("" if drained else " (**budget ran out**)")],
            ["invocations begun before due (timers a second early at most), mean lead",
             f"{drain.get('early_invocations', '–')}, {_f(drain.get('early_lead_seconds'), 2)} s"],
            ["due → first / last handed over", f"{_f(drain['first_after_due'], 2)} s / **{_f(drain['seconds'], 1)} s**"],
            ["progress after due", steps or "–"],
            ["rate, mean / busiest second", f"{_f(drain['rate'], 0)} / {drain['busiest_second']} per s"],
            ["caller invocations, timers per invocation", f"{drain['invocations']:,}, "
                                                          f"{_f(drain['jobs_per_invocation'], 2)}"],
            ["invocation time W (s), mean; of it, batch received → its jobs at the service",
             f"{_f(drain['invocation_seconds'], 3)}; {_f(drain.get('handover_wait_seconds'), 3)}"],
            ["invocations in flight, mean / most (bound: pollers)",
             f"{_f(drain['invocations_in_flight_mean'], 2)} / {drain['invocations_in_flight_peak']} ({pollers})"],
            ["jobs in flight at the service, most (bound)", f"{drain['jobs_in_flight_peak']} ({pollers * each})"],
            ["emulator busy (share of a core) / CPU per task", f"{_f(drain['moto_busy'], 2)} / "
                                                              f"{_f(drain['moto_cpu_ms_per_task'], 1)} ms"],
            ["fleet (Rust) CPU per task", f"{_f(drain['fleet_cpu_ms_per_task'], 2)} ms"],
        ]
        fleet_bound = pollers * each / drain["invocation_seconds"] if drain.get("invocation_seconds") else None
        parts += [
            f"**Drain** — {drain['tasks']:,} due retries (seeded as above) and a service that accepts at once (no "
            "callbacks: the tasks stay IN_PROGRESS, their deadline timers 15 minutes away). Time from the due "
            "instant to the last one handed over (its job arrived at the service).",
            "",
            _table(["", ""], rows),
            "",
            f"What bounds it here: the fleet hands over at most {pollers} × {each} jobs at once, i.e. "
            f"{pollers} × {each} / W = {_f(fleet_bound, 0)} jobs/s at the invocation time measured; the emulator "
            f"serves one DynamoDB request at a time on one core (busy {_f(drain['moto_busy'], 2)} of it). "
            f"In AWS the same bound is {deployed} × {each} = {deployed * each} jobs at once: at "
            f"{accept * 1000:.0f} ms per job {deployed * each / accept:,.0f} jobs/s, {backlog:,} in "
            f"{_f(aws_flat, 1)} s once the event source runs {deployed} invocations; it starts with {ESM_START} "
            f"and adds up to {ESM_PER_MINUTE} a minute, so ~{_f(aws, 1)} s in all (`aws_drain_seconds`; the "
            "jobs' own DynamoDB calls, a few ms each in AWS, not counted). "
            f"Before: the sweeper moved {sweep_batch} per run, once a minute, each task only after the 60 s grace: "
            f"{backlog:,} / {sweep_batch} = {runs} runs, the first 1–2 minutes after due → {runs}–{runs + 1} "
            "minutes (computed from that design, not run).",
            "",
        ]
    return "\n".join(parts)
