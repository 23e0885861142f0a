#!/usr/bin/env bash
# The API contract: checks openapi.yaml (valid OpenAPI, every example matches its schema), then
# starts the AWS emulator, the example external service and the local fleet on free loopback
# ports, creates a few tasks, and runs schemathesis against the fleet with openapi.yaml: every
# answer must be documented (status, content type, headers, body schema) and none may be a 5xx.
# Bounded (examples per operation, seed, timeout); stops everything it started, also on failure.
#
#   CHECK_API_MAX_EXAMPLES  examples per operation and phase (default 25)
#   CHECK_API_SEED          hypothesis seed (default 20261127)
#   CHECK_API_TIMEOUT       seconds schemathesis may take (default 300)
#   CHECK_API_ARGS          extra `st run` arguments, e.g. "--include-operation-id getTask"
#   TASKFLEET_DEV_KEY       the client key to test with (default: a fresh one for this run)
#   CHECK_API_SIGNING_SECRETS
#                           `whsec_…` secrets: callbacks must then be signed (default: none, so
#                           generated callbacks reach body validation and the token check)
#   CHECK_API_NO_BUILD=1    use the binaries already built (no cargo build)
#   CHECK_API_BIN_DIR       where taskfleet-local and example-service are (default target/debug)
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$ROOT"

WORK="$ROOT/target/check-api"
API_REQUIREMENTS="$ROOT/tests/api/requirements.txt"
SPEC="$ROOT/openapi.yaml"

# Pinned in tests/api/requirements.txt; reinstalled only when that file (or
# scripts/requirements.txt, which shares the .venv) changes, as ensure_python_tools does.
ensure_api_tools() {
  local stamp="$VENV/.api-requirements.sha"
  local want
  want="$(cat "$API_REQUIREMENTS" "$ROOT/scripts/requirements.txt" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/st" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  log "installing API contract tools into .venv (tests/api/requirements.txt)"
  "$VENV/bin/python" -m pip install --quiet -r "$API_REQUIREMENTS"
  echo "$want" >"$stamp"
}

ensure_python_tools
ensure_api_tools

log "openapi.yaml: valid OpenAPI, examples match their schemas"
"$VENV/bin/python" "$ROOT/tests/api/check_spec.py" "$SPEC"

if [[ "${CHECK_API_NO_BUILD:-}" != 1 ]]; then
  ensure_rust
  log "building the local fleet"
  cargo build --quiet -p taskfleet-localfleet -p taskfleet-example-service
fi

BIN="${CHECK_API_BIN_DIR:-$ROOT/target/debug}"
rm -rf "$WORK"
mkdir -p "$WORK"

# The client key of this run, shaped like an issued key (`tfk_<8>_<43>`): taskfleet-local puts
# TASKFLEET_DEV_KEY into the emulator's key table at start, as for `make dev`.
export TASKFLEET_DEV_KEY=${TASKFLEET_DEV_KEY:-tfk_checkapi_$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')}
export TASKFLEET_PREFIX="taskfleet-checkapi"
export METRICS_INTERVAL_SECONDS=60
export EXAMPLE_DELAY_MS=100
export WEBHOOK_SIGNING_SECRETS="${CHECK_API_SIGNING_SECRETS:-}"
unset CALLBACK_BASE_URL EXTERNAL_SERVICE_URL

pids=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_moto
  exit "$status"
}
trap cleanup EXIT INT TERM

MOTO_LOG="$WORK/moto.log" start_moto

export EXAMPLE_SERVICE_PORT
EXAMPLE_SERVICE_PORT=$(free_port)
"$BIN/example-service" >"$WORK/example-service.log" 2>&1 &
pids+=($!)
wait_for_port "$EXAMPLE_SERVICE_PORT" 30
export EXTERNAL_SERVICE_URL="http://127.0.0.1:$EXAMPLE_SERVICE_PORT/jobs"

export PORT
PORT=$(free_port)
API="http://127.0.0.1:$PORT"
"$BIN/taskfleet-local" >"$WORK/fleet.log" 2>&1 &
pids+=($!)
if ! wait_for_port "$PORT" 60; then
  tail -n 20 "$WORK/fleet.log" >&2
  exit 1
