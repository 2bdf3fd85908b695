#!/bin/busybox sh
# PureBoot boot lab: /init of an ARM64 diskless node's tiny initramfs.
#
# It runs PureBoot's own boot script, templates/nfsroot/pureboot-nfsroot.sh
# (copied in as /scripts/pureboot), the way initramfs-tools' /init does:
# source it and call mountroot, with the few initramfs-tools helpers it uses
# defined here (configure_networking is busybox udhcpc). Then it proves what a
# diskless root must be: the template cannot be written, the overlay folders
# can, and what is written there lands in the node's own export.
# Every line meant for the test starts with "PBNFS:".
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /root
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null

say() { echo "PBNFS: $*"; }
finish() { sync; say "$1"; poweroff -f; sleep 30; }

for module in $(cat /modules.order); do
    insmod "/modules/$module" 2>/dev/null || say "insmod $module failed"
done

# --- what initramfs-tools' /init and /scripts/functions provide ---------------
log_warning_msg() { echo "PBNFS: warning: $*"; }
panic() { finish "panic: $*"; }
modprobe() { :; }  # every module is loaded above
configure_networking() {
    ip link set lo up
    ip link set eth0 up
    udhcpc -i eth0 -q -n -t 10 -T 2 -s /udhcpc.sh >/dev/null 2>&1 || panic "no DHCP lease"
    say "network up: $(ip -4 -o addr show eth0 | awk '{print $4}')"
}
# shellcheck disable=SC2034 # read by /scripts/pureboot
rootmnt=/root PUREBOOT_TRIES=10 PUREBOOT_DELAY=2
# shellcheck disable=SC1091 # PureBoot's boot script, in the initramfs
. /scripts/pureboot
mountroot
say "root mounted: $(grep " $rootmnt " /proc/mounts | head -n 1)"
say "template says: $(cat $rootmnt/etc/pureboot-template)"

# --- the proofs ------------------------------------------------------------------
if (echo guest > "$rootmnt/usr/written-by-guest") 2>/tmp/err; then
    say "the template took a write"
else
    say "template is read-only: $(cat /tmp/err)"
fi
folders=$(pureboot_arg pureboot.overlay_paths | tr ',' ' ')
for folder in $folders; do
    if echo "written by the guest in $folder" > "$rootmnt$folder/written-by-guest"; then
        say "overlay $folder is writable"
    else
        say "overlay $folder refused a write"
    fi
done
sync
for folder in $folders; do umount "$rootmnt$folder"; done
umount "$PUREBOOT_RUN/overlay" "$rootmnt"
finish "diskless checks done"
