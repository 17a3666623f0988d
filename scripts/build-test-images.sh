#!/usr/bin/env bash
# Builds the FROM-scratch test images used by the Swarm tests:
#   sprocket-ops-testsvc:main    TESTSVC_VERSION=main
#   sprocket-ops-testsvc:v2      TESTSVC_VERSION=v2
#   sprocket-ops-testsvc:broken  TESTSVC_VERSION=broken, TESTSVC_MODE=crash (exits 1 at start)
# The image binary is tests/testsvc (std-only Rust) linked fully static against glibc.
# Idempotent: unchanged inputs hit Docker's build cache and leave the image IDs unchanged.
# Env: SPROCKET_TEST_IMAGE overrides the repository name (default sprocket-ops-testsvc).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

IMAGE="${SPROCKET_TEST_IMAGE:-sprocket-ops-testsvc}"
TARGET=x86_64-unknown-linux-gnu
# A separate target dir: RUSTFLAGS differ from the main build, sharing target/ would
# invalidate its cache on every run.
export CARGO_TARGET_DIR="$ROOT/target/testsvc"

command -v docker >/dev/null || { echo "build-test-images: docker CLI not found" >&2; exit 1; }
command -v cargo >/dev/null || { echo "build-test-images: cargo not found" >&2; exit 1; }

echo "build-test-images: building static sprocket-testsvc ($TARGET)"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release -p sprocket-testsvc --target "$TARGET"
BIN="$CARGO_TARGET_DIR/$TARGET/release/sprocket-testsvc"
[ -x "$BIN" ] || { echo "build-test-images: $BIN was not produced" >&2; exit 1; }
if command -v file >/dev/null && ! file "$BIN" | grep -q 'static'; then
    echo "build-test-images: $BIN is not statically linked:" >&2
    file "$BIN" >&2
    exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
CTX="$WORK/context" # only the binary and the Dockerfile: a tiny, fast build context
LOG="$WORK/build.log"
mkdir "$CTX"
cp "$BIN" "$CTX/sprocket-testsvc"
cp "$ROOT/tests/testsvc/Dockerfile" "$CTX/Dockerfile"

build() { # tag version mode
    echo "build-test-images: $IMAGE:$1 (TESTSVC_VERSION=$2 TESTSVC_MODE=$3)"
    # Output is kept only for failures (the CLI's "legacy builder is deprecated" notice
    # is noise: no buildx plugin is needed for a FROM scratch image).
    if ! docker build --quiet \
        --build-arg "TESTSVC_VERSION=$2" \
        --build-arg "TESTSVC_MODE=$3" \
        --tag "$IMAGE:$1" \
        "$CTX" >"$LOG" 2>&1; then
        echo "build-test-images: docker build of $IMAGE:$1 failed:" >&2
        cat "$LOG" >&2
        exit 1
    fi
}
build main main normal
build v2 v2 normal
build broken broken crash

docker image ls "$IMAGE" --format '  {{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}'
