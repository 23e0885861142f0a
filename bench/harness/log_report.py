"""§10 of bench/RESULTS.md (issue 13): log bytes per task on the happy path, before and now."""

import os

import baselines
import prices

LOGS_HEADING = "## 10. Log bytes per task (issue 13)"
LOGS_TARGET_BYTES = 2_000  # per task, happy path, applicationLogLevel INFO
KINDS = ("app", "emf", "platform", "total")


def _n(value):
    return "–" if value is None else f"{value:,.0f}"


def _cell(before, now):
    if before is None:
        return _n(now)
    if now is None:
        return f"{_n(before)} → –"
    return f"{_n(before)} → {_n(now)}"


def _logging(data):
    logging = data.get("logging", {})
    return (f"`logFormat: {logging.get('logFormat', '?')}`, `applicationLogLevel: "
            f"{logging.get('applicationLogLevel', '?')}`, `systemLogLevel: {logging.get('systemLogLevel', '?')}` "
            f"(platform records modelled at {data.get('platform_per_invocation', 0):,} B per invocation)")


def _cost(total_bytes):
    return total_bytes * 1e6 / 1e9 * prices.CLOUDWATCH_LOGS_INGESTED_GB


def _summary(now, before):
    names = list(dict.fromkeys([*(before or {}).get("functions", {}), *(now or {}).get("functions", {})]))
    rows = []
    for name in names:
        old = (before or {}).get("functions", {}).get(name)
        new = (now or {}).get("functions", {}).get(name)
        invocations = (new or old)["invocations"]
        rows.append([name, invocations, *[_cell(old and old[k], new and new[k]) for k in KINDS]])
    old_total, new_total = (before or {}).get("total"), (now or {}).get("total")
    rows.append(["**per task**", (new_total or old_total)["invocations"],
                 *[f"**{_cell(old_total and old_total[k], new_total and new_total[k])}**" for k in KINDS]])
    money = [f"${_cost(t['total']):,.2f}" for t in (old_total, new_total) if t]
    rows.append(["per million tasks (ingestion)", "", "", "", "", " → ".join(money)])
    header = ["function", "invocations per task", "app B", "EMF B", "platform B (modelled)", "total B"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _stages(data):
    header = ["function", "invocation", "app lines", "app B", "EMF lines", "EMF B"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stage in data.get("stages", []):
        lines.append(f"| {stage['function']} | {stage['invocation']} | {stage['app_lines']:,.1f} | "
                     f"{stage['app_bytes']:,.0f} | {stage['emf_lines']:,.1f} | {stage['emf_bytes']:,.0f} |")
    return "\n".join(lines)


def _samples(data):
    samples = data.get("samples") or {}
    return "\n".join(["```", *[f"{name}: {line}" for name, line in samples.items()], "```"]) if samples else "_(none)_"


def _verdict(total):
    ok = total <= LOGS_TARGET_BYTES
    return ("met" if ok else "**missed**") + f" ({total:,.0f} B per task)"


def logs_section(results, root):
    data = results.get("logs")
    baseline = baselines.load(root, "logs")
    if not data and not baseline:
        return f"{LOGS_HEADING}\n\n_(not run)_\n"
    parts = [
        LOGS_HEADING,
        "",
        "What CloudWatch Logs ingests for one task on the happy path (submitted, handed over, called back DONE, "
        "read once), at a low rate where every stream record and timer is its own invocation (in bursts the "
        "dispatcher's and caller's invocations, and their platform records, are shared by many tasks: §9). Each "
        "stage runs the function binary as Lambda starts it, with serverless.yml's logging "
        "(`logFormat` → AWS_LAMBDA_LOG_FORMAT, `applicationLogLevel` → AWS_LAMBDA_LOG_LEVEL), over N tasks after "
        "one that warms the process up (cold-start lines are once per instance, not per task). *App* is every "
        "line the function writes but the EMF ones; *EMF* the metric lines (a JSON object with `_aws`), "
        "which CloudWatch turns into the fleet's metrics. *Platform* is modelled, not measured: Lambda writes "
        "its JSON system records only in AWS — `platform.start` and `platform.report` per invocation at "
        "`systemLogLevel` INFO, none at WARN — sized as the documented records, one line each. Ingestion is "
        f"${prices.CLOUDWATCH_LOGS_INGESTED_GB:.2f} per GB (bytes as written, newline included).",
        "",
    ]
    if data:
        binaries = os.path.relpath(data.get("rust_dir") or "?", root)
        built = f" built from {results['built_from']}" if results.get("built_from") else ""
        parts += [f"*This run*: {results.get('generated_at', '?')}, {data['tasks']} tasks, binaries "
                  f"{binaries}{built}, repository at {results.get('commit', '?')}; {_logging(data)}.", ""]
    if baseline:
        parts += [f"*Before*: bench/baseline-logs.json — {baseline.get('note') or 'the logging before issue 13'} "
                  f"(measured {baseline.get('generated_at', '?')}, repository at {baseline.get('commit', '?')}; "
                  f"{_logging(baseline)}).", ""]
    now_total = data and data["total"]["total"]
    if now_total is not None:
        parts += [f"Target (issue 13): ≤ {LOGS_TARGET_BYTES:,} B per task on the happy path at INFO — "
                  f"{_verdict(now_total)}.", ""]
    parts += [_summary(data, baseline), ""]
    for title, run in (("This run", data), ("Before", baseline)):
        if run:
            parts += [f"#### {title}: per invocation", "", _stages(run), "",
                      f"{title}: the first app line each function wrote", "", _samples(run), ""]
    return "\n".join(parts)
