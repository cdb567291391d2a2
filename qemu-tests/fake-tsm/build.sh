#!/bin/sh
# Builds the test-only fake_tsm.ko without writing into the source tree:
#   build.sh OUT_DIR [KERNEL_VERSION]
# The sources are copied to a temporary directory, built there with the kernel's kbuild
# (make -C /lib/modules/$KVER/build M=<tmp> modules), and fake_tsm.ko is copied to OUT_DIR.
# Needs linux-headers-$KVER. KERNEL_VERSION defaults to 6.12.95+deb12-amd64, the QEMU
# tests' kernel (not the running one: the module must match the guest's kernel).
set -eu
out=${1:?usage: build.sh OUT_DIR [KERNEL_VERSION]}
kver=${2:-6.12.95+deb12-amd64}
src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src/Kbuild" "$src/fake_tsm.c" "$work/"
make -s -C "/lib/modules/$kver/build" M="$work" modules
mkdir -p "$out"
cp "$work/fake_tsm.ko" "$out/fake_tsm.ko"
