#!/bin/busybox sh
# PureBoot boot lab: /init of the lab's tiny Linux (busybox + a Debian kernel).
#
# One initramfs plays two parts, chosen on the kernel command line:
#   pb.mode=install  the installer: fetch this node's installer config with the
#                    token from `ds=nocloud-net;s=<url>`, write the OS image
#                    (pb.image=<url>, gzip) to /dev/vda, leave the token for the
#                    first boot, report `installed`, reboot. pb.crash=1 reboots
#                    without reporting: an install that keeps failing.
#   pb.mode=os       the installed OS, booted from /dev/vda: on its first boot it
#                    reports `active` with the token the installer left, then
#                    forgets the token (it uses the address the installer had:
#                    PureBoot's DHCP no longer answers it); every boot prints a
#                    marker and powers off. Deployed as an image by the PureBoot
#                    agent, it plays cloud-init's part instead: it reads the
#                    NoCloud seed in the CIDATA partition the agent added (the
#                    token in meta-data, the address in network-config).
# Every line meant for the test starts with "PBLAB:" on the serial console.
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null

say() { echo "PBLAB: $*"; }
finish() { sync; say "$1"; if [ "$1" = reboot ]; then reboot -f; else poweroff -f; fi; sleep 30; }

for module in $(cat /modules.order); do
    insmod "/modules/$module.ko" 2>/dev/null
done

CMDLINE=$(cat /proc/cmdline)
arg() { for word in $CMDLINE; do case "$word" in "$1="*) echo "${word#*=}"; return;; esac; done; }

# The first-boot token lives in sector 1024 of the disk, in the gap before
# the first partition: no filesystem driver needed.
STATE_SECTOR=1024

network_up() {
    ip link set lo up
    ip link set eth0 up
    udhcpc -i eth0 -q -n -t 10 -T 2 -s /udhcpc.sh >/dev/null 2>&1 || { say "no DHCP lease"; return 1; }
    say "network up: $(ip -4 -o addr show eth0 | awk '{print $4}')"
}

report() {  # base token status progress message
    wget -q -O /tmp/report.out --header "Authorization: Node $2" \
        --header "Content-Type: application/json" \
        --post-data "{\"status\": \"$3\", \"progress\": $4, \"logs\": [\"$5\"]}" \
        "$1/api/v1/report" && say "reported $3" || say "report $3 refused"
}

wait_for_disk() {
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && return 0; sleep 1; done
    say "no disk /dev/vda"; return 1
}

# The NoCloud seed the PureBoot agent writes after a deployed image: a FAT
# partition labelled CIDATA. The lab OS has no FAT driver, so it reads the
# seed's text straight off the partition.
seed_from_cidata() {
    for SEED_PART in /dev/vda4 /dev/vda3 /dev/vda2; do
        [ -b "$SEED_PART" ] || continue
        dd if="$SEED_PART" bs=4096 count=1024 2>/dev/null | tr '\000-\011\013-\037\177-\377' '\n' > /tmp/seed.txt
        grep -q '^pureboot-token: ' /tmp/seed.txt && return 0
    done
    return 1
}

case "$(arg pb.mode)" in
install)
    say "installer started"
    network_up || finish reboot
    ds=$(arg ds)
    config_url=${ds#*;s=}
    base=${config_url%%/api/v1/install/*}
    token=${config_url#*/api/v1/install/}
    token=${token%%/*}
    if ! wget -q -O /tmp/user-data "${config_url}user-data"; then
        say "installer config refused"; finish reboot
    fi
    head -n 1 /tmp/user-data | grep -q '^#cloud-config' && say "installer config fetched"
    if [ "$(arg pb.crash)" = 1 ]; then
        say "installer crashed before reporting"; finish reboot
    fi
    report "$base" "$token" installing 40 "lab: writing the image"
    wait_for_disk || finish reboot
    if ! wget -q -O - "$(arg pb.image)" | gunzip -c | dd of=/dev/vda bs=1M 2>/dev/null; then
        report "$base" "$token" failed 100 "lab: image write failed"; finish reboot
    fi
    # The installed OS keeps the address: PureBoot's DHCP ignores installed
    # machines (Rule E), as a production network's own DHCP or static
    # addressing takes over.
    address=$(ip -4 -o addr show eth0 | awk '{print $4}')
    printf 'PBTOKEN %s %s %s \n' "$token" "$base" "$address" | dd of=/dev/vda bs=512 seek=$STATE_SECTOR conv=notrunc,sync 2>/dev/null
    sync
    say "image written"
    report "$base" "$token" installed 100 "lab: image written"
    finish reboot
    ;;
os)
    say "booted from the local disk"
    wait_for_disk || finish poweroff
    set -- $(dd if=/dev/vda bs=512 skip=$STATE_SECTOR count=1 2>/dev/null | tr -d '\000')
    if [ "$1" = PBTOKEN ]; then
        ip link set eth0 up && ip addr add "$4" dev eth0 && say "static address $4"
        sleep 2
        report "$3" "$2" active 100 "lab: first boot"
        dd if=/dev/zero of=/dev/vda bs=512 seek=$STATE_SECTOR count=1 conv=notrunc 2>/dev/null
        say "first boot done"
    elif seed_from_cidata; then
        token=$(sed -n 's/^pureboot-token: //p' /tmp/seed.txt | head -n 1)
        url=$(sed -n 's/^pureboot-report-url: //p' /tmp/seed.txt | head -n 1)
        address=$(sed -n 's/^ *- \([0-9.]*\/[0-9]*\)$/\1/p' /tmp/seed.txt | head -n 1)
        say "first-boot data found: $(sed -n 's/^local-hostname: //p' /tmp/seed.txt | head -n 1)"
        ip link set eth0 up && ip addr add "$address" dev eth0 && say "static address $address"
        sleep 2
        report "${url%/api/v1/report}" "$token" active 100 "lab: first boot of the deployed image"
        # A real system's cloud-init marks the instance as done; the lab OS
        # forgets the seed the same way: the next boot is not a first boot.
        dd if=/dev/zero of="$SEED_PART" bs=4096 count=1024 conv=notrunc 2>/dev/null
        say "first boot done"
    else
        say "not the first boot"
    fi
    finish poweroff
    ;;
*)
    say "no pb.mode on the command line: $CMDLINE"
    finish poweroff
    ;;
esac
