#!/usr/bin/env bash
# The offline package checks of `make test`, on a fresh machine too: `scripts/package.sh` (zips
# for both architectures, `serverless package`, cfn-lint, checkov), then a look inside the zips:
# each holds one executable `bootstrap` built for the architecture its template declares.
# tests/deploy.rs (run by `cargo test` afterwards) reads the arm64 template this writes.
set -euo pipefail
source "$(dirname "$0")/deploy-tools.sh"
cd "$ROOT"

# The release builds' dependencies survive across CI runs on the same machine (CI clones the
# repository afresh each time; this cache lives outside the clone).
export TASKFLEET_LAMBDA_TARGET_DIR="${TASKFLEET_LAMBDA_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/taskfleet/lambda-build}"

bash scripts/package.sh
log "checking the zips against the templates"
python3 deploy/check_artifacts.py "${ARCHS[@]}"
