#!/usr/bin/env bash
# `make package`: everything up to a deployable artifact, offline. Installs what it needs, builds
# the Lambda zips for both architectures, runs `serverless package` for each (dummy
# credentials), and lints each CloudFormation template (cfn-lint, checkov). Outputs:
#   target/lambda-<arch>/<function>/bootstrap.zip
#   target/serverless/<arch>/cloudformation-template-update-stack.json
set -euo pipefail
source "$(dirname "$0")/deploy-tools.sh"
cd "$ROOT"

step() { # name command…: runs a step and reports how long it took
  local name=$1 started=$SECONDS
  shift
  "$@"
  timings+=("$(printf '%-34s %4d s' "$name" $((SECONDS - started)))")
}
timings=()

step "tools (pip, npm, rustup)" eval 'ensure_deploy_python && ensure_node_modules && ensure_rust_targets "${ARCHS[@]}"'
step "cargo lambda build (${ARCHS[*]})" bash scripts/build-lambdas.sh "${ARCHS[@]}"

missing=()
for arch in "${ARCHS[@]}"; do
  while read -r function; do
    [[ -f "target/lambda-$arch/$function/bootstrap.zip" ]] || missing+=("target/lambda-$arch/$function/bootstrap.zip")
  done < <(serverless_functions)
done
if ((${#missing[@]})); then
  printf 'serverless.yml deploys functions that functions/ does not build:\n' >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi

for arch in "${ARCHS[@]}"; do
  step "serverless package ($arch)" serverless_package "$arch"
done
templates=()
for arch in "${ARCHS[@]}"; do templates+=("target/serverless/$arch/cloudformation-template-update-stack.json"); done
step "cfn-lint + checkov (${ARCHS[*]})" bash scripts/lint-template.sh "${templates[@]}"

log "packaged:"
for arch in "${ARCHS[@]}"; do
  printf '  %-7s %s\n' "$arch" "$(du -ch target/lambda-"$arch"/*/bootstrap.zip | tail -n 1 | cut -f1) in zips, template target/serverless/$arch/"
done
printf '  %s\n' "${timings[@]}"
