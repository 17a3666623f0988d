#!/usr/bin/env bash
# Builds the sprocket-ops runtime image (see the Dockerfile at the repository root):
#
#   bash scripts/build-image.sh                       # sprocket-ops:<version> and sprocket-ops:latest
#   bash scripts/build-image.sh --build-arg RUNTIME_BASE=pulumi/pulumi-nodejs:3.x \
#                               --build-arg SYSTEM_FILES=none      # extra args go to docker build
#   bash scripts/build-image.sh --pulumi FILE         # FILE as /usr/local/bin/pulumi (with the
#                                                     # libraries it needs): the rehearsal puts
#                                                     # the stand-in (tests/pulumi-standin) there
#
#   1. cargo build --release -p sprocket-ops (reuses target/release: only the first build is slow,
#      several minutes on 2 cores)
#   2. assembles the build context in a temp dir: the stripped binary, the shared libraries `ldd`
#      lists (+ glibc's NSS modules), CA certificates, nsswitch.conf, passwd/group for uid 10001,
#      an empty /data and /tmp
#   3. docker build -t <repo>:<version> -t <repo>:latest, and prints the image size
#
# Idempotent: unchanged sources give the same binary, Docker's build cache then gives the same
# image id. Runs one at a time (flock on target/.build-image.lock).
# Env: SPROCKET_OPS_IMAGE_REPO overrides the repository (default sprocket-ops);
#      CARGO_TARGET_DIR is honoured.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REPO="${SPROCKET_OPS_IMAGE_REPO:-sprocket-ops}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac

die() {
    printf 'build-image: ERROR: %s\n' "$*" >&2
    exit 1
}
command -v docker >/dev/null || die "docker CLI not found"
command -v cargo >/dev/null || die "cargo not found"
command -v ldd >/dev/null || die "ldd not found (it lists the libraries to copy)"

mkdir -p "$TARGET_DIR"
if command -v flock >/dev/null; then
    exec 9>"$TARGET_DIR/.build-image.lock"
    flock 9
fi

PULUMI_FILE=""
docker_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --pulumi)
            [ $# -ge 2 ] || die "--pulumi needs a file"
            PULUMI_FILE="$2"
            shift 2
            ;;
        *)
            docker_args+=("$1")
            shift
            ;;
    esac
done
if [ -n "$PULUMI_FILE" ]; then
    [ -x "$PULUMI_FILE" ] || die "--pulumi $PULUMI_FILE: not an executable file"
fi

started=$SECONDS
pkgid="$(cargo pkgid -p sprocket-ops)"
VERSION="${pkgid##*[@#]}"
REVISION="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"

# --- 1. binary -----------------------------------------------------------------------------
echo "build-image: cargo build --release -p sprocket-ops ($VERSION, $REVISION)"
t=$SECONDS
cargo build --release -p sprocket-ops --bin sprocket-ops
BIN="$TARGET_DIR/release/sprocket-ops"
[ -x "$BIN" ] || die "$BIN was not produced"
built_version="$("$BIN" --version)"
[ "$built_version" = "sprocket-ops $VERSION" ] ||
    die "$BIN --version says '$built_version', expected 'sprocket-ops $VERSION'"
cargo_secs=$((SECONDS - t))

# --- 2. context ----------------------------------------------------------------------------
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
CTX="$WORK/context"
SYS="$CTX/system"
mkdir -p "$CTX/app/data" "$CTX/empty" "$CTX/tools" "$SYS/etc/ssl/certs" "$SYS/tmp"
chmod 1777 "$SYS/tmp"
cp "$ROOT/Dockerfile" "$CTX/Dockerfile"
if command -v strip >/dev/null; then
    strip --strip-unneeded -o "$CTX/app/sprocket-ops" "$BIN"
else
    cp "$BIN" "$CTX/app/sprocket-ops"
fi

