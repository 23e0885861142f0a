#!/usr/bin/env bash
# The local dashboard's browser test: starts a local fleet (`scripts/dev.sh`: its own emulator,
# example service and fleet, on free loopback ports), then tests/browser/dashboard.test.mjs
# loads /_local/dashboard in Debian's headless chromium with tasks in flight, checks that the
# charts are drawn with data and the alarms' states shown, saves a screenshot
# (target/dashboard.png), makes the example service refuse every job until the page shows
# ExternalErrorRateAlarm in ALARM, and saves a screenshot of that (target/dashboard-alarm.png; the
# README's is a copy: docs/local-dashboard-drill.png). Stops what it started, also when the test
# fails.
set -euo pipefail
source "$(dirname "$0")/deploy-tools.sh"
cd "$ROOT"

ensure_python_tools
ensure_node_modules
ensure_chromium

export PORT MOTO_PORT EXAMPLE_SERVICE_PORT
PORT="$(free_port)"
MOTO_PORT="$(free_port)"
EXAMPLE_SERVICE_PORT="$(free_port)"
export TASKFLEET_PREFIX="dashboard-$RANDOM"
# Gauges every 2 s; callbacks after 3 s, so some tasks are still IN_PROGRESS when the page loads;
# alarm periods of 3 s, so that the drill's alarm fires within seconds.
export METRICS_INTERVAL_SECONDS=2 EXAMPLE_DELAY_MS=3000 LOCAL_ALARM_PERIOD_SECONDS=3
# dev.sh makes its development client's key exist and prints it: the test uses that one. It
# would use the emulator of AWS_ENDPOINT_URL (make test's): unset, it starts one of its own.
unset EXTERNAL_SERVICE_URL CALLBACK_BASE_URL TASKFLEET_DEV_KEY AWS_ENDPOINT_URL

mkdir -p target
log "starting a local fleet (log: target/check-dashboard-fleet.log)"
bash scripts/dev.sh >target/check-dashboard-fleet.log 2>&1 </dev/null &
fleet=$!
stop_fleet() {
  # dev.sh stops the emulator, service and fleet it started when it is told to.
  kill -TERM "$fleet" 2>/dev/null || true
  wait "$fleet" 2>/dev/null || true
}
trap stop_fleet EXIT
# The first run builds the local fleet; later runs start in seconds. dev.sh prints its banner
# (with the client key) once the API listens. Give up as soon as dev.sh exits (a build error, a
# port taken).
deadline=$((SECONDS + 900))
key_line() { grep -o 'x-api-key: [^)]*' target/check-dashboard-fleet.log | head -n 1; }
until [[ -n "$(key_line)" ]]; do
  if ! kill -0 "$fleet" 2>/dev/null || ((SECONDS > deadline)); then
    echo "the local fleet did not start:" >&2
    tail -n 40 target/check-dashboard-fleet.log >&2
    exit 1
  fi
  sleep 0.5
done

log "browser test of /_local/dashboard (screenshots: target/dashboard.png, target/dashboard-alarm.png)"
TASKFLEET_DEV_KEY="$(key_line | cut -d' ' -f2)" TASKFLEET_URL="http://127.0.0.1:$PORT" \
  EXAMPLE_SERVICE_URL="http://127.0.0.1:$EXAMPLE_SERVICE_PORT" \
  SCREENSHOT="$ROOT/target/dashboard.png" ALARM_SCREENSHOT="$ROOT/target/dashboard-alarm.png" \
  node --test tests/browser/
