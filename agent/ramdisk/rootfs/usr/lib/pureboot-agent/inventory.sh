# PureBoot agent: the hardware inventory, as JSON on stdout (log on stderr).
#
# From the kernel's view (sysfs, /proc) and the tools that ask the devices
# themselves: nvme-cli for NVMe sanitize/format support, hdparm for the ATA
# security feature set (and whether the firmware froze it), sg_opcodes for
# SCSI SANITIZE. What a tool cannot tell is left out rather than guessed.
. /usr/lib/pureboot-agent/lib.sh

sysval() { [ -r "$1" ] && tr -d '\000' < "$1" 2>/dev/null | sed 's/^ *//; s/ *$//' | head -n 1; }

transport_of() {  # name
    case "$1" in
    nvme*) echo nvme; return ;;
    vd*) echo virtio; return ;;
    mmcblk*) echo mmc; return ;;
    esac
    path=$(readlink -f "/sys/block/$1")
    case "$path" in
    */usb*) echo usb ;;
    */ata[0-9]*) echo sata ;;
    */end_device-*|*/sas_*) echo sas ;;
    */host[0-9]*) echo scsi ;;
    *) echo unknown ;;
    esac
}

nvme_caps() {  # name (nvme0n1) -> capabilities JSON
    ctrl=/dev/${1%n[0-9]*}
    if nvme id-ctrl "$ctrl" -o json > /tmp/idctrl.json; then
        jq '{
            nvme_sanitize: ([if (.sanicap % 2) == 1 then "crypto" else empty end,
                             if ((.sanicap / 2 | floor) % 2) == 1 then "block" else empty end,
                             if ((.sanicap / 4 | floor) % 2) == 1 then "overwrite" else empty end]),
            nvme_format: (((.oacs / 2 | floor) % 2) == 1),
            nvme_format_crypto: (((.fna / 4 | floor) % 2) == 1)
        }' /tmp/idctrl.json
    else
        echo "nvme id-ctrl $ctrl failed: Sanitize and Format support unknown" >&2
        echo '{}'
    fi
}

ata_caps() {  # path -> capabilities JSON from hdparm -I's Security section
    if hdparm -I "$1" > /tmp/hdparm.txt 2>/dev/null; then
        sec=$(sed -n '/^Security:/,/^[A-Z]/p' /tmp/hdparm.txt)
        has() { echo "$sec" | grep -q "$1" && echo true || echo false; }
        supported=$(echo "$sec" | grep -Eq '^\s+supported$' && echo true || echo false)
        enabled=$(echo "$sec" | grep -Eq '^\s+enabled' && echo true || echo false)
        locked=$(echo "$sec" | grep -Eq '^\s+locked' && echo true || echo false)
        frozen=$(echo "$sec" | grep -Eq '^\s+frozen' && echo true || echo false)
        enhanced=$(echo "$sec" | grep -Eq '^\s+supported: enhanced erase' && echo true || echo false)
        jq -n --argjson s "$supported" --argjson e "$enabled" --argjson l "$locked" \
            --argjson f "$frozen" --argjson x "$enhanced" \
            '{ata_security: {supported: $s, enabled: $e, locked: $l, frozen: $f, enhanced: $x}}'
    else
        echo '{"ata_security": {"supported": false}}'
    fi
}

disk_json() {  # name
    name=$1
    dev=/dev/$name
    sys=/sys/block/$name
    size=$(( $(cat "$sys/size") * 512 ))
    transport=$(transport_of "$name")
    model=$(sysval "$sys/device/model")
    serial=$(sysval "$sys/device/serial")
    [ -z "$serial" ] && serial=$(sysval "$sys/serial")
    if [ -z "$serial" ] && [ "$transport" = sata ]; then
        serial=$(hdparm -I "$dev" 2>/dev/null | sed -n 's/^\s*Serial Number:\s*//p' | head -n 1 | sed 's/\s*$//')
    fi
    if [ -z "$serial" ] && command -v sg_inq >/dev/null; then
        serial=$(sg_inq -p 0x80 "$dev" 2>/dev/null | sed -n 's/^\s*Unit serial number:\s*//p' | head -n 1 | sed 's/\s*$//')
    fi
    rotational=$( [ "$(cat "$sys/queue/rotational" 2>/dev/null)" = 1 ] && echo true || echo false)
    removable=$( [ "$(cat "$sys/removable" 2>/dev/null)" = 1 ] && echo true || echo false)
    discard=$( [ "$(cat "$sys/queue/discard_max_bytes" 2>/dev/null || echo 0)" != 0 ] && echo true || echo false)
    caps='{}'
    case "$transport" in
    nvme) caps=$(nvme_caps "$name") ;;
    sata) caps=$(ata_caps "$dev") ;;
    sas|scsi)
        if command -v sg_opcodes >/dev/null && sg_opcodes "$dev" 2>/dev/null | grep -qi sanitize; then
            caps='{"scsi_sanitize": true}'
        fi ;;
    mmc) caps=$(jq -n --argjson d "$discard" '{secure_discard: $d}') ;;
    esac
    jq -n --arg name "$name" --arg path "$dev" --arg model "$model" --arg serial "$serial" \
        --argjson size "$size" --argjson rot "$rotational" --argjson rem "$removable" \
        --arg transport "$transport" --argjson caps "$caps" --argjson discard "$discard" \
        '{name: $name, path: $path, model: $model, serial: $serial, size: $size,
          rotational: $rot, removable: $rem, transport: $transport,
          capabilities: ($caps + {discard: $discard})}'
}

