#!/usr/bin/env bash
# `make load`: a game day's traffic against a running `make dev` (in another terminal): clients
# submit, poll and cancel tasks and send a few bad requests, while the example external service
# is made to fail, slow down or lose callbacks for a window of the run; the local alarms'
# transitions are printed as they happen. Bounded in time and tasks, loopback only, stops by
# itself. Settings and defaults: scripts/load.py; drills: README, operations.
#
#   make load                                              two calm minutes
#   make load LOAD_REFUSE_RATIO=1 LOAD_FAIL_AFTER=60 LOAD_FAIL_FOR=90 LOAD_SECONDS=300
#                                                          the external service down for 90 s
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$ROOT"

python=python3
[[ -x "$VENV/bin/python" ]] && python="$VENV/bin/python"
exec "$python" scripts/load.py
