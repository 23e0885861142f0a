"""Step 9 (issue 10): the timer-driven, batched caller, through the whole local fleet
(`taskfleet-local`: the dispatcher sets timers on the jobs queue, the queue's event source
invokes the caller with batches), the counting proxy in front of the emulator.

- **burst**: N tasks POSTed at once (8 clients), a service that accepts and calls back at once,
  a short callback timeout so that every deadline timer fires inside the step: caller
  invocations (ReceiveMessage answers that carried messages, proxy.py) per task, for the starts
  and for the deadline timers.
- **accept**: a backlog of due tasks (seeded, see below) and a service that takes 200 ms to
  accept a job (stub.py `answer_after`, as crates/example-service's `Chaos::answer_after`):
  jobs handed over per second, jobs per invocation, how long an invocation lasts, how many
  invocations and jobs were in flight on average and at most — and from these, by Little's law
  (in flight = rate × time in flight), the Lambda concurrency 1,000 tasks/s would need. Run
  twice: as deployed (batches of 10, CALLER_CONCURRENCY 10) and in the shape of the design
  before it (one job per invocation: batch 1, CALLER_CONCURRENCY 1).
- **drain**: 10,000 due retries and a service that accepts at once: time from their due time
  to the last one handed over, and what bounded it.

A backlog is seeded while the fleet runs: RECEIVED tasks (clones of the template with one
failed attempt, so each start is attempt 2: a retry) written straight into the fleet's table
with BatchWriteItem, all due at one instant a little later; the stream hands the INSERTs to the
dispatcher, which sets each start timer on the jobs queue delayed to that instant — what the
fleet does for every retry. At the due instant the whole backlog becomes visible at once.
"""

import bisect
import concurrent.futures
import math
import time

import emulator
import seed
from emulator import put_items
from fleet import LocalFleet, StepFailed, wait_queue_empty, wait_quiet
from proxy import CountingProxy, delta
from stub import ExternalService

# The local fleet's caller event source as taskfleet-local defaults it (serverless.yml deploys
# MaximumConcurrency 50 with the same batch and CALLER_CONCURRENCY).
POLLERS = 4
BATCH = 10
CALLER_CONCURRENCY = 10
DEPLOYED_MAX_CONCURRENCY = 50  # serverless.yml callerMaxConcurrency
ACCEPT_SECONDS = 0.2
TARGET_RATE = 1000  # tasks/s
SWEEP_BATCH = 500  # the sweeper's per-run batch before issue 10 (SWEEP_BATCH default)
# Everything but the timers stays out of the measurement: no scheduled run after the first (at
# start-up, on an empty table).
QUIET_SCHEDULES = {"METRICS_INTERVAL_SECONDS": "86400", "SWEEP_INTERVAL_SECONDS": "86400"}


# ---- pure functions (bench/tests/test_timers.py) ----------------------------------------------


def invocations(trace):
    """Caller invocations from the proxy's queue trace: each batch received starts one; it ends
    when the first delete naming one of its receipt handles is sent (the event source deletes a
    batch's handled messages when the caller answers). Answers dicts with start, end (None if
    nothing of it was deleted), messages and steps, in order of start."""
    deletes = {}
    for kind, at, handles, *_ in trace:
        if kind == "delete":
            for handle in handles:
                deletes.setdefault(handle, []).append(at)
    found = []
    for kind, at, handles, steps, *rest in trace:
        if kind != "receive":
            continue
        ends = [t for handle in handles for t in deletes.get(handle, []) if t >= at]
        found.append({"start": at, "end": min(ends) if ends else None, "messages": len(handles), "steps": steps,
                      "tasks": rest[0] if rest else []})
    found.sort(key=lambda i: i["start"])
    return found


