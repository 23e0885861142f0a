#!/usr/bin/env bash
# Shared by the packaging scripts (source it, after nothing else): installs what packaging and
# its checks need, from the package registries only, and only when missing or outdated.
#   - Python tools pinned in deploy/requirements.txt (cargo-lambda + zig, cfn-lint, checkov) in a
#     venv of their own, .venv/deploy: checkov pins boto3/botocore 1.35, which would downgrade
#     the AWS emulator's in .venv. Reinstalled only when that file changes.
#   - Node packages pinned in package-lock.json (osls, playwright-core), by `npm ci`, only when
#     the lock file changes.
#   - the Rust targets of both Lambda architectures, by rustup.
#   - Debian's chromium, for the dashboard's browser test.

source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"

DEPLOY_VENV="$VENV/deploy"
# Architectures the fleet is built for: serverless.yml's `arch` parameter.
ARCHS=(arm64 x86_64)

# Offline packaging: no credentials of the caller's are read, nothing phones home.
export SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off

ensure_deploy_python() {
  local stamp="$DEPLOY_VENV/.requirements.sha" want
  want="$(sha256sum "$ROOT/deploy/requirements.txt" | cut -d' ' -f1)"
  if ! [[ -x "$DEPLOY_VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "installing packaging tools into .venv/deploy (deploy/requirements.txt)"
    [[ -x "$DEPLOY_VENV/bin/python" ]] || python3 -m venv "$DEPLOY_VENV"
    "$DEPLOY_VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
    "$DEPLOY_VENV/bin/python" -m pip install --quiet -r "$ROOT/deploy/requirements.txt"
    echo "$want" >"$stamp"
  fi
  # cargo finds `cargo-lambda` on PATH; cargo-lambda finds zig through this venv's python.
  case ":$PATH:" in *":$DEPLOY_VENV/bin:"*) ;; *) export PATH="$DEPLOY_VENV/bin:$PATH" ;; esac
}

ensure_node_modules() {
  local stamp="$ROOT/node_modules/.package-lock.sha" want
  want="$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  command -v npm >/dev/null || { echo "npm is required (Node.js >= 20.19)" >&2; return 1; }
  log "installing Node packages (package-lock.json)"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}

# The Rust target of a Lambda architecture (arm64 | x86_64).
rust_target() {
  case "$1" in
    arm64) echo aarch64-unknown-linux-gnu ;;
    x86_64) echo x86_64-unknown-linux-gnu ;;
    *) echo "unknown architecture $1 (arm64 | x86_64)" >&2; return 1 ;;
  esac
}

ensure_rust_targets() {
  local installed arch target
  installed="$(rustup target list --installed)"
  for arch in "$@"; do
    target="$(rust_target "$arch")"
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
  done
}

ensure_chromium() {
  command -v chromium >/dev/null && return 0
  log "installing Debian's chromium (browser test)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

# Cargo package names of the deployable functions: every crate under functions/.
function_packages() {
  local manifest
  for manifest in "$ROOT"/functions/*/Cargo.toml; do
    sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1
  done
}

# Lambda function names (= binary names) serverless.yml deploys.
serverless_functions() {
  sed -n '/^functions:/,/^[a-z]/ s/^  \([a-z][a-z_-]*\):$/\1/p' "$ROOT/serverless.yml"
}

# Runs `serverless package` offline for one architecture into target/serverless/<arch> (or
# $PACKAGE_DIR); extra arguments go to serverless (e.g. --param artifacts=…, --region …).
serverless_package() {
  local arch=$1
  shift
  (
    cd "$ROOT"
    # Dummy credentials: packaging needs none, but the framework looks for some.
    export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=not-a-secret AWS_REGION=us-east-1
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
    npx --no-install serverless package --stage "${STAGE:-ci}" --param "arch=$arch" \
      --package "${PACKAGE_DIR:-target/serverless/$arch}" "$@"
  )
}
