#!/bin/sh
# Contrast guest initramfs: load the kernel modules, open the root filesystem only through
# dm-verity with the root hash from the (measured) kernel command line, switch root.
# Any failure stops the VM: a guest that cannot prove its root filesystem must not run.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "contrast-initramfs: $*"
    echo "CONTRAST-BOOT-FAIL $*"
    poweroff -f
    sleep 10
}

# Modules first: there is no request_module helper. A module may be refused for hardware
# this VM does not have (sev-guest without SEV-SNP, aesni without AES-NI); what the boot
# needs is checked below by using it.
while read -r module; do
    insmod "/lib/modules/$module" 2>/dev/null || echo "contrast-initramfs: $module not loaded"
done < /lib/modules/order

root_hash=
hash_offset=
for parameter in $(cat /proc/cmdline); do
    case "$parameter" in
        contrast.verity.root_hash=*) root_hash="${parameter#*=}" ;;
        contrast.verity.hash_offset=*) hash_offset="${parameter#*=}" ;;
    esac
done
[ -n "$root_hash" ] || fail "no contrast.verity.root_hash on the kernel command line"
[ -n "$hash_offset" ] || fail "no contrast.verity.hash_offset on the kernel command line"

# virtio-blk probes asynchronously.
tries=0
while [ ! -b /dev/vda ]; do
    tries=$((tries + 1))
    [ "$tries" -le 50 ] || fail "no root disk /dev/vda"
    sleep 0.1
done

mkdir -p /run/cryptsetup
veritysetup open /dev/vda root /dev/vda "$root_hash" --hash-offset="$hash_offset" \
    || fail "dm-verity refused the root filesystem (root hash $root_hash)"
mount -t erofs -o ro /dev/mapper/root /sysroot \
    || fail "the root filesystem does not mount: it does not match the root hash"
# Reading a file proves the data blocks verify, not only the superblock.
release=$(cat /sysroot/etc/contrast-image-release) \
    || fail "the root filesystem does not match the root hash (I/O error reading it)"
echo "contrast-initramfs: root filesystem verified: $release"

mount --move /dev /sysroot/dev
mount --move /proc /sysroot/proc
mount --move /sys /sysroot/sys
exec switch_root /sysroot /sbin/init
