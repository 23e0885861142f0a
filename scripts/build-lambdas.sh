#!/usr/bin/env bash
# Builds every function under functions/ as a Lambda zip with cargo-lambda, for each
# architecture given (default: arm64 x86_64):
#   target/lambda-<arch>/<function>/bootstrap.zip
# One cargo invocation per architecture with only the function packages (-p each), so the
# features that dev-only crates (local fleet, tests) turn on are not built into the binaries.
# Their own target directory (target/lambda-build, or TASKFLEET_LAMBDA_TARGET_DIR): a release
# build here neither waits for nor blocks the debug builds of `make dev` / `make test`, and each
# keeps its cache. CI points it outside the clone (scripts/check-package.sh) so that a machine
# that runs CI again reuses the compiled dependencies.
set -euo pipefail
source "$(dirname "$0")/deploy-tools.sh"
cd "$ROOT"

archs=("$@")
((${#archs[@]})) || archs=("${ARCHS[@]}")

ensure_rust
ensure_deploy_python
ensure_rust_targets "${archs[@]}"

target_dir="${TASKFLEET_LAMBDA_TARGET_DIR:-$ROOT/target/lambda-build}"
packages=()
while read -r package; do packages+=(-p "$package"); done < <(function_packages)

for arch in "${archs[@]}"; do
  started=$SECONDS
  log "cargo lambda build --release ($arch): ${packages[*]}"
  CARGO_TARGET_DIR="$target_dir" cargo lambda build --release --quiet --target "$(rust_target "$arch")" \
    --output-format zip --lambda-dir "target/lambda-$arch" "${packages[@]}"
  log "built $(find "target/lambda-$arch" -name bootstrap.zip | wc -l) zips for $arch in $((SECONDS - started)) s"
done