: > /tmp/disks.jsonl
# Give slow controllers a moment to present their disks.
sleep 2
for sys in /sys/block/*; do
    name=${sys##*/}
    case "$name" in
    loop*|ram*|zram*|sr*|fd*|md*|dm-*|nbd*|*boot[0-9]|*rpmb) continue ;;
    esac
    [ "$(cat "$sys/size")" -gt 0 ] || continue
    echo "disk $name" >&2
    disk_json "$name" >> /tmp/disks.jsonl
done

: > /tmp/nics.jsonl
for dev in /sys/class/net/*; do
    name=${dev##*/}
    [ "$name" = lo ] && continue
    speed=$(cat "$dev/speed" 2>/dev/null || echo -1)
    case "$speed" in ''|*[!0-9-]*) speed=-1 ;; esac
    driver=$(basename "$(readlink "$dev/device/driver" 2>/dev/null)" 2>/dev/null)
    jq -n --arg name "$name" --arg mac "$(cat "$dev/address")" --argjson speed "$speed" \
        --arg driver "$driver" '{name: $name, mac: $mac, speed_mbps: $speed, driver: $driver}' \
        >> /tmp/nics.jsonl
done

if [ -d /sys/firmware/efi ]; then
    mode=uefi
    sb=unknown
    var=$(ls /sys/firmware/efi/efivars/SecureBoot-* 2>/dev/null | head -n 1)
    if [ -n "$var" ]; then
        value=$(dd if="$var" bs=1 skip=4 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
        [ "$value" = 1 ] && sb=enabled || sb=disabled
    fi
else
    mode=bios
    sb=not-applicable
fi

dmi=/sys/class/dmi/id
vendor=$(sysval $dmi/sys_vendor)
product=$(sysval $dmi/product_name)
serial=$(sysval $dmi/product_serial)
uuid=$(sysval $dmi/product_uuid)
[ -z "$product" ] && product=$(sysval /proc/device-tree/model)
[ -z "$serial" ] && serial=$(sysval /proc/device-tree/serial-number)

# The address this agent was given (the interface of the default route).
netif=$(ip -4 route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | head -n 1)
network='null'
if [ -n "$netif" ]; then
    network=$(jq -n --arg i "$netif" --arg mac "$(cat /sys/class/net/$netif/address)" \
        --arg a "$(ip -4 -o addr show "$netif" | awk '{print $4}' | head -n 1)" \
        --arg g "$(ip -4 route show default | awk '{print $3}' | head -n 1)" \
        --argjson dns "$(sed -n 's/^nameserver *//p' /etc/resolv.conf 2>/dev/null | jq -R . | jq -s .)" \
        '{interface: $i, mac: $mac, address: $a, gateway: $g, dns: $dns}')
fi

cpus=$(grep -c '^processor' /proc/cpuinfo)
cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name:\s*//p' | head -n 1)
memory=$(( $(sed -n 's/^MemTotal:\s*\([0-9]*\) kB/\1/p' /proc/meminfo) * 1024 ))

jq -n --slurpfile disks /tmp/disks.jsonl --slurpfile nics /tmp/nics.jsonl \
    --arg cpus "$cpus" --arg cpu_model "$cpu_model" --argjson memory "$memory" \
    --arg mode "$mode" --arg sb "$sb" --arg vendor "$vendor" --arg product "$product" \
    --arg serial "$serial" --arg uuid "$uuid" --arg arch "$(uname -m)" --argjson network "$network" \
    '{cpus: {count: $cpus, model: $cpu_model, arch: $arch}, memory_bytes: $memory, network: $network,
      disks: $disks, nics: $nics, firmware: {mode: $mode, secure_boot: $sb},
      system: {vendor: $vendor, product: $product, serial: $serial, uuid: $uuid}}'
