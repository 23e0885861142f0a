#!/usr/bin/env bash
# Measures candidate release-profile settings on one function (ingest: the AWS SDK, lambda_http
# and the shared crates, like every function) and writes bench/profiles.md: binary and zip size,
# cold start and warm CPU (one harness run per variant, back to back), and build time.
#
#   bash bench/profiles.sh [build|measure|all]   (default: all; PROFILES="s-fat …" limits the build)
#
# Slow on purpose and not part of `make bench`: every variant is a full optimised build of the
# dependency tree in its own target/<profile> (about 5-15 min each on 2 cores). The variants are
# profiles defined on the command line (--config), so Cargo.toml holds only the chosen one.
# Needs target/release (make bench) for the "current" row and to make the harness's templates.
# BENCH_SOURCE=DIR builds another checkout of the workspace (say a `git archive` of HEAD while the
# work tree is mid-change) into this repository's target/.
set -euo pipefail
source "$(dirname "$0")/../scripts/tools.sh"
cd "$ROOT"

# name | settings (profile keys, inheriting [profile.release])
variants=(
  "cargo-default|opt-level=3 lto=false codegen-units=16 strip=\"none\" panic=\"unwind\""
  "o3-fat|opt-level=3 lto=\"fat\" codegen-units=1 strip=\"symbols\" panic=\"unwind\""
  "s-fat|opt-level=\"s\" lto=\"fat\" codegen-units=1 strip=\"symbols\" panic=\"unwind\""
  "s-fat-abort|opt-level=\"s\" lto=\"fat\" codegen-units=1 strip=\"symbols\" panic=\"abort\""
)

# Builds each variant into target/bench-<name>/ (PROFILES="a b" limits it to some) and notes its
# settings and build time in target/bench/profile-<name>.build.
build_variants() {
  local variant id name setting args started
  for variant in "${variants[@]}"; do
    id="${variant%%|*}"
    [[ -n "${PROFILES:-}" && " $PROFILES " != *" $id "* ]] && continue
    name="bench-$id"
    args=(--config "profile.$name.inherits=\"release\"")
    for setting in ${variant#*|}; do args+=(--config "profile.$name.$setting"); done
    log "profile $name: ${variant#*|}"
    started=$SECONDS
    (cd "${BENCH_SOURCE:-$ROOT}" && CARGO_TARGET_DIR="$ROOT/target" \
      cargo build --quiet "${args[@]}" --profile "$name" -p taskfleet-ingest)
    printf '%s\t%s\t%s\n' "${variant#*|}" "$((SECONDS - started))" "target/$name" >"target/bench/profile-$name.build"
  done
}

# Runs the harness (cold and warm, ingest, Rust) on every built variant and on the release build
# (PROFILES_RELEASE_DIR, default target/release: it must come from the same source), in
# PROFILES_ROUNDS interleaved rounds (default 3) so a burst of load on this shared machine hits
# one round of every variant rather than all rounds of one; then writes bench/profiles.md.
measure_variants() {
  local variant name dir release_dir="${PROFILES_RELEASE_DIR:-target/release}" fleet round
  fleet="$release_dir/taskfleet-local"  # makes the reference table the harness copies
  [[ -x "$fleet" ]] || fleet=target/release/taskfleet-local
  printf '%s\t\t%s\n' "[profile.release] of Cargo.toml" "$release_dir" >target/bench/profile-release.build
  rm -f target/bench/profile-*.round-*.json
  for round in $(seq "${PROFILES_ROUNDS:-3}"); do
    for name in release $(for variant in "${variants[@]}"; do echo "bench-${variant%%|*}"; done); do
      dir="target/$name"
      [[ $name == release ]] && dir="$release_dir"
      [[ -x "$dir/ingest" ]] || continue
      log "round $round: measuring $name"
      timeout -k 10 300 "$VENV/bin/python" bench/harness/run.py --steps cold,warm --functions ingest \
        --implementations rust --rust-dir "$dir" --template-dir "$release_dir" --fleet-binary "$fleet" \
        --no-report --json "target/bench/profile-$name.round-$round.json"
    done
  done
  "$VENV/bin/python" bench/harness/profiles_report.py >bench/profiles.md
  log "wrote bench/profiles.md"
}

mkdir -p target/bench
case "${1:-all}" in
  build) build_variants ;;
  measure) measure_variants ;;
  all) build_variants && measure_variants ;;
  *) echo "usage: bench/profiles.sh [build|measure|all]" >&2; exit 2 ;;
esac
