#!/usr/bin/env bash
# `make dev` (scripts/dev.sh) as its user meets it; `make test` runs this.
#   1. A bad setting (EXTERNAL_SERVICE_URL=not-a-url, MAX_ATTEMPTS=0): dev.sh exits non-zero
#      within 15 s (not after its 60 s wait for the API), its last lines name the setting, and
#      nothing it started is left running.
#   2. AWS_ENDPOINT_URL at an emulator already running: dev.sh starts no emulator of its own, the
#      fleet comes up on PORT with its table in that emulator; stopped (SIGTERM, as Ctrl-C), dev.sh
#      stops what it started and leaves that emulator running.
# Free loopback ports, bounded waits; stops everything it started, also when a check fails.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$ROOT"

ensure_rust
ensure_python_tools
log "building the local fleet"
cargo build --quiet -p taskfleet-localfleet -p taskfleet-example-service

WORK="$ROOT/target/check-dev"
rm -rf "$WORK"
mkdir -p "$WORK"
export TASKFLEET_PREFIX="checkdev-$RANDOM"
unset EXTERNAL_SERVICE_URL CALLBACK_BASE_URL MAX_ATTEMPTS

dev=
out=
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$dev" ]]; then
    kill -TERM "$dev" 2>/dev/null || true
    wait "$dev" 2>/dev/null || true
  fi
  stop_moto
  exit "$status"
}
trap cleanup EXIT INT TERM

fail() {
  echo "check-dev: FAILED: $*" >&2
  if [[ -n "$out" && -f "$out" ]]; then
    echo "--- last lines of dev.sh's output (${out#"$ROOT/"}):" >&2
    tail -n 30 "$out" >&2
  fi
  exit 1
}

listens() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# dev.sh (its own emulator) with NAME=VALUE must give up at once, naming NAME last.
bad_setting() { # name value
  local name=$1 value=$2 port moto_port service_port status=0 began=$SECONDS p
  port=$(free_port)
  moto_port=$(free_port)
  service_port=$(free_port)
  out="$WORK/bad-$name.out"
  env -u AWS_ENDPOINT_URL "$name=$value" PORT="$port" MOTO_PORT="$moto_port" \
    EXAMPLE_SERVICE_PORT="$service_port" \
    timeout --kill-after=5 15 bash scripts/dev.sh >"$out" 2>&1 </dev/null || status=$?
  ((status != 0)) || fail "$name=$value: dev.sh exited 0"
  ((status != 124 && status != 137)) || fail "$name=$value: dev.sh still ran after 15 s"
  tail -n 3 "$out" | grep -q "$name" || fail "$name=$value: dev.sh's last lines do not name $name"
  for p in "$port" "$moto_port" "$service_port"; do
    if listens "$p"; then fail "$name=$value: 127.0.0.1:$p still listens after dev.sh exited"; fi
  done
  if pgrep -f "emulator.py -H 127.0.0.1 -p $moto_port\$" >/dev/null; then
    fail "$name=$value: dev.sh left its emulator running"
  fi
  rm -rf "$ROOT/target/dev/$port" # dev.sh's logs of this run (kept when a check fails)
  log "ok: $name=$value: dev.sh exited with $status after $((SECONDS - began)) s, $name in its last lines"
}

log "dev.sh with a bad setting"
bad_setting EXTERNAL_SERVICE_URL not-a-url
bad_setting MAX_ATTEMPTS 0

log "dev.sh with AWS_ENDPOINT_URL at a running emulator"
MOTO_LOG="$WORK/moto.log" start_moto # exports AWS_ENDPOINT_URL
endpoint=$AWS_ENDPOINT_URL
port=$(free_port)
service_port=$(free_port)
out="$WORK/endpoint.out"
: >"$out"
PORT="$port" EXAMPLE_SERVICE_PORT="$service_port" bash scripts/dev.sh >"$out" 2>&1 </dev/null &
dev=$!
deadline=$((SECONDS + 60))
until grep -q "taskfleet is running locally" "$out"; do
  kill -0 "$dev" 2>/dev/null || fail "dev.sh exited before the fleet was up"
  ((SECONDS < deadline)) || fail "the fleet was not up within 60 s"
  sleep 0.2
done
grep -qF "AWS endpoint $endpoint (from AWS_ENDPOINT_URL" "$out" || fail "dev.sh did not say it uses $endpoint"
if grep -q "AWS emulator (moto) on" "$out" || pgrep -P "$dev" -f emulator.py >/dev/null; then
  fail "dev.sh started an emulator of its own"
fi
listens "$port" || fail "nothing listens on PORT $port"
"$VENV/bin/python" - "$endpoint" "$TASKFLEET_PREFIX-tasks" <<'PY' || fail "the fleet's table is not in the emulator at $endpoint"
import sys
import boto3

tables = boto3.client("dynamodb", endpoint_url=sys.argv[1]).list_tables()["TableNames"]
if sys.argv[2] not in tables:
    sys.exit(f"{sys.argv[2]} is not among {tables}")
PY
log "ok: the fleet is up on 127.0.0.1:$port against $endpoint, no second emulator"

kill -TERM "$dev"
deadline=$((SECONDS + 15))
while kill -0 "$dev" 2>/dev/null; do
  ((SECONDS < deadline)) || fail "dev.sh still ran 15 s after SIGTERM"
  sleep 0.2
done
status=0
wait "$dev" || status=$?
dev=
((status == 0)) || fail "dev.sh exited with $status after SIGTERM"
for p in "$port" "$service_port"; do
  if listens "$p"; then fail "127.0.0.1:$p still listens after dev.sh stopped"; fi
done
kill -0 "$MOTO_PID" 2>/dev/null && listens "${endpoint##*:}" || fail "dev.sh stopped the emulator it did not start"
rm -rf "$ROOT/target/dev/$port"
log "ok: stopped, it stopped the fleet and the example service, not the emulator"
echo "check-dev: 3 passed, 0 failed"
