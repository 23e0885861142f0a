"""Steps 1-3 (per function): cold start, warm cost, peak memory — each function started as
Lambda starts it, against its own fresh table, fed through the local Runtime API."""

import os
import statistics
import time

import emulator
import functions
import seed
from proxy import CountingProxy
from runtime_api import RuntimeApi
from sandbox import Sandbox, lambda_environment

INVOKE_TIMEOUT = 30


class InvocationFailed(Exception):
    pass


class Bench:
    """What the per-function steps share: the Runtime API, emulator clients, the stub service."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.api = RuntimeApi()

    def resources(self, implementation, name):
        db = self.ctx.clients["dynamodb"]
        table_name = emulator.unique(f"bench-{implementation}-{name}")
        table = seed.copy_table(db, self.ctx.templates.reference_table, table_name)
        topic = self.ctx.clients["sns"].create_topic(Name=emulator.unique("bench-dispatch"))["TopicArn"]
        queue_url, queue_arn = emulator.create_queue(self.ctx.clients["sqs"], emulator.unique("bench-jobs"))
        return {
            "implementation": implementation,
            "table": table,
            "topic_arn": topic,
            "queue_url": queue_url,
            "queue_arn": queue_arn,
            "service_url": self.ctx.stub.url,
            "bucket": self.ctx.templates.bucket,
            "status_range_key": self.ctx.templates.status_range_key,
            "status_hash_key": self.ctx.templates.status_hash_key,
        }

    def spawn(self, implementation, name, resources, endpoint=None):
        self.api.reset()
        env = lambda_environment(
            name,
            self.api.address,
            endpoint or self.ctx.endpoint,
            functions.configuration(resources),
            python=(implementation == "python"),
        )
        log = os.path.join(self.ctx.logs, f"{implementation}-{name}.log")
        return Sandbox(functions.command(implementation, name, self.ctx.rust_dir, self.ctx.root), env, log)

    def invoke(self, function, sandbox, event):
        request_id = self.api.submit(event)
        outcome = self.api.wait(request_id, INVOKE_TIMEOUT)
        if outcome is None:
            why = self.api.init_error or ("the process exited" if not sandbox.alive() else "no answer in time")
            raise InvocationFailed(f"{function.name}: {why}")
        answer = outcome.json()
        if outcome.kind != "response" or not function.ok(answer):
            raise InvocationFailed(f"{function.name}: unexpected {outcome.kind}: {outcome.body[:300]!r}")
        return outcome


def cold_start(bench, implementation, name, repetitions, budget):
    """Spawn -> first /next ("ready") and spawn -> answer posted, over fresh processes. One
    unmeasured spawn first, so both implementations start with a warm page cache.

    Then as many processes again with their AWS endpoint behind a timing proxy: "own" = spawn ->
    answer less the time some AWS call was waiting on the emulator. The two implementations do
    not make the same calls (the Python baseline is the earlier design: its ingest reads keys
    from the environment and makes one write), so "own" compares what each process itself
    spends: loading, initialising, the request's CPU."""
    function = functions.FUNCTIONS[name]
    resources = bench.resources(implementation, name)
    templates = bench.ctx.templates
    contexts = function.seed(templates, bench.ctx.clients["dynamodb"], resources["table"], 2 * repetitions + 1)
    direct, proxied = contexts[: repetitions + 1], contexts[repetitions + 1 :]
    ready, done, own = [], [], []
    for index, context in enumerate(direct):
        if index > 1 and budget.expired():
            break
        sandbox = bench.spawn(implementation, name, resources)
        try:
            outcome = bench.invoke(function, sandbox, function.event(templates, context, resources))
            if index > 0:
                ready.append((bench.api.ready_at - sandbox.started) * 1000)
                done.append((outcome.posted_at - sandbox.started) * 1000)
        finally:
            sandbox.stop()
    timing = CountingProxy(bench.ctx.endpoint)
    timing.trace_waits = True
    try:
        for index, context in enumerate(proxied):
            if index > 0 and budget.expired():
                break
            sandbox = bench.spawn(implementation, name, resources, endpoint=timing.url)
            try:
                outcome = bench.invoke(function, sandbox, function.event(templates, context, resources))
                waited = timing.waited(sandbox.started, outcome.posted_at)
                own.append((outcome.posted_at - sandbox.started - waited) * 1000)
            finally:
                sandbox.stop()
    finally:
        timing.close()
    return {
        "n": len(done),
        "ready_median": statistics.median(ready),
        "ready_max": max(ready),
        "done_median": statistics.median(done),
        "done_max": max(done),
        "own_n": len(own),
        "own_median": statistics.median(own) if own else None,
    }


def warm(bench, implementation, name, invocations, budget, warmup=10):
    """`invocations` calls to one process after its cold start and `warmup` more: CPU time per
    invocation (utime+stime as getrusage reports it, and schedstat's nanoseconds), wall p50/p99
    (event handed out -> answer posted), and the peak RSS after the run."""
    function = functions.FUNCTIONS[name]
    resources = bench.resources(implementation, name)
    templates = bench.ctx.templates
    contexts = function.seed(templates, bench.ctx.clients["dynamodb"], resources["table"], invocations + warmup + 1)
    sandbox = bench.spawn(implementation, name, resources)
    try:
        for context in contexts[: warmup + 1]:
            bench.invoke(function, sandbox, function.event(templates, context, resources))
        events = [function.event(templates, context, resources) for context in contexts[warmup + 1 :]]
        ticks0, ns0, threads0 = sandbox.cpu_ticks_seconds(), sandbox.cpu_ns(), sandbox.threads()
        walls = []
        started = time.monotonic()
        for event in events:
            outcome = bench.invoke(function, sandbox, event)
            walls.append((outcome.posted_at - outcome.served_at) * 1000)
            if budget.expired() and len(walls) >= 20:
                break
        elapsed = time.monotonic() - started
        ticks1, ns1, threads1 = sandbox.cpu_ticks_seconds(), sandbox.cpu_ns(), sandbox.threads()
        hwm, rss = sandbox.memory_kb()
    finally:
        sandbox.stop()
    n = len(walls)
    walls.sort()
    user, system = (ticks1[0] - ticks0[0]) * 1000 / n, (ticks1[1] - ticks0[1]) * 1000 / n
    return {
        "n": n,
        "cpu_rusage_ms": user + system,
        # In the kernel: the loopback TCP of the Runtime API exchanges and the AWS call, the
        # same work for both implementations.
        "cpu_user_ms": user,
        "cpu_system_ms": system,
        # schedstat covers live threads only: trusted when no thread came or went.
        "cpu_sched_ms": (ns1 - ns0) / 1e6 / n if threads0 == threads1 else None,
        "wall_p50": walls[n // 2],
        "wall_p99": walls[min(n - 1, int(n * 0.99))],
        "elapsed_s": elapsed,
        "hwm_kb": hwm,
        "rss_kb": rss,
    }
