"""Writes bench/RESULTS.md from one run's results: tables per step, the targets of issue 6 with
a verdict each, and the cost per million tasks. Hand-written analysis lives in bench/NOTES.md and
the release-profile comparison in bench/profiles.md; both are included as they are."""

import json
import math
import os
import platform
import subprocess
import time

import functions
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


def _cold(results):
    rows, ratios, ready_ratios = [], {}, {}
    for name in functions.ORDER:
        row = results.get("cold", {}).get(name, {})
        rust, python = row.get("rust"), row.get("python")
        if not rust:
            continue
        ratio = python["done_median"] / rust["done_median"] if python else None
        ratio_ready = python["ready_median"] / rust["ready_median"] if python else None
        ratios[name] = (ratio, rust)
        ready_ratios[name] = (ratio, ratio_ready, rust)
        rows.append([
            name, rust["n"], _f(rust["ready_median"]), _f(rust["ready_max"]), _f(rust["done_median"]),
            _f(rust["done_max"]), _f(python and python["ready_median"]), _f(python and python["done_median"]),
            _f(python and python["done_max"]), _f(ratio_ready) + "×" if python else "–",
            _f(ratio) + "×" if python else "–",
        ])
    header = ["function", "reps", "Rust ready med", "Rust ready max", "Rust done med", "Rust done max",
              "Python ready med", "Python done med", "Python done max", "ready ratio", "done ratio"]
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
    for name in list(functions.ORDER) + (["sweeper"] if "sweeper" in size else []):
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
    """Local stand-ins for what Lambda's event source mappings and SNS do for free."""
    return key.split(":")[0] in ("dynamodbstreams", "sqs")


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
        plumbing = {k: v for k, v in scenario["counts"].items() if _plumbing(k)}
        local = ", ".join(f"{k} {v}" for k, v in sorted(plumbing.items())) or "none"
        cron = {k: v for k, v in scenario["counts"].items() if _scheduled(k)}
        scheduled = ", ".join(f"{k} {v}" for k, v in sorted(cron.items())) or "none"
        final = ", ".join(f"{v} {k}" for k, v in scenario["final"].items())
        sections.append(
            f"**{label}** — {n} tasks in {scenario['seconds']:.1f} s; final: {final}; jobs sent to the "
            f"external service per task: {scenario['jobs_per_task']:.2f}\n\n"
            + _table(["AWS call", "calls", "per task"], rows)
            + f"\n\nLocal-only plumbing (free in AWS, not counted above): {local}.\n"
            + f"Scheduled runs during the scenario (per run, not per task; §7): {scheduled}.\n"
        )
        writes = sum(v for k, v in fleet_calls.items() if k.split(":")[1] in WRITES and k.startswith("dynamodb"))
        sns = sum(v for k, v in fleet_calls.items() if k.startswith("sns:Publish"))
        summary[label] = {"writes": writes / n, "sns": sns / n, "scenario": scenario}
    return "\n".join(sections), summary


def _billed_ms(measured):
    """Billed duration at 128 MB: the wall time measured here (moto-bound I/O plus CPU at a full
    core) plus the CPU time stretched to 128 MB's share of a vCPU, rounded up to 1 ms."""
    cpu = _cpu(measured)
    stretch = prices.FULL_VCPU_MB / 128 - 1
    return math.ceil(measured["wall_p50"] + cpu * stretch)


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
    invocations = {
        "ingest": 1,
        "dispatcher": scenario["stream_batches"] / n,
        "caller": scenario["jobs_per_task"],
        "webhook": 1,
    }
    rows = []

    def line(item, units, price):
        cost = units * price * 1e6
        rows.append([item, _f(units, 2), f"${price * 1e6:,.3f} per M", f"${cost:,.2f}"])
        return cost

    total = line("API Gateway HTTP API requests (POST /tasks, callback)", 2, prices.API_GATEWAY_HTTP_REQUEST)
    total += line("DynamoDB write units, table", writes, prices.DYNAMODB_WRITE_UNIT)
    total += line("DynamoDB write units, `by_status` index (estimate)", index_writes, prices.DYNAMODB_WRITE_UNIT)
    total += line("DynamoDB read units", reads, prices.DYNAMODB_READ_UNIT)
    total += line("SNS publish requests", sns, prices.SNS_PUBLISH_REQUEST)
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
            seconds += count * _billed_ms(measured) / 1000
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
        worst_init = min((r for _, r, _ in cold_ready.values() if r), default=None)
        worst_ready = max(rust["ready_median"] for _, rust in cold.values())
        targets.append(["Rust cold start ≥ 20× faster than Python (median, spawn → answer)",
                        f"lowest ratio {_f(worst_ratio)}×", _verdict(worst_ratio and worst_ratio >= 20,
                        None if not worst_ratio or worst_ratio >= 20 else f"short by {_f(20 - worst_ratio)}×")])
        targets.append(["… the same for init alone (median, spawn → ready)", f"lowest ratio {_f(worst_init)}×",
                        _verdict(worst_init and worst_init >= 20, None)])
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
            targets.append([f"≤ 3 DynamoDB writes + ≤ 0.1 SNS calls per task ({label})",
                            f"{_f(values['writes'], 2)} writes, {_f(values['sns'], 2)} SNS", _verdict(ok, None)])
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
            ["AWS emulator", f"moto server {machine['moto']} on 127.0.0.1"],
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
        "answer posted. The Python baseline's imports and boto3 clients are part of its init.",
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
        "emulator. Counted between the first POST and the moment the last task is terminal and the fleet "
        "is quiet.",
        "",
        requests_text,
        f"### Cost per million tasks (happy path, burst; prices: {prices.PRICES_AS_OF})",
        "",
        cost_text,
        "",
        "Lambda duration model: billed ms = measured warm wall p50 + CPU ms × (1769/128 − 1), rounded up — "
        "at 128 MB a function gets 128/1769 of a vCPU, so its CPU work takes ~13.8× longer than measured "
        "here on a full core. The Python baseline makes the same AWS calls (bench/python mirrors each "
        "function), so only its GB-s line differs. Status polls are extra, per poll: 1 API Gateway request, "
        "1 Lambda request, 1 read unit. The metrics cron is per run, not per task (§7).",
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
        "## Notes",
        "",
        _include(os.path.join(ctx.root, "bench", "NOTES.md")),
        "",
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
            "(front → ingest → stream → dispatcher → SNS → SQS → caller → external stub → webhook).\n\n"
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


def storage_baseline(root):
    """The 'before' of §8 (bench/baseline-storage.json, written by run.py --save-storage-baseline)."""
    path = os.path.join(root, "bench", "baseline-storage.json")
    if not os.path.exists(path):
        return None
    with open(path) as text:
        return json.load(text)


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
    baseline = storage_baseline(root)
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


def splice_storage(path, results, root):
    """Rewrites only §8 of an existing report (the storage step run alone): replaces the section,
    or puts it before the notes."""
    with open(path) as text:
        report = text.read()
    section = storage_section(results, root).rstrip("\n") + "\n\n"
    start = report.find(STORAGE_HEADING)
    if start >= 0:
        end = report.find("\n## ", start + len(STORAGE_HEADING))
        report = report[:start] + section + (report[end + 1 :] if end >= 0 else "")
    else:
        notes = report.find("\n## Notes")
        at = notes + 1 if notes >= 0 else len(report)
        report = report[:at] + section + report[at:]
    with open(path, "w") as out:
        out.write(report)
