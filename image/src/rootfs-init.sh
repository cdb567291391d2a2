#!/bin/sh
# Contrast guest init (the root filesystem's /sbin/init, verified by dm-verity).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
# Shared, as systemd makes every mount of Kata's guest: a container's Bidirectional mount
# (the secure-pv Initializer's decrypted volume at /state) reaches the pod's emptyDir
# below /run/kata-containers, and from there the containers that mount it HostToContainer.
# The emptyDirs' directories are mounts of their own: crun makes the mount that holds a
# container's bundle private in the container's namespace (not recursively), which is
# /run, as the bundles are directories.
mount --make-shared /run
for volumes in shared sandbox; do
    mkdir -p "/run/kata-containers/$volumes"
    mount --bind "/run/kata-containers/$volumes" "/run/kata-containers/$volumes"
done
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t configfs configfs /sys/kernel/config 2>/dev/null
# cgroup v2 for the containers' limits (crun, cgroupfs manager).
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mkdir -p /run/cryptsetup

# Only loopback here: the pod's interface, routes and neighbours come from the runtime
# through the agent (UpdateInterface, UpdateRoutes, AddARPNeighbors).
ip link set lo up
echo "contrast-guest: up ($(cat /etc/contrast-image-release))"

# The pod's path: the initdata check installs the policy (the verified initdata's, or a
# deny-all policy with the reason), then the agent serves the runtime on vsock port 1024.
# The agent never starts without a policy file from the check. The initdata disk is the
# virtio-blk device with the serial "initdata" (what the Kata runtime attaches; no udev
# here, so it is found by its serial).
start_agent() {
    # Nothing new reaches the pod from outside until its mesh sidecar (or, without one,
    # its Initializer) has its own rules in place and removes this rule, IPv4 and IPv6.
    # Without it the agent does not start.
    for tool in iptables ip6tables; do
        if ! "$tool" -w -A INPUT -m conntrack ! --ctstate ESTABLISHED,RELATED -j DROP; then
            echo "contrast-guest: $tool could not install the default-deny rule; not starting the agent"
            return 1
        fi
    done
    echo "contrast-guest: default-deny rules installed"
    # The node's image puller config (registry credentials, unmeasured) rides on a disk
    # with the serial "imagepuller" when the node has one; the check copies it for the agent.
    device=/dev/disk/by-id/virtio-initdata
    imagepuller=
    for serial in /sys/block/vd*/serial; do
        disk="${serial%/serial}"
        case "$(cat "$serial" 2>/dev/null)" in
            initdata) device="/dev/${disk##*/}" ;;
            imagepuller) imagepuller="--imagepuller-device=/dev/${disk##*/}" ;;
        esac
    done
    initdata-check --device "$device" $imagepuller
    check=$?
    if [ "$check" -ge 2 ]; then
        echo "contrast-guest: the initdata check installed no policy (exit $check); not starting the agent"
        return 1
    fi
    contrast-agent
    agent=$?
    echo "contrast-guest: contrast-agent exited with status $agent"
    return "$agent"
}

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
    # Tests of the guest parts get QEMU's user network directly (the host's loopback is
    # 10.0.2.2); a test of the pod's path (agent.env) leaves it to the agent.
    if [ -e /sys/class/net/eth0 ] && [ ! -e /run/test/agent.env ]; then
        ip addr add 10.0.2.15/24 dev eth0
        ip link set eth0 up
        ip route add default via 10.0.2.2
    fi
    if [ -e /run/test/run.sh ]; then
        (cd /run/test && sh ./run.sh "$test_name") 2>&1
    else
        echo "CONTRAST-TEST-FAIL $test_name: no test payload (run.sh on the contrast-test disk)"
    fi
    # A test of the pod's path: run.sh prepared the guest (a TSM provider, simulator
    # keys), agent.env names the simulated issuer; then the same path as a production
    # boot, and after-agent.sh judges it.
    if [ -e /run/test/agent.env ]; then
        set -a
        . /run/test/agent.env
        set +a
        start_agent 2>&1
        echo "CONTRAST-STEP agent-exit=$?"
        [ -e /run/test/after-agent.sh ] && (cd /run/test && sh ./after-agent.sh "$test_name") 2>&1
    fi
    sync
    poweroff -f
fi
start_agent
poweroff -f
