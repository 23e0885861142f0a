#!/usr/bin/env bash
# `make test`: installs what it needs, checks formatting and lints, starts the AWS emulator on a
# free loopback port, runs every test (unit, adapter, end-to-end), and stops what it started,
# also when a test fails.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$ROOT"

ensure_rust
ensure_python_tools

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "offline package checks: zips (arm64, x86_64), serverless package, cfn-lint, checkov"
bash scripts/check-package.sh

trap stop_moto EXIT
start_moto
log "the emulator's SQS fair queues, through boto3 (tests/emulator)"
"$VENV/bin/python" -m unittest discover -s tests/emulator
log "cargo test (unit, adapters against the emulator, end-to-end)"
cargo test --workspace

log "API contract: openapi.yaml against the local fleet (schemathesis)"
bash scripts/check-api.sh

log "make dev: fails fast on a bad setting, uses the emulator at AWS_ENDPOINT_URL"
bash scripts/check-dev.sh

log "browser test of the local dashboard"
bash scripts/check-dashboard.sh

log "benchmark harness smoke (one repetition of each step, no timings asserted)"
bash scripts/bench.sh --smoke
