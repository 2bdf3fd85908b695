#!/bin/sh
# PureBoot NFS root: an initramfs-tools hook that puts into the initramfs what
# the boot script (/scripts/pureboot, pureboot-nfsroot.sh) needs: the NFSv4
# client modules (when the kernel has them as modules) and mount.nfs from
# nfs-common, with /etc/netconfig, which its RPC library reads.
# Install it as /etc/initramfs-tools/hooks/pureboot-nfsroot (mode 755).
PREREQ=""
prereqs() {
	echo "$PREREQ"
}
case "$1" in
prereqs)
	prereqs
	exit 0
	;;
esac

# shellcheck disable=SC1091 # initramfs-tools' own helpers, present where this runs
. /usr/share/initramfs-tools/hook-functions

manual_add_modules nfsv4 nfs sunrpc
for binary in /sbin/mount.nfs /usr/sbin/mount.nfs; do
	if [ -x "$binary" ]; then
		copy_exec "$binary" /sbin/mount.nfs
		break
	fi
done
if [ -e /etc/netconfig ]; then
	copy_file config /etc/netconfig /etc/netconfig
fi
exit 0
