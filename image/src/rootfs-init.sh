#!/bin/sh
# Contrast guest init (the root filesystem's /sbin/init, verified by dm-verity).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t configfs configfs /sys/kernel/config 2>/dev/null
mkdir -p /run/cryptsetup

ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    # QEMU user networking: the host's loopback is 10.0.2.2.
    ip addr add 10.0.2.15/24 dev eth0
    ip link set eth0 up
    ip route add default via 10.0.2.2
fi
echo "contrast-guest: up ($(cat /etc/contrast-image-release))"

test_name=
for parameter in $(cat /proc/cmdline); do
    case "$parameter" in
        contrast.test=*) test_name="${parameter#*=}" ;;
    esac
done
# Test mode only with contrast.test= on the kernel command line. The command line is part
# of the launch measurement, so a VM in test mode never attests as a production VM.
if [ -n "$test_name" ]; then
    # The payload is a newc cpio archive on the virtio disk with the serial contrast-test.
    mkdir -p /run/test
    for serial in /sys/block/vd*/serial; do
        [ "$(cat "$serial" 2>/dev/null)" = contrast-test ] || continue
        disk="${serial%/serial}"
        (cd /run/test && cpio -i -d -m < "/dev/${disk##*/}") 2>&1
    done
    if [ -e /run/test/run.sh ]; then
        (cd /run/test && sh ./run.sh "$test_name") 2>&1
    else
        echo "CONTRAST-TEST-FAIL $test_name: no test payload (run.sh on the contrast-test disk)"
    fi
    sync
    poweroff -f
fi
echo "contrast-guest: no workload agent in this image; stopping"
poweroff -f
