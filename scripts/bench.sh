#!/usr/bin/env bash
# `make bench`: the benchmarks of issue 6 — cold start, warm CPU, memory and zip size per
# function (Rust against the Python baseline in bench/python), AWS calls and cost per task,
# end-to-end throughput, cron cost against stored tasks —, storage heat (§8) and issue 10's
# timers and batched caller (§9: caller invocations per task in a burst, Lambda concurrency for
# a slow service, a 10,000-retry backlog drained), written to bench/RESULTS.md.
#
#   scripts/bench.sh           release builds, Lambda zips, full run (harness ≤ 12 min)
#   scripts/bench.sh --smoke   debug builds, one repetition of every step, asserts that each
#                              step works and no timing; what `make test` runs (a few minutes)
#
# BENCH_ZIPS=0 skips building the Lambda zips (the size table then shows only binaries).
# BENCH_SOURCE=DIR builds the Rust binaries from another checkout of the workspace (say a
# `git archive` of HEAD while the work tree is mid-change) into this repository's target/.
# Everything runs on 127.0.0.1 against the project's emulator (scripts/emulator.py, through
# bench/harness/emulator_server.py), which the harness starts and stops itself.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$ROOT"

smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1

# The benchmarks' Python packages (bench/requirements.txt), pinned; reinstalled only when that
# file changes — the same stamp scheme as tools.sh's ensure_python_tools.
ensure_bench_python() {
  local stamp="$VENV/.bench-requirements.sha" want
  want="$(sha256sum bench/requirements.txt | cut -d' ' -f1)"
  [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && return 0
  log "installing the benchmarks' Python packages into .venv (bench/requirements.txt)"
  "$VENV/bin/python" -m pip install --quiet -r bench/requirements.txt
  echo "$want" >"$stamp"
}

SOURCE="${BENCH_SOURCE:-$ROOT}"

# `-p <package>` for every function under functions/ of the source (the sweeper too, once it
# exists).
function_packages() {
  local dir name
  for dir in "$SOURCE"/functions/*/; do
    [[ -f "$dir/Cargo.toml" ]] || continue
    name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -1)"
    printf -- '-p\n%s\n' "$name"
  done
}

# The Lambda zips of both architectures. scripts/build-lambdas.sh (the deploy packaging) writes
# target/lambda-<arch>/<function>/bootstrap.zip: reuse it, so the sizes are the deployed ones.
# Without it, or when building another source, cargo lambda writes target/bench/lambda-<arch>.
zip_root=target
build_zips() {
  if [[ -f scripts/build-lambdas.sh && "$SOURCE" == "$ROOT" ]]; then
    bash scripts/build-lambdas.sh arm64 x86_64 || log "scripts/build-lambdas.sh failed: no zip sizes"
    return 0
  fi
  zip_root=target/bench
  "$VENV/bin/python" -m pip install --quiet "cargo-lambda==1.9.2"
  rustup target add aarch64-unknown-linux-gnu >/dev/null
  local arch flag
  for arch in x86_64 arm64; do
    flag=--x86-64
    [[ $arch == arm64 ]] && flag=--arm64
    (cd "$SOURCE" && PATH="$VENV/bin:$PATH" CARGO_TARGET_DIR="$ROOT/target/bench/lambda-build" \
      cargo lambda build --release --quiet "$flag" --output-format zip \
      --lambda-dir "$ROOT/target/bench/lambda-$arch" "${packages[@]}") || log "$arch zips failed"
  done
}

ensure_rust
ensure_python_tools
ensure_bench_python
mapfile -t packages < <(function_packages)

if ((smoke)); then
  "$VENV/bin/python" -m unittest discover -s bench/tests  # the harness's unit tests (heat.py's DynamoDB rules)
  log "bench smoke: debug builds of the functions and the local fleet"
  # One invocation (the features unify, unlike the deployed build): the smoke run checks that
  # every step works, not what the deployed binaries measure.
  cargo build --quiet "${packages[@]}" -p taskfleet-localfleet --bins
  timeout -k 10 420 "$VENV/bin/python" bench/harness/run.py --smoke \
    --rust-dir target/debug --fleet-binary target/debug/taskfleet-local \
    --zip-dirs "x86_64=target/lambda-x86_64,arm64=target/lambda-arm64"
  exit
fi

log "release builds of the functions and the local fleet"
# Two cargo invocations: built together, the local fleet's features (axum, tracing-subscriber's
# ansi, ...) would be unified into the functions' dependencies, and the functions measured
# would not be the ones deployed (scripts/build-lambdas.sh builds them alone too).
(cd "$SOURCE" && export CARGO_TARGET_DIR="$ROOT/target" &&
  cargo build --release --quiet "${packages[@]}" --bins &&
  cargo build --release --quiet -p taskfleet-localfleet --bins)
if [[ "${BENCH_ZIPS:-1}" == 1 ]]; then
  log "Lambda zips (x86_64, arm64)"
  build_zips
fi
log "running the benchmarks (bounded: at most 12 minutes)"
timeout -k 10 720 "$VENV/bin/python" bench/harness/run.py \
  --rust-dir target/release --fleet-binary target/release/taskfleet-local \
  --zip-dirs "x86_64=$zip_root/lambda-x86_64,arm64=$zip_root/lambda-arm64" \
  --command "${BENCH_SOURCE:+BENCH_SOURCE=$BENCH_SOURCE }make bench" --built-from "${BENCH_SOURCE:-the work tree}"
