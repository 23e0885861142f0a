#!/usr/bin/env bash
# Lints packaged CloudFormation templates: cfn-lint (no errors allowed; settings in
# deploy/cfn-lint.yaml) and checkov (no failed check; skips and their reasons in
# deploy/checkov.yaml or on the resource). Arguments: templates (default: every
# target/serverless/*/cloudformation-template-update-stack.json).
set -euo pipefail
source "$(dirname "$0")/deploy-tools.sh"
cd "$ROOT"
ensure_deploy_python

templates=("$@")
((${#templates[@]})) || templates=(target/serverless/*/cloudformation-template-update-stack.json)
for template in "${templates[@]}"; do
  [[ -f "$template" ]] || { echo "no template at $template: run scripts/package.sh first" >&2; exit 1; }
  log "cfn-lint $template"
  cfn-lint --config-file deploy/cfn-lint.yaml -t "$template"
  log "checkov $template"
  # BC_SKIP_MAPPING: no look-up of guideline links (there is no network to fetch them from).
  BC_SKIP_MAPPING=TRUE checkov --config-file deploy/checkov.yaml -f "$template"
done
