# PureBoot agent: write a block image to a disk, prove it, add the first-boot data.
# Usage: deploy.sh PARAMS.json   (the step's parameters from the controller)
# Prints the result as JSON on stdout; the log goes to stderr.
#
# The image streams from the controller (curl, with the node's token) straight
# into the disk (dd with O_DIRECT): no copy is held in RAM. Then exactly the
# image's length is read back past the page cache and its SHA-256 compared
# with the template version's. Last, a 4 MiB FAT partition labelled CIDATA
# is added after the image, holding NoCloud meta-data and user-data.
set -o pipefail
. /usr/lib/pureboot-agent/lib.sh
P=$1
. /usr/lib/pureboot-agent/disk.sh
disk_params "$P"
image=$(jq -r .url "$P")
size=$(jq -r .size "$P")
sha=$(jq -r .sha256 "$P")

check_disk "$dev" "$name" "$want_size" "$want_serial" || die "$DISK_PROBLEM"

log "writing the image ($size bytes) to $dev"
started=$(cut -d' ' -f1 /proc/uptime)
# A controller that goes away mid-stream is waited for: the image is written
# again from its start, up to 6 times, before the step fails.
attempt=1
until curl -sS -f --cacert "$CA_FILE" -H "Authorization: Node $TOKEN" --connect-timeout 10 "$URL$image" 2>/tmp/curl.err \
    | dd of="$dev" bs=$BS iflag=fullblock oflag=direct conv=fsync 2>/tmp/dd.err; do
    [ "$attempt" -ge 6 ] && die "streaming the image failed: $(cat /tmp/curl.err /tmp/dd.err | tail -n 3)"
    log "streaming the image failed ($(tail -n 1 /tmp/curl.err)); again in $((attempt * 10))s"
    sleep $((attempt * 10))
    attempt=$((attempt + 1))
    started=$(cut -d' ' -f1 /proc/uptime)
done
written=$(awk -v a="$started" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.2f", b - a }')
blockdev --flushbufs "$dev" 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
log "reading $size bytes back to check the SHA-256"
# Exactly the image's length, in whole blocks then 512-byte sectors (no byte
# copying in between), hashed by OpenSSL (assembler, CPU extensions).
got=$(sha_range "$dev" "$size") || die "reading the disk back failed"
[ "$got" = "$sha" ] || die "the disk reads back SHA-256 $got, the image is $sha"
log "SHA-256 matches ($got)"

seed=none
if [ "$(jq -r '.seed != null' "$P")" = true ]; then
    label=$(sfdisk --dump "$dev" 2>/dev/null | sed -n 's/^label: *//p')
    case "$label" in
    gpt)
        sfdisk --relocate gpt-bak-std "$dev" >&2 2>&1 || die "cannot move the GPT backup to the disk's end"
        type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7 ;;
    dos) type=c ;;
    *) die "the image has no partition table sfdisk knows ($label); cannot add the first-boot data" ;;
    esac
    echo "size=4MiB, type=$type" | sfdisk --append --no-reread "$dev" >&2 2>&1 \
        || die "no room for the first-boot partition after the image"
    blockdev --rereadpt "$dev" 2>/dev/null || partx -u "$dev" 2>/dev/null
    sleep 1
    part=$(ls /sys/block/"$name"/ | grep "^$name" | sort -V | tail -n 1)
    [ -b "/dev/$part" ] || die "the first-boot partition did not appear"
    mkfs.vfat -n CIDATA "/dev/$part" >&2 || die "mkfs.vfat failed"
    jq -r .seed.meta_data "$P" > /tmp/meta-data
    jq -r .seed.user_data "$P" > /tmp/user-data
    files="/tmp/meta-data /tmp/user-data"
    if [ "$(jq -r '.seed.network_config != null' "$P")" = true ]; then
        jq -r .seed.network_config "$P" > /tmp/network-config
        files="$files /tmp/network-config"
    fi
    # The kernel's FAT driver writes the files (no iconv tables needed).
    mkdir -p /tmp/cidata
    mount -t vfat -o codepage=437,iocharset=iso8859-1 "/dev/$part" /tmp/cidata >&2 \
        || die "cannot mount the first-boot partition"
    cp $files /tmp/cidata/ >&2 || { umount /tmp/cidata; die "writing the first-boot data failed"; }
    sync
    umount /tmp/cidata || die "cannot unmount the first-boot partition"
    sync
    seed="/dev/$part"
    log "first-boot data written to $seed (CIDATA)"
fi
jq -n --arg sha "$got" --argjson bytes "$size" --argjson seconds "$written" --arg seed "$seed" \
    '{sha256: $sha, bytes: $bytes, write_seconds: $seconds, seed_partition: $seed}'