copy_lib() { # absolute path on the host -> same path in the image, symlinks resolved
    local src="$1"
    mkdir -p "$SYS$(dirname "$src")"
    cp -L "$src" "$SYS$src"
}
# `ldd` prints `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and, for the loader,
# `/lib64/ld-linux-x86-64.so.2 (0x…)`; linux-vdso has no file.
list_libs() { ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'; }
libs="$(list_libs "$CTX/app/sprocket-ops")"
if [ -n "$PULUMI_FILE" ]; then
    if command -v strip >/dev/null; then
        strip --strip-unneeded -o "$CTX/tools/pulumi" "$PULUMI_FILE"
    else
        cp "$PULUMI_FILE" "$CTX/tools/pulumi"
    fi
    chmod 0755 "$CTX/tools/pulumi"
    # A static executable has no libraries (ldd then fails: nothing to add).
    extra="$(list_libs "$CTX/tools/pulumi" 2>/dev/null || true)"
    libs="$(printf '%s\n%s\n' "$libs" "$extra" | sort -u)"
    echo "build-image: pulumi: $PULUMI_FILE as /usr/local/bin/pulumi"
fi
[ -n "$libs" ] || die "ldd found no libraries: is $BIN a dynamic glibc binary?"
libdir=""
for lib in $libs; do
    copy_lib "$lib"
    case "$lib" in */libc.so.*) libdir="$(dirname "$lib")" ;; esac
done
[ -n "$libdir" ] || die "ldd did not list libc"
# glibc loads NSS modules with dlopen (ldd cannot see them). Since glibc 2.34 `files` and `dns`
# are built into libc and these are small stubs; older glibc needs the real modules.
for nss in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
    if [ -e "$libdir/$nss" ]; then copy_lib "$libdir/$nss"; fi
done
cp -L /etc/ssl/certs/ca-certificates.crt "$SYS/etc/ssl/certs/ca-certificates.crt" ||
    die "/etc/ssl/certs/ca-certificates.crt is missing (apt-get install ca-certificates)"
cat >"$SYS/etc/nsswitch.conf" <<'EOF'
passwd:   files
group:    files
shadow:   files
hosts:    files dns
networks: files
services: files
protocols: files
EOF
cat >"$SYS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
sprocket-ops:x:10001:10001:sprocket-ops:/data:/sbin/nologin
EOF
cat >"$SYS/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
sprocket-ops:x:10001:
EOF
echo "build-image: context: $(du -sh "$CTX" | cut -f1) ($(echo "$libs" | wc -w) libraries)"

# --- 3. image ------------------------------------------------------------------------------
t=$SECONDS
LOG="$WORK/build.log"
previous="$(docker image inspect --format '{{.Id}}' "$REPO:latest" 2>/dev/null || true)"
# Output is kept only for failures (the CLI's notices are noise for a FROM scratch build).
if ! docker build --quiet \
    --build-arg "VERSION=$VERSION" \
    --build-arg "REVISION=$REVISION" \
    --tag "$REPO:$VERSION" \
    --tag "$REPO:latest" \
    ${docker_args[@]+"${docker_args[@]}"} \
    "$CTX" >"$LOG" 2>&1; then
    cat "$LOG" >&2
    die "docker build failed (output above)"
fi
docker_secs=$((SECONDS - t))

id="$(docker image inspect --format '{{.Id}}' "$REPO:$VERSION")"
# The image this build replaced is now untagged: remove it unless a container still uses it.
if [ -n "$previous" ] && [ "$previous" != "$id" ] &&
    [ "$(docker image inspect --format '{{len .RepoTags}}' "$previous" 2>/dev/null)" = "0" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
bytes="$(docker image inspect --format '{{.Size}}' "$REPO:$VERSION")"
size="$(numfmt --to=si --suffix=B "$bytes" 2>/dev/null || echo "$bytes bytes")"
echo "build-image: $REPO:$VERSION $REPO:latest  ${id#sha256:}  $size"
echo "build-image: cargo ${cargo_secs}s, docker ${docker_secs}s, total $((SECONDS - started))s"