fi
log "local fleet on $API (logs in target/check-api/)"

# A few tasks in each final state, so the task routes meet real ids too: one DONE, one FAILED
# (the example service fails payloads with a string "fail"), one cancelled.
log "creating tasks"
fleet_log() {
  echo "--- last lines of target/check-api/fleet.log:" >&2
  tail -n 20 "$WORK/fleet.log" >&2
}
"$VENV/bin/python" - "$API" "$WORK/task-ids.dict" <<'PY' || { fleet_log; exit 1; }
import json, os, sys, time, urllib.error, urllib.request

api, out = sys.argv[1], sys.argv[2]
key = os.environ["TASKFLEET_DEV_KEY"]

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(api + path, data=data, method=method, headers={"x-api-key": key})
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        sys.exit(f"{method} {path}: {error}")

def submit(payload):
    status, body = call("POST", "/tasks", {"payload": payload})
    if status != 202:
        sys.exit(f"POST /tasks answered {status}: {body}\n"
                 "(is TASKFLEET_DEV_KEY a key the local fleet accepts?)")
    return body["task_id"]

done, failed = submit({"hello": "world"}), submit({"fail": "no capacity"})
cancelled = submit({"cancel": "me"})
status, body = call("DELETE", f"/tasks/{cancelled}")
if status not in (200, 409):
    sys.exit(f"DELETE /tasks/{cancelled} answered {status}: {body}")
deadline = time.monotonic() + 30
for task_id in (done, failed, cancelled):
    while True:
        status, body = call("GET", f"/tasks/{task_id}")
        if status == 200 and body["status"] in ("DONE", "FAILED"):
            break
        if time.monotonic() > deadline:
            sys.exit(f"task {task_id} did not finish in 30 s: {status} {body}")
        time.sleep(0.1)
with open(out, "w") as file:
    file.writelines(f'"{task_id}"\n' for task_id in (done, failed, cancelled))
print(f"tasks: {done} (DONE), {failed} (FAILED), {cancelled} (cancelled)")
PY

log "schemathesis against $API"
# Requests may take up to API Gateway's 30 s: GET /tasks/{task_id}?wait=20 holds one up to 20 s,
# and a POST /tasks/batch of 100 items takes ~10 s against the emulator (one request at a time).
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance
# `st` writes .hypothesis/ into its working directory: run it in the scratch directory.
status=0
(
  cd "$WORK"
  # shellcheck disable=SC2086 # CHECK_API_ARGS is a list of arguments
  timeout --kill-after=10 "${CHECK_API_TIMEOUT:-300}" \
    "$VENV/bin/st" --config-file "$ROOT/tests/api/schemathesis.toml" run "$SPEC" \
    --url "$API" \
    --checks "$checks" \
    --max-examples "${CHECK_API_MAX_EXAMPLES:-25}" \
    --seed "${CHECK_API_SEED:-20261127}" \
    --workers 1 \
    --request-timeout 30 \
    --report junit,har --report-dir "$WORK/report" \
    --no-color \
    ${CHECK_API_ARGS:-}
) || status=$?
# One closing line in the plain `N passed, N failed` form: one test per operation, plus the
# stateful scenarios (from schemathesis' JUnit report).
"$VENV/bin/python" - "$WORK/report" <<'PY' || true
import glob, sys, xml.etree.ElementTree as ET
reports = glob.glob(f"{sys.argv[1]}/junit-*.xml")
if reports:
    suite = ET.parse(reports[0]).getroot()
    tests, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    print(f"api-contract: {tests - failed - int(suite.get('skipped', 0))} passed, {failed} failed")
PY
if ((status == 124 || status == 137)); then
  echo "schemathesis did not finish within ${CHECK_API_TIMEOUT:-300} s" >&2
fi
if ((status != 0)); then
  echo "API contract check failed (reports in target/check-api/report/, fleet log target/check-api/fleet.log)" >&2
fi
exit "$status"