def peak(intervals):
    """The most (start, end) intervals open at one instant (an end before a start at a tie)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    most = current = 0
    for _, change in points:
        current += change
        most = max(most, current)
    return most


def mean_open(intervals, start, end):
    """Time-weighted mean of the intervals open during [start, end] (Little's L)."""
    if end <= start:
        return 0.0
    covered = sum(max(0.0, min(e, end) - max(s, start)) for s, e in intervals)
    return covered / (end - start)


def shares(found):
    """Invocations per kind of timer, a batch of both counted in proportion to what it held: the
    invocations the starts (and the deadline timers) cost."""
    tally = {}
    for invocation in found:
        total = sum(invocation["steps"].values())
        for step, count in invocation["steps"].items():
            tally[step] = tally.get(step, 0.0) + count / total
    return tally


def handover_waits(found, arrivals, start):
    """For each invocation (from `start` on), the mean time from the batch received to its jobs'
    arrival at the service: what the hand-over spent before the service (the attempt's
    conditional write, the payload read), `arrivals` = {task id: arrival}."""
    waits = []
    for invocation in found:
        begun = max(invocation["start"], start)
        times = [arrivals[t] - begun for t in invocation["tasks"] if t in arrivals]
        if times:
            waits.append(sum(times) / len(times))
    return waits


def early(found, due):
    """(invocations that began before `due`, their mean lead): timers delayed by whole seconds,
    rounded down, arrive up to a second early and the caller waits for their time."""
    leads = [due - i["start"] for i in found if i["start"] < due]
    return len(leads), (sum(leads) / len(leads) if leads else 0.0)


def clipped(intervals, start):
    """The intervals from `start` on: an invocation that began before the due instant (its
    timers arrived early, and it waited for their time) counts from the due instant."""
    return [(max(s, start), e) for s, e in intervals if e > start]


def kinds(found):
    """Invocations by what their batch held: start timers only, deadline timers only, both."""
    tally = {"start": 0, "deadline": 0, "mixed": 0, "other": 0}
    for invocation in found:
        steps = {k for k, v in invocation["steps"].items() if v}
        if steps == {"start"}:
            tally["start"] += 1
        elif steps == {"deadline"}:
            tally["deadline"] += 1
        elif {"start", "deadline"} <= steps:
            tally["mixed"] += 1
        else:
            tally["other"] += 1
    return tally


def little(rate, seconds_each, per_invocation):
    """Invocations in flight at `rate` jobs/s when each invocation takes `per_invocation` jobs
    and lasts `seconds_each`: L = (rate / per_invocation) × W."""
    return rate / per_invocation * seconds_each


def progress(times, start, fractions=(0.1, 0.5, 0.9, 1.0)):
    """Seconds after `start` by which each fraction of `times` had happened."""
    ordered = sorted(times)
    if not ordered:
        return {}
    return {f: ordered[max(0, math.ceil(f * len(ordered)) - 1)] - start for f in fractions}


def busiest_second(times):
    """The most events in any one-second window starting at an event."""
    ordered = sorted(times)
    return max((bisect.bisect_right(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0)


def delay_until(due_ms, now_ms):
    """Whole seconds to wait, rounded down as the fleet's Dispatch does (≤ 900)."""
    return max(0, min(900, int((due_ms - now_ms) // 1000)))


# ---- seeding -----------------------------------------------------------------------------------


def backlog_items(template, count, due_ms, attempts=1):
    """`count` RECEIVED tasks due at `due_ms` with `attempts` failed attempts, and their payload
    items: clones of the template under fresh ids (seed.clone)."""
    expires_at = int(template.get("expires_at", {}).get("N", "4102444800"))
    ids, items = [], []
    for _ in range(count):
        task_id, item = seed.clone(template)
        item["due_at"] = {"N": str(due_ms)}
        item["attempts"] = {"N": str(attempts)}
        ids.append(task_id)
        items.append(item)
        items.append(seed.payload_item(task_id, expires_at))
    return ids, items


def seed_backlog(ctx, table, count, due_ms, threads=4):
    """Writes the backlog into the fleet's table from `threads` clients; answers the task ids."""
    ids, items = backlog_items(ctx.templates.received, count, due_ms)
    chunk = max(25, math.ceil(len(items) / threads / 25) * 25)
    db = ctx.clients["dynamodb"]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda start: put_items(db, table, items[start : start + chunk]), range(0, len(items), chunk)))
    return ids


def wait_timers_set(proxy, before, count, until):
    """Waits until the dispatcher has sent `count` more start timers than at `before` (a
    snapshot) through the proxy — it has read the backlog from the stream; answers when
    (perf_counter), or None."""
    while time.monotonic() < until:
        if proxy.snapshot()["queue_sent"].get("start", 0) - before.get("start", 0) >= count:
            return time.perf_counter()
        time.sleep(0.1)
    return None


# ---- scenarios ---------------------------------------------------------------------------------


def burst(ctx, n, concurrency, budget):
    """Caller invocations per task for a burst of POSTs, deadline timers included."""
    end = time.monotonic() + budget
    proxy = CountingProxy(ctx.endpoint)
    service = ExternalService(call_back=True, workers=4)
    timeout = 8
    fleet = LocalFleet(ctx, proxy.url, service.url,
                       env_overrides={**QUIET_SCHEDULES, "CALLBACK_TIMEOUT_SECONDS": str(timeout)})
    sqs = ctx.clients["sqs"]
    try:
        queue_url = sqs.get_queue_url(QueueName=fleet.queue)["QueueUrl"]
        wait_quiet(proxy)
        before = proxy.snapshot()
        proxy.trace_queue = True
        started = time.monotonic()
        ids = fleet.submit(n, concurrency)
        submitted = time.monotonic() - started
        service.wait_finished(n, max(1.0, end - time.monotonic()))
        wait_quiet(proxy)
        left = wait_queue_empty(sqs, queue_url, max(1.0, end - time.monotonic()))
        wait_quiet(proxy)
        proxy.trace_queue = False
        change = delta(proxy.snapshot(), before)
        seconds = time.monotonic() - started
        finished = sum(service.finished.get(t) == 200 for t in ids)
    finally:
        fleet.stop()
        service.close()
        proxy.close()
    if finished != n:
        raise StepFailed(f"timers burst: {finished} of {n} tasks finished")
    received = change["queue_received"]
    return {
        "tasks": n,
        "clients": concurrency,
        "submit_seconds": submitted,
        "seconds": seconds,
        "callback_timeout_seconds": timeout,
        "timers_left": left,
        "invocations": change["queue_batches"],
        "kinds": kinds(invocations(proxy.queue_trace)),
        "shares": shares(invocations(proxy.queue_trace)),
        "received": received,
        "sent": change["queue_sent"],
        "jobs": sum(service.jobs[t] for t in ids),
    }


def _seeded_fleet(ctx, proxy, service, count, env, margin):
    """A fleet with a backlog of `count` retries due `margin` seconds from now (time to seed
    them and for the dispatcher to set their timers). Answers (fleet, backlog): `due` and the
    other instants are perf_counter seconds, as the proxy and the stub keep them."""
    fleet = LocalFleet(ctx, proxy.url, service.url, env_overrides={**QUIET_SCHEDULES, **env})
    try:
        wait_quiet(proxy)
        sent_before = proxy.snapshot()["queue_sent"]
        # From here on every batch is traced: whole-second delays (rounded down, as the fleet's)
        # make timers arrive up to a second before their time, and the caller waits for it.
        proxy.trace_queue = True
        started = time.perf_counter()
        due_wall = time.time() + margin
        due = started + margin
        ids = seed_backlog(ctx, fleet.table, count, int(due_wall * 1000))
        seeded = time.perf_counter()
        timers_set = wait_timers_set(proxy, sent_before, count, time.monotonic() + margin + 60)
        backlog = {"ids": ids, "due": due, "margin": margin, "seed_seconds": seeded - started,
                   "timers_set_after_due": None if timers_set is None else timers_set - due,
                   "timers_set_seconds": None if timers_set is None else timers_set - started}
        return fleet, backlog
    except BaseException:
        fleet.stop()
        raise


def _wait_from_due(service, n, due, budget):
    return service.wait_jobs(n, max(1.0, due + budget - time.perf_counter()))


def accept(ctx, n, batch, each, budget):
    """A backlog of n due tasks through the fleet with a service that takes ACCEPT_SECONDS to
    accept each job; event source batches of `batch`, `each` jobs at once per invocation."""
    proxy = CountingProxy(ctx.endpoint)
    service = ExternalService(answer_after=ACCEPT_SECONDS)
    env = {"CALLER_BATCH_SIZE": str(batch), "CALLER_CONCURRENCY": str(each),
           "CALLER_MAX_CONCURRENCY": str(POLLERS)}
    fleet = None
    try:
        fleet, backlog = _seeded_fleet(ctx, proxy, service, n, env, margin=3 + n * 0.01)
        due = backlog["due"]
        done = _wait_from_due(service, n, due, budget)
        proxy.trace_queue = False
        wait_quiet(proxy)
    finally:
        if fleet:
            fleet.stop()
        service.close()
        proxy.close()
    journal = [j for j in service.journal if j[1] == 2]  # the retries' starts (attempt 2)
    if not journal:
        raise StepFailed("timers accept: no job reached the service")
    found = [i for i in invocations(proxy.queue_trace) if i["steps"].get("start")]
    spans = clipped([(i["start"], i["end"]) for i in found if i["end"] is not None], due)
    first, last = min(j[2] for j in journal), max(j[3] for j in journal)
    window = last - due
    jobs = [(j[2], j[3]) for j in journal]
    rate = len(journal) / window if window > 0 else None
    per_invocation = sum(i["messages"] for i in found) / len(found) if found else None
    seconds_each = sum(e - s for s, e in spans) / len(spans) if spans else None
    measured_l = mean_open(spans, due, last)
    waits = handover_waits(found, {j[0]: j[2] for j in journal}, due)
    early_count, early_lead = early(found, due)
    return {
        "early_invocations": early_count,
        "early_lead_seconds": early_lead,
        "tasks": n,
        "batch": batch,
        "each": each,
        "pollers": POLLERS,
        "accept_seconds": ACCEPT_SECONDS,
        "all_handed_over": done,
        "handed_over": len({j[0] for j in journal}),
        "seed_seconds": backlog["seed_seconds"],
        "timers_set_after_due": backlog["timers_set_after_due"],
        "timers_set_seconds": backlog["timers_set_seconds"],
        "first_after_due": first - due,
        "seconds": window,
        "rate": rate,
        "invocations": len(found),
        "unmatched_invocations": len(found) - len(spans),
        "jobs_per_invocation": per_invocation,
        "invocation_seconds": seconds_each,
        "job_seconds": sum(e - s for s, e in jobs) / len(jobs),
        # batch received -> its jobs at the service (mean over invocations): the hand-over's
        # own calls, waiting on the emulator
        "handover_wait_seconds": sum(waits) / len(waits) if waits else None,
        "invocations_in_flight_mean": measured_l,
        "invocations_in_flight_peak": peak(spans),
        "jobs_in_flight_mean": mean_open(jobs, due, last),
        "jobs_in_flight_peak": service.most_in_flight,
        "little_invocations": little(rate, seconds_each, per_invocation) if rate and seconds_each and per_invocation
        else None,
        "needed_at_target": little(TARGET_RATE, seconds_each, per_invocation) if seconds_each and per_invocation
        else None,
    }


def drain_margin(n, seconds_per_task=None):
    """Seconds from now to the backlog's due instant: time to seed it and for the dispatcher to
    set its timers (it reads the stream while the seeding goes on), from the seconds per task
    seeding a smaller backlog took (the accept scenario's)."""
    per_task = seconds_per_task if seconds_per_task else 0.005
    return min(120.0, 5 + 2 * per_task * n)


def drain(ctx, n, budget, seconds_per_task=None):
    """n due retries, a service that accepts at once: due instant -> last one handed over."""
    proxy = CountingProxy(ctx.endpoint)
    service = ExternalService()
    fleet = None
    margin = drain_margin(n, seconds_per_task)
    try:
        fleet, backlog = _seeded_fleet(ctx, proxy, service, n, {}, margin=margin)
        due = backlog["due"]
        moto_cpu = ctx.moto.cpu_seconds()
        fleet_cpu = emulator.cpu_seconds(fleet.process.pid)
        finished = _wait_from_due(service, n, due, budget)
        moto_cpu = ctx.moto.cpu_seconds() - moto_cpu
        fleet_cpu = emulator.cpu_seconds(fleet.process.pid) - fleet_cpu
        proxy.trace_queue = False
    finally:
        if fleet:
            fleet.stop()
        service.close()
        proxy.close()
    first_job = {}
    for task_id, attempt, arrived, _ in service.journal:
        if attempt == 2 and task_id not in first_job:
            first_job[task_id] = arrived
    times = list(first_job.values())
    if not times:
        raise StepFailed("timers drain: no job reached the service")
    last = max(times)
    wall = last - min(due, min(times))  # the moto CPU share below is over this window (roughly)
    found = [i for i in invocations(proxy.queue_trace) if i["steps"].get("start")]
    spans = clipped([(i["start"], i["end"]) for i in found if i["end"] is not None], due)
    waits = handover_waits(found, first_job, due)
    early_count, early_lead = early(found, due)
    return {
        "early_invocations": early_count,
        "early_lead_seconds": early_lead,
        "tasks": n,
        "margin": margin,
        "handover_wait_seconds": sum(waits) / len(waits) if waits else None,
        "pollers": POLLERS,
        "each": CALLER_CONCURRENCY,
        "all_handed_over": finished,
        "handed_over": len(times),
        "seed_seconds": backlog["seed_seconds"],
        "timers_set_after_due": backlog["timers_set_after_due"],
        "timers_set_seconds": backlog["timers_set_seconds"],
        "seconds": last - due,
        "first_after_due": min(times) - due,
        "progress": {str(k): v for k, v in progress(times, due).items()},
        "rate": len(times) / max(1e-9, last - due),
        "busiest_second": busiest_second(times),
        "invocations": len(found),
        "jobs_per_invocation": sum(i["messages"] for i in found) / len(found) if found else None,
        "invocation_seconds": sum(e - s for s, e in spans) / len(spans) if spans else None,
        "invocations_in_flight_mean": mean_open(spans, due, last),
        "invocations_in_flight_peak": peak(spans),
        "jobs_in_flight_peak": service.most_in_flight,
        "moto_busy": moto_cpu / wall if wall > 0 else None,
        "moto_cpu_ms_per_task": moto_cpu * 1000 / len(times),
        "fleet_cpu_ms_per_task": fleet_cpu * 1000 / len(times),
    }


def measure(ctx):
    """The three scenarios, each in its own time budget; the step's numbers."""
    results = {"pollers": POLLERS, "batch": BATCH, "caller_concurrency": CALLER_CONCURRENCY,
               "deployed_max_concurrency": DEPLOYED_MAX_CONCURRENCY, "accept_seconds": ACCEPT_SECONDS,
               "target_rate": TARGET_RATE, "sweep_batch_before": SWEEP_BATCH, "fleet_binary": ctx.fleet_binary}
    n = ctx.setting("timers_burst_tasks")
    print(f"  timers burst: {n} tasks", flush=True)
    results["burst"] = burst(ctx, n, ctx.setting("timers_burst_clients"), ctx.setting("budget_timers_burst"))
    n = ctx.setting("timers_accept_tasks")
    print(f"  timers accept: {n} due tasks, {ACCEPT_SECONDS * 1000:.0f} ms to accept, batches of {BATCH} x "
          f"{CALLER_CONCURRENCY}", flush=True)
    results["accept"] = accept(ctx, n, BATCH, CALLER_CONCURRENCY, ctx.setting("budget_timers_accept"))
    n = ctx.setting("timers_accept_before_tasks")
    print(f"  timers accept, the design before: {n} due tasks, one job per invocation", flush=True)
    results["accept_before"] = accept(ctx, n, 1, 1, ctx.setting("budget_timers_accept"))
    n = ctx.setting("timers_drain_tasks")
    calibration = results["accept"]
    # Until the dispatcher had set the smaller backlog's timers, per task (seeding and the
    # stream's lag); a larger backlog takes longer per task, hence the factor in drain_margin.
    per_task = (calibration.get("timers_set_seconds") or calibration["seed_seconds"]) / calibration["tasks"]
    print(f"  timers drain: {n} due retries, due in {drain_margin(n, per_task):.0f} s", flush=True)
    results["drain"] = drain(ctx, n, ctx.setting("budget_timers_drain"), per_task)
    return results
