#!/usr/bin/env bash
# `make dev`: the whole fleet on this machine. Starts the AWS emulator (unless AWS_ENDPOINT_URL
# points at one), the example external service (unless EXTERNAL_SERVICE_URL points elsewhere)
# and the local fleet, prints where everything is, and stops it all on Ctrl-C.
#
# If one of the processes it started exits -- at start (a bad setting, a port taken) or later --
# it stops the others at once and exits non-zero, printing that process's last output last.
#
#   AWS_ENDPOINT_URL      set: use the emulator at this URL (another one, or a proxy in front of
#                         one, say a fault-injecting one) and start none; unset AWS_REGION,
#                         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY then default to us-east-1 and
#                         dummy keys, as with the emulator it starts
#   MOTO_PORT             port of the emulator it starts (default: a free one)
#   EXTERNAL_SERVICE_URL  set: POST jobs there rather than to the example service
#   EXAMPLE_SERVICE_PORT  port of the example service (default 3001)
#   PORT                  port of the local API (default 3000)
#   LOCAL_ALARM_PERIOD_SECONDS  every alarm's period in the local evaluation (default 10: an
#                         alarm of "3 of 5 minutes" fires after 3 of 5 such periods)
#   STATUS_INDEX_SHARDS   shards of the status index (default 4 here, 64 in AWS: see below)
# The example service's and the fleet's output (also shown here) and the emulator's log are in
# target/dev/<PORT>/.
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
export LOCAL_ALARM_PERIOD_SECONDS=${LOCAL_ALARM_PERIOD_SECONDS:-10}
# The emulator serves DynamoDB one request at a time and scans the table for every index query:
# with AWS's 64 status shards each metrics run is ~200 scans, which holds up every other request
# (the HTTP API's p99 passes the latency alarm's second). Sharding is tested by the adapter tests.
export STATUS_INDEX_SHARDS=${STATUS_INDEX_SHARDS:-4}
LOGS="$ROOT/target/dev/$PORT"
mkdir -p "$LOGS"

pids=()         # the example service and the fleet
followers=()    # `tail -f` of their output, once they are up
declare -A name_of=() log_of=()

# Stops, without a word, what this script started: the example service, the fleet, the emulator
# (not one found at AWS_ENDPOINT_URL), and the followers once they have shown all there was.
stop_all() {
  trap - EXIT INT TERM
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_moto
  for pid in "${followers[@]}"; do wait "$pid" 2>/dev/null || true; done
}
stop_on_signal() {
  log "stopping"
  stop_all
  exit 0
}
trap stop_all EXIT
trap stop_on_signal INT TERM

# Runs NAME's COMMAND in the background, its output into $LOGS/NAME.log.
start() { # name command...
  local name=$1
  shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  pids+=($!)
  name_of[$!]=$name
  log_of[$!]="$LOGS/$name.log"
}

# Every process started so far (the emulator too).
watched() { echo "${pids[@]}" "${MOTO_PID:-}"; }

# PID's process failed (HEADLINE says how): stops everything else, then prints the headline and
# the last LINES of that process's output -- the last thing on the screen -- and exits 1.
fail() { # pid headline [lines]
  local pid=$1 headline=$2 lines=${3:-20} logfile=${log_of[$1]}
  stop_all
  log "$headline; last lines of ${logfile#"$ROOT/"}:"
  tail -n "$lines" "$logfile" >&2
  exit 1
}

how() { # exit status -> words
  if (($1 > 128)); then echo "killed by SIG$(kill -l "$1")"; else echo "status $1"; fi
}

# Waits until PID's process listens on PORT; fails at once if any started process exits.
wait_until_up() { # pid port seconds
  local pid=$1 port=$2 seconds=$3 status=0 other what
  # shellcheck disable=SC2046 # pids, one word each
  wait_for_port "$port" "$seconds" $(watched) || status=$?
  if ((status == 2)); then
    for other in $(watched); do
      if ! kill -0 "$other" 2>/dev/null; then
        status=0
        wait "$other" || status=$?
        [[ "$other" == "$pid" ]] && what=it || what=${name_of[$pid]}
        fail "$other" "${name_of[$other]} exited ($(how "$status")) before $what listened on 127.0.0.1:$port"
      fi
    done
  fi
  if ((status != 0)); then
    fail "$pid" "${name_of[$pid]} did not listen on 127.0.0.1:$port within $seconds s"
  fi
}

if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
  export AWS_REGION=${AWS_REGION:-us-east-1}
  export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-$AWS_REGION}
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing}
  export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
  log "AWS endpoint $AWS_ENDPOINT_URL (from AWS_ENDPOINT_URL: no emulator started)"
else
  export MOTO_LOG=${MOTO_LOG:-"$LOGS/moto.log"}
  start_moto "${MOTO_PORT:-}" # (says why if the emulator does not start)
  name_of[$MOTO_PID]="the AWS emulator"
  log_of[$MOTO_PID]=$MOTO_LOG
fi

if [[ -z "${EXTERNAL_SERVICE_URL:-}" ]]; then
  export EXAMPLE_SERVICE_PORT=${EXAMPLE_SERVICE_PORT:-3001}
  start example-service ./target/debug/example-service
  wait_until_up "$!" "$EXAMPLE_SERVICE_PORT" 30
  export EXTERNAL_SERVICE_URL="http://127.0.0.1:$EXAMPLE_SERVICE_PORT/jobs"
fi

start taskfleet-local ./target/debug/taskfleet-local
wait_until_up "$!" "$PORT" 60

# Up: their output so far, then live (each follower ends once its process has exited).
for pid in "${pids[@]}"; do
  shown=$(stat -c %s "${log_of[$pid]}")
  head -c "$shown" "${log_of[$pid]}"
  tail -c "+$((shown + 1))" -s 0.5 --pid="$pid" -f "${log_of[$pid]}" &
  followers+=($!)
done

cat <<MSG

  taskfleet is running locally.
    API            http://127.0.0.1:$PORT
    dev client     dev   (x-api-key: $TASKFLEET_DEV_KEY)
    emulator       $AWS_ENDPOINT_URL
    external       $EXTERNAL_SERVICE_URL
    logs           ${LOGS#"$ROOT/"}/
    dashboard      http://127.0.0.1:$PORT/_local/dashboard
    alarms         http://127.0.0.1:$PORT/_local/alarms   (periods of $LOCAL_ALARM_PERIOD_SECONDS s)

  Try it:
    curl -s -X POST http://127.0.0.1:$PORT/tasks -H 'x-api-key: $TASKFLEET_DEV_KEY' \\
         -H 'content-type: application/json' -d '{"payload":{"hello":"world"}}'
    curl -s http://127.0.0.1:$PORT/tasks/<task_id> -H 'x-api-key: $TASKFLEET_DEV_KEY'
    make load      (in another terminal: a game day's traffic; README, operations: drills)

  Ctrl-C stops everything.

MSG

# Until Ctrl-C (the trap), or until one of them exits.
died=
status=0
# shellcheck disable=SC2046 # pids, one word each
wait -n -p died $(watched) || status=$?
[[ -n "$died" ]] || exit 1 # (nothing left to wait for: cannot happen)
# Its output is on the screen already (the followers have shown all of it): a reminder will do.
fail "$died" "${name_of[$died]} exited ($(how "$status"))" 5
