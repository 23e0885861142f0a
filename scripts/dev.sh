#!/usr/bin/env bash
# `make dev`: the whole fleet on this machine. Starts the AWS emulator, the example external
# service (unless EXTERNAL_SERVICE_URL points elsewhere) and the local fleet, prints where
# everything is, and stops it all on Ctrl-C.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$ROOT"

ensure_rust
ensure_python_tools
log "building"
cargo build --quiet -p taskfleet-localfleet -p taskfleet-example-service

export PORT=${PORT:-3000}
# The development client's key (made to exist in the emulator's table at start; real keys are
# issued with `taskfleet-admin issue`).
export TASKFLEET_DEV_KEY=${TASKFLEET_DEV_KEY:-tfk_devlocal_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG}
export METRICS_INTERVAL_SECONDS=${METRICS_INTERVAL_SECONDS:-10}

pids=()
cleanup() {
  trap - EXIT INT TERM
  log "stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_moto
}
trap cleanup EXIT INT TERM

start_moto "${MOTO_PORT:-}"

if [[ -z "${EXTERNAL_SERVICE_URL:-}" ]]; then
  export EXAMPLE_SERVICE_PORT=${EXAMPLE_SERVICE_PORT:-3001}
  ./target/debug/example-service &
  pids+=($!)
  wait_for_port "$EXAMPLE_SERVICE_PORT" 30
  export EXTERNAL_SERVICE_URL="http://127.0.0.1:$EXAMPLE_SERVICE_PORT/jobs"
fi

./target/debug/taskfleet-local &
pids+=($!)
wait_for_port "$PORT" 60

cat <<MSG

  taskfleet is running locally.
    API            http://127.0.0.1:$PORT
    dev client     dev   (x-api-key: $TASKFLEET_DEV_KEY)
    emulator       $AWS_ENDPOINT_URL
    external       $EXTERNAL_SERVICE_URL

  Try it:
    curl -s -X POST http://127.0.0.1:$PORT/tasks -H 'x-api-key: $TASKFLEET_DEV_KEY' \\
         -H 'content-type: application/json' -d '{"payload":{"hello":"world"}}'
    curl -s http://127.0.0.1:$PORT/tasks/<task_id> -H 'x-api-key: $TASKFLEET_DEV_KEY'

  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}" || true
