#!/usr/bin/env bash
# One repetition of every benchmark step on debug builds, asserting that each step works and no
# timing — so the harness cannot rot. `make test` runs it.
exec bash "$(dirname "$0")/../scripts/bench.sh" --smoke
