#!/usr/bin/env bash
# `make deploy STAGE=… [ARCH=arm64|x86_64] [REGION=…]`: the real deploy, for users with AWS
# credentials (the usual AWS_PROFILE / AWS_ACCESS_KEY_ID… / SSO environment). Builds the zips
# of one architecture and runs `serverless deploy`. See the README's deploy guide first: the
# webhook signing secret must exist in Secrets Manager, and EXTERNAL_SERVICE_URL must be set.
set -euo pipefail
source "$(dirname "$0")/deploy-tools.sh"
cd "$ROOT"

: "${STAGE:?set STAGE, e.g. make deploy STAGE=prod}"
: "${EXTERNAL_SERVICE_URL:?set EXTERNAL_SERVICE_URL: where the caller POSTs jobs}"
ARCH=${ARCH:-arm64}
REGION=${REGION:-${AWS_REGION:-us-east-1}}
rust_target "$ARCH" >/dev/null

ensure_node_modules
bash scripts/build-lambdas.sh "$ARCH"
log "serverless deploy --stage $STAGE --region $REGION --param arch=$ARCH"
npx --no-install serverless deploy --stage "$STAGE" --region "$REGION" --param "arch=$ARCH"
