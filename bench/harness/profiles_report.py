"""bench/profiles.sh's table: one row per release-profile variant of the ingest binary — size,
zipped size (deflate, as cargo lambda zips), cold start and warm CPU from the harness's JSON, and
the variant's full build time (on this shared 2-core machine: indicative only)."""

import datetime
import glob
import json
import os
import statistics

from sizes import zipped

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _median_over_rounds(rounds, step, field):
    values = [r.get(step, {}).get("ingest", {}).get("rust", {}).get(field) for r in rounds]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else 0.0


def row(name):
    """target/bench/profile-<name>.build holds `settings<TAB>build seconds<TAB>binary dir`; each
    round of measurements is in target/bench/profile-<name>.round-<n>.json."""
    build_path = os.path.join(ROOT, "target", "bench", f"profile-{name}.build")
    round_paths = sorted(glob.glob(os.path.join(ROOT, "target", "bench", f"profile-{name}.round-*.json")))
    if not os.path.exists(build_path) or not round_paths:
        return None
    with open(build_path) as build:
        settings, seconds, directory = (build.read().rstrip("\n").split("\t") + ["", ""])[:3]
    binary = os.path.join(ROOT, directory or os.path.join("target", name), "ingest")
    if not os.path.exists(binary):
        return None
    rounds = []
    for path in round_paths:
        with open(path) as data:
            rounds.append(json.load(data))
    minutes = f"{int(seconds) / 60:.0f} min" if seconds else "–"
    return (
        f"| {name} | `{settings}` | {os.path.getsize(binary) / 2**20:.2f} MiB | {zipped(binary) / 2**20:.2f} MiB | "
        f"{_median_over_rounds(rounds, 'cold', 'ready_median'):.1f} | "
        f"{_median_over_rounds(rounds, 'cold', 'done_median'):.1f} | "
        f"{_median_over_rounds(rounds, 'warm', 'cpu_sched_ms'):.3f} | "
        f"{_median_over_rounds(rounds, 'warm', 'hwm_kb') / 1024:.1f} | {len(rounds)} | {minutes} |"
    )


def main():
    names = ["release"] + sorted(
        os.path.basename(p)[len("profile-"):-len(".build")]
        for p in glob.glob(os.path.join(ROOT, "target", "bench", "profile-bench-*.build"))
    )
    lines = [
        f"Variants of the ingest binary (x86_64, built here), measured back to back on {datetime.date.today()} "
        "by `bash bench/profiles.sh`, in interleaved rounds; each figure is the median over the rounds of: "
        "cold = median of 20 fresh processes (ready = spawn → first `GET /next`, done = spawn → answer "
        "posted), CPU = per warm invocation (schedstat, 500 invocations), peak RSS after them. Build = a full "
        "build of the variant and its dependencies on this shared 2-core machine, other builds running.",
        "",
        "| profile | settings | binary | zip | cold ready (ms) | cold done (ms) | warm CPU (ms) | peak RSS (MiB) "
        "| rounds | build |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [line for line in map(row, names) if line]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
