#!/usr/bin/env bash
# Shared by the project's scripts (source it): installs what they need into the project's own
# .venv, and starts/stops the AWS emulator. Everything a fresh machine needs is installed here.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Python tools, pinned in scripts/requirements.txt; reinstalled only when that file changes.
ensure_python_tools() {
  local stamp="$VENV/.requirements.sha"
  local want
  want="$(sha256sum "$ROOT/scripts/requirements.txt" | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  log "installing Python tools into .venv (scripts/requirements.txt)"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install --quiet -r "$ROOT/scripts/requirements.txt"
  echo "$want" >"$stamp"
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    echo "cargo is required (install Rust with rustup)" >&2
    return 1
  fi
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something listens on 127.0.0.1:PORT. Fails after SECONDS (returns 1, says so), or
# at once when one of the PIDs given (the process that should open the port, and those it needs)
# has exited: returns 2 without a word, for the caller to report that process (its output).
wait_for_port() { # port seconds [pid...]
  local port=$1 seconds=$2 deadline=$((SECONDS + $2)) pid
  shift 2
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    for pid in "$@"; do
      kill -0 "$pid" 2>/dev/null || return 2
    done
    if ((SECONDS > deadline)); then
      echo "nothing listens on 127.0.0.1:$port after $seconds s" >&2
      return 1
    fi
    sleep 0.2
  done
}

# Starts the emulator (moto, with atomic DynamoDB writes: scripts/emulator.py) on
# 127.0.0.1:$1 (a free port if empty); sets MOTO_PID and exports the AWS_* variables the SDK
# reads (endpoint, region, dummy credentials).
start_moto() {
  local port=${1:-$(free_port)}
  local logfile=${MOTO_LOG:-"$ROOT/target/moto.log"}
  mkdir -p "$(dirname "$logfile")"
  "$VENV/bin/python" "$ROOT/scripts/emulator.py" -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 &
  MOTO_PID=$!
  local status=0
  wait_for_port "$port" 30 "$MOTO_PID" || status=$?
  if ((status != 0)); then
    stop_moto
    if ((status == 2)); then
      echo "the AWS emulator exited before it listened on 127.0.0.1:$port" >&2
    fi
    echo "--- last lines of $logfile:" >&2
    tail -n 20 "$logfile" >&2
    return 1
  fi
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
  unset AWS_PROFILE AWS_SESSION_TOKEN
  log "AWS emulator (moto) on $AWS_ENDPOINT_URL (pid $MOTO_PID, log $logfile)"
}

stop_moto() {
  if [[ -n "${MOTO_PID:-}" ]]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=
  fi
}
