#!/bin/busybox sh
# PureBoot boot lab: /init of a fake Ubuntu live-server initrd (casper's part).
#
# Ubuntu's live-server initrd, netbooted, reads `url=` from the kernel command
# line, brings the network up (`ip=dhcp`) and downloads the whole ISO it then
# installs from. This one does the same with busybox and prints what it got
# (byte count and SHA-256) on the serial console, then powers off.
# Every line meant for the test starts with "PBLIVE:".
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null

say() { echo "PBLIVE: $*"; }
finish() { sync; say "$1"; poweroff -f; sleep 30; }

for module in $(cat /modules.order); do
    insmod "/modules/$module.ko" 2>/dev/null
done

url=""
for word in $(cat /proc/cmdline); do
    case "$word" in url=*) url="${word#url=}";; esac
done
[ -n "$url" ] || { say "no url= on the kernel command line: $(cat /proc/cmdline)"; finish poweroff; }
say "casper: url=$url"

ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -q -n -t 10 -T 2 -s /udhcpc.sh >/dev/null 2>&1 || { say "no DHCP lease"; finish poweroff; }
say "network up: $(ip -4 -o addr show eth0 | awk '{print $4}')"
if wget -q -O /tmp/live.iso "$url"; then
    say "fetched $(wc -c < /tmp/live.iso) bytes sha256 $(sha256sum /tmp/live.iso | cut -d' ' -f1)"
else
    say "download of $url failed"
fi
finish poweroff
