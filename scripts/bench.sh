#!/usr/bin/env bash
# THE benchmark command of sprocket-ops: runs every benchmark and writes BENCHMARKS.md at the
# repository root (overwritten), with the machine, the load, the commit, each result against
# its target (PASS/MISS) and how it was measured.
#
#   bash scripts/bench.sh
#
# As root on Debian with Docker running (like scripts/test.sh, whose preparation steps it
# repeats; OpenBao is not needed, Postgres is: benchmark 7c's watcher probes it):
#   1. prerequisites: cargo, the docker CLI, ../shared (Discord's OpenAPI spec for the fake
#      Discord), GNU time (`apt-get install -y time` when missing: peak RSS of `logs`)
#   2. the node becomes a single-node Swarm manager when it is not one
#   3. the FROM-scratch test images (scripts/build-test-images.sh)
#   4. release builds of `sprocket-ops`, of the benchmark program (tests/src/bin/bench/main.rs)
#      and of the pulumi stand-in (benchmark 6 runs it on both sides)
#   5. runs the benchmark with SPROCKET_OPS_BIN = the release `sprocket-ops`; services it
#      creates are labelled sprocket-ops.bench=<id> and removed on exit even if it is killed
# Exit code: 0 when every benchmark measured (a MISS is a result, not a failure), 1 when one
# could not run (its row says ERROR) or the preparation failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n==================== %s ====================\n' "$1"; }
die() {
    printf '\nscripts/bench.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# --- 1. prerequisites ----------------------------------------------------------------------
step "1. prerequisites"
command -v cargo >/dev/null || die "cargo is not on PATH (install Rust with rustup)"
command -v docker >/dev/null || die "the docker CLI is not installed"
[ -f "$ROOT/../shared/specs/discord-openapi.json" ] ||
    die "$ROOT/../shared/specs/discord-openapi.json is missing: the fake Discord validates against it"
if [ ! -x /usr/bin/time ]; then
    command -v apt-get >/dev/null || die "GNU time (/usr/bin/time) is missing and apt-get is unavailable"
    echo "installing GNU time with apt-get"
    apt-get update
    apt-get install -y --no-install-recommends time
fi
echo "GNU time: $(/usr/bin/time --version 2>&1 | head -n1)"

# --- 2. docker + swarm ---------------------------------------------------------------------
step "2. docker swarm"
bash "$ROOT/scripts/ensure-swarm.sh" || die "the Docker engine or the Swarm is not ready (above)"

# --- 3. test images ------------------------------------------------------------------------
step "3. test images"
export SPROCKET_TEST_IMAGE="${SPROCKET_TEST_IMAGE:-sprocket-ops-testsvc}"
bash "$ROOT/scripts/build-test-images.sh"

# Postgres: benchmark 7c runs the alert watcher with every probe kind, a postgres one too.
step "3b. postgres"
SPROCKET_TEST_POSTGRES_URL="$(bash "$ROOT/scripts/start-postgres.sh")" ||
    die "scripts/start-postgres.sh failed"
export SPROCKET_TEST_POSTGRES_URL
echo "postgres: $SPROCKET_TEST_POSTGRES_URL"

# --- 4. release build ----------------------------------------------------------------------
step "4. cargo build --release"
build_start=$SECONDS
cargo build --release -p sprocket-ops -p sprocket-ops-tests -p pulumi-standin \
    --bin sprocket-ops --bin bench --bin pulumi
echo "release build: $((SECONDS - build_start)) s"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
SPROCKET_OPS_BIN="$TARGET_DIR/release/sprocket-ops"
BENCH_BIN="$TARGET_DIR/release/bench"
[ -x "$SPROCKET_OPS_BIN" ] || die "$SPROCKET_OPS_BIN was not built"
[ -x "$BENCH_BIN" ] || die "$BENCH_BIN was not built"
SPROCKET_TEST_PULUMI="$TARGET_DIR/release/pulumi"
[ -x "$SPROCKET_TEST_PULUMI" ] || die "$SPROCKET_TEST_PULUMI (the pulumi stand-in) was not built"
export SPROCKET_OPS_BIN SPROCKET_TEST_PULUMI

# --- 5. benchmarks -------------------------------------------------------------------------
step "5. benchmarks"
export SPROCKET_BENCH_ID="bench-$$-$(date +%s)"
cleanup() {
    # Services of this run that survived the program (killed, crashed): only our label.
    local left
    left="$(docker service ls -q --filter "label=sprocket-ops.bench=$SPROCKET_BENCH_ID" 2>/dev/null || true)"
    if [ -n "$left" ]; then
        echo "removing leftover benchmark services: $(echo "$left" | wc -l)"
        # shellcheck disable=SC2086
        docker service rm $left >/dev/null || true
    fi
}
trap cleanup EXIT
echo "SPROCKET_OPS_BIN=$SPROCKET_OPS_BIN"
echo "SPROCKET_TEST_PULUMI=$SPROCKET_TEST_PULUMI"
echo "SPROCKET_TEST_IMAGE=$SPROCKET_TEST_IMAGE"
echo "SPROCKET_BENCH_ID=$SPROCKET_BENCH_ID"
echo "nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg)"
set +e
"$BENCH_BIN" "$ROOT/BENCHMARKS.md"
rc=$?
set -e
[ -f "$ROOT/BENCHMARKS.md" ] && printf '\n==================== BENCHMARKS.md ====================\n' &&
    sed -n '/^## Results/,/^## Method/p' "$ROOT/BENCHMARKS.md" | sed '$d'
exit $rc
