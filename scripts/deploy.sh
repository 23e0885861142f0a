#!/usr/bin/env bash
# `make deploy STAGE=… [ARCH=arm64|x86_64] [REGION=…]`: the real deploy, for users with AWS
# credentials (the usual AWS_PROFILE / AWS_ACCESS_KEY_ID… / SSO environment). Checks what the
# stack needs from outside it (EXTERNAL_SERVICE_URL; the webhook signing secret in Secrets
# Manager, whose ARN the stack is packaged with), builds the zips of one architecture, packages
# the stack, runs the same cfn-lint and checkov as `make package` on that template, and deploys
# exactly what was checked (`serverless deploy --package`). See the README's deploy guide first.
#
#   TASKS_TABLE_NAME=…        the tasksTableName parameter: keep or import a table of that name
#   ROLLBACK_ON_ALARMS=false  CodeDeploy ignores the rollback alarms for this deploy (the fix for
#                             what set one off); README, "Safe deploys and rolling back"
set -euo pipefail
source "$(dirname "$0")/deploy-tools.sh"
cd "$ROOT"

: "${STAGE:?set STAGE, e.g. make deploy STAGE=prod}"
: "${EXTERNAL_SERVICE_URL:?set EXTERNAL_SERVICE_URL: where the caller POSTs jobs}"
ARCH=${ARCH:-arm64}
REGION=${REGION:-${AWS_REGION:-us-east-1}}
# The webhook signing secret's name (README, Before the first deploy); WEBHOOK_SECRET_NAME names
# another one.
SECRET_NAME=${WEBHOOK_SECRET_NAME:-taskfleet/$STAGE/webhook-signing-secrets}
# The completion-webhook master key's name (README, Before the first deploy);
# WEBHOOK_MASTER_KEY_NAME names another one.
MASTER_KEY_NAME=${WEBHOOK_MASTER_KEY_NAME:-taskfleet/$STAGE/webhook-master-key}
rust_target "$ARCH" >/dev/null

# The caller and the webhook read the secret at every cold start (a missing one would fail each
# of them), and their roles may read that one secret by its full ARN, which is looked up here and
# packaged as the webhookSecretArn parameter.
command -v aws >/dev/null || { echo "the AWS CLI (aws) is required to check the webhook signing secret" >&2; exit 1; }
log "checking the webhook signing secret $SECRET_NAME ($REGION)"
if ! secret_arn=$(aws secretsmanager describe-secret --secret-id "$SECRET_NAME" --region "$REGION" \
  --query ARN --output text) || [[ "$secret_arn" != arn:* ]]; then
  echo "no secret $SECRET_NAME in $REGION: create it first (README, Before the first deploy)" >&2
  exit 1
fi
log "checking the completion-webhook master key $MASTER_KEY_NAME ($REGION)"
if ! master_key_arn=$(aws secretsmanager describe-secret --secret-id "$MASTER_KEY_NAME" --region "$REGION" \
  --query ARN --output text) || [[ "$master_key_arn" != arn:* ]]; then
  echo "no secret $MASTER_KEY_NAME in $REGION: create it first (README, Before the first deploy)" >&2
  exit 1
fi

ensure_deploy_python
ensure_node_modules
bash scripts/build-lambdas.sh "$ARCH"

# The same parameters for packaging and deploying.
params=(--param "webhookSecretArn=$secret_arn")
params+=(--param "webhookMasterKeyArn=$master_key_arn")
[[ -z "${TASKS_TABLE_NAME:-}" ]] || params+=(--param "tasksTableName=$TASKS_TABLE_NAME")
case "${ROLLBACK_ON_ALARMS:-true}" in
  true) ;;
  false) params+=(--param "rollbackOnAlarms=false") ;;
  *) echo "ROLLBACK_ON_ALARMS is true or false, not $ROLLBACK_ON_ALARMS" >&2; exit 1 ;;
esac

package="target/serverless/deploy-$STAGE-$ARCH"
log "serverless package --stage $STAGE --region $REGION --param arch=$ARCH ${params[*]} → $package"
STAGE="$STAGE" PACKAGE_DIR="$package" serverless_package "$ARCH" --region "$REGION" "${params[@]}"
bash scripts/lint-template.sh "$package/cloudformation-template-update-stack.json"

log "serverless deploy --stage $STAGE --region $REGION --package $package"
npx --no-install serverless deploy --stage "$STAGE" --region "$REGION" --param "arch=$ARCH" \
  "${params[@]}" --package "$package"
