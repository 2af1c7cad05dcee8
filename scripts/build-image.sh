#!/usr/bin/env bash
# Builds the nativeroute container image with podman (or buildah) from the
# release binary, without pulling anything: the binary and the libraries
# `ldd` lists are staged into a root filesystem that image/Containerfile
# copies onto an empty (scratch) image. Then proves the image works by
# mounting it and running its binary from inside its own root (running
# containers is not possible on every build machine; mounting is).
#
#   scripts/build-image.sh [TAG]        default tag: nativeroute:<version>
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/as-root.sh

version=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
tag=${1:-localhost/nativeroute:$version}

if ! command -v podman >/dev/null 2>&1; then
  echo "installing podman"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman
fi

cargo build --release --locked -p nativeroute --bin nativeroute
binary=${CARGO_TARGET_DIR:-target}/release/nativeroute

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
rootfs=$stage/rootfs
mkdir -p "$rootfs/etc/nativeroute" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
# The release profile keeps line tables for profiling on a workstation; the
# image does without them (a sixth of the size).
strip --strip-debug -o "$rootfs/nativeroute" "$binary"
chmod 0755 "$rootfs/nativeroute"
# Every library the binary links, at the path the loader looks for it.
for library in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$rootfs$(dirname "$library")"
  cp -L "$library" "$rootfs$library"
done
# A user for the non-root default, and name resolution from files then DNS.
printf 'root:x:0:0:root:/:/nonexistent\nnonroot:x:65532:65532:nonroot:/:/nonexistent\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
cp image/Containerfile "$stage/Containerfile"

podman build --quiet -t "$tag" -f "$stage/Containerfile" "$stage"

# The image's own binary, in the image's own root.
mountpoint=$(podman image mount "$tag")
trap 'podman image unmount "$tag" >/dev/null 2>&1 || true; rm -rf "$stage"' EXIT
chroot "$mountpoint" /nativeroute --version
chroot "$mountpoint" /nativeroute check --help >/dev/null
echo "image $tag: $(podman image inspect --format '{{.Size}}' "$tag") bytes; its binary runs from inside it"
