# PureBoot agent: lay a disk out, unpack a file-level image onto it, prove every file.
# Usage: files.sh PARAMS.json   (the step's parameters from the controller)
# Prints the result as JSON on stdout; the log goes to stderr.
#
# The whole step is redone from the start when it runs again (a power cut):
# new partition table, new file systems, the archive streamed again.
# 1. sfdisk writes the table the workflow's partition step asked for; each
#    partition gets its file system (mkfs.vfat, mkfs.ext4, mkswap).
# 2. The archive streams from the controller through its decompressor into
#    GNU tar, with the target's file systems mounted where the layout says;
#    the stream's SHA-256 is taken on the way (tee into OpenSSL).
# 3. Everything is unmounted, the caches dropped, the file systems mounted
#    again read-only, and every regular file is read back and hashed: the
#    manifest of those hashes must be the one PureBoot made at upload.
# 4. /etc/fstab (by UUID) and the NoCloud seed in /var/lib/cloud/seed/nocloud
#    are written for the first boot.
set -o pipefail
. /usr/lib/pureboot-agent/lib.sh
P=$1
. /usr/lib/pureboot-agent/disk.sh
disk_params "$P"
image=$(jq -r .url "$P")
format=$(jq -r .format "$P")
sha=$(jq -r .sha256 "$P")
files_sha=$(jq -r .files_sha256 "$P")
count=$(jq -r '.partitions | length' "$P")
T=/mnt/target

check_disk "$dev" "$name" "$want_size" "$want_serial" || die "$DISK_PROBLEM"
case "$format" in
tar.gz) unpack() { gzip -dc; } ;;
tar.zst) unpack() { zstd -dcq; } ;;
*) die "this agent cannot unpack $format archives" ;;
esac
version=$(tar --version 2>&1)
case "$version" in
*"GNU tar"*) ;;
*) die "GNU tar is missing from this agent ($(command -v tar): $(echo "$version" | head -n 2 | tr '\n' ' '))" ;;
esac

unmount_all() {
    for m in $(grep " $T" /proc/mounts | awk '{print $2}' | sort -r); do umount "$m" 2>/dev/null; done
}
unmount_all
trap unmount_all EXIT

# 1. The table and the file systems.
log "laying out $dev ($(jq -r .table "$P"), $count partitions)"
{
    echo "label: $(jq -r .table "$P" | sed 's/msdos/dos/')"
    jq -r '.partitions[] | (if .mib then "size=\(.mib)MiB, " else "" end) + "type=\(.type)"' "$P"
} > /tmp/layout.sfdisk
wipefs -a "$dev" >&2 2>&1
sfdisk --wipe always --wipe-partitions always "$dev" < /tmp/layout.sfdisk > /tmp/sfdisk.out 2>&1 \
    || die "sfdisk could not lay out $dev: $(tail -n 2 /tmp/sfdisk.out)"
cat /tmp/sfdisk.out >&2
blockdev --rereadpt "$dev" 2>/dev/null || partx -u "$dev" 2>/dev/null
sleep 1
parts=$(ls /sys/block/"$name"/ | grep "^$name" | sort -V)
[ "$(echo "$parts" | grep -c .)" = "$count" ] || die "the kernel shows $(echo "$parts" | grep -c .) partitions of $dev, not $count"
i=0
: > /tmp/parts.tsv
for part in $parts; do
    role=$(jq -r ".partitions[$i].role" "$P")
    fs=$(jq -r ".partitions[$i].fs" "$P")
    mount=$(jq -r ".partitions[$i].mount" "$P")
    label=$(jq -r ".partitions[$i].label" "$P")
    [ -b "/dev/$part" ] || die "/dev/$part did not appear"
    case "$fs" in
    vfat) mkfs.vfat -F 32 -n "${label:-$(echo "$role" | tr a-z A-Z)}" "/dev/$part" >&2 || die "mkfs.vfat /dev/$part failed" ;;
    ext4) mkfs.ext4 -F -q -L "${label:-$role}" "/dev/$part" >&2 || die "mkfs.ext4 /dev/$part failed" ;;
    swap) mkswap -L "${label:-swap}" "/dev/$part" >&2 || die "mkswap /dev/$part failed" ;;
    *) die "this agent cannot make a $fs file system" ;;
    esac
    uuid=$(blkid -s UUID -o value "/dev/$part")
    printf '%s\t%s\t%s\t%s\t%s\n' "$part" "$role" "$fs" "$mount" "$uuid" >> /tmp/parts.tsv
    i=$((i + 1))
done
log "partitions made: $(cut -f1,2,3 /tmp/parts.tsv | tr '\t\n' ' ,')"

mount_all() {  # OPTIONS: the root first, then the others by mount point depth
    mkdir -p "$T"
    root=$(awk -F'\t' '$2 == "root" {print $1}' /tmp/parts.tsv)
    mount -o "$1" "/dev/$root" "$T" || return 1
    awk -F'\t' '$4 != "" && $4 != "/" {print $4 "\t" $1 "\t" $3}' /tmp/parts.tsv | sort \
        | while IFS="$(printf '\t')" read -r point part fs; do
            mkdir -p "$T$point" 2>/dev/null
            opts=$1
            # FAT keeps no owners or modes: "quiet" lets tar's chown/chmod pass.
            [ "$fs" = vfat ] && opts="$opts,quiet,codepage=437,iocharset=utf8"
            mount -t "$fs" -o "$opts" "/dev/$part" "$T$point" || exit 1
        done
}

# 2. The archive, streamed and unpacked, hashed on the way.
mount_all rw || die "cannot mount the new file systems"
log "unpacking $(jq -r .image "$P") ($(jq -r .size "$P") bytes, $format)"
started=$(cut -d' ' -f1 /proc/uptime)
attempt=1
rm -f /tmp/stream.fifo; mkfifo /tmp/stream.fifo
until {
    openssl dgst -sha256 -r < /tmp/stream.fifo | cut -c1-64 > /tmp/stream.sha &
    curl -sS -f --cacert "$CA_FILE" -H "Authorization: Node $TOKEN" --connect-timeout 10 "$URL$image" 2>/tmp/curl.err \
        | tee /tmp/stream.fifo | unpack | tar -x -p --numeric-owner --xattrs --xattrs-include='*' \
            --no-overwrite-dir -f - -C "$T" 2>/tmp/tar.err
    rc=$?; wait; [ "$rc" = 0 ]
}; do
    [ "$attempt" -ge 6 ] && die "unpacking failed: $(cat /tmp/curl.err /tmp/tar.err | tail -n 3)"
    log "unpacking failed ($(cat /tmp/curl.err /tmp/tar.err | tail -n 1)); again from the start in $((attempt * 10))s"
    sleep $((attempt * 10))
    attempt=$((attempt + 1))
    # A half-unpacked tree is not kept: new file systems, then the stream again.
    unmount_all
    awk -F'\t' '$3 != "swap" {print $1 "\t" $3 "\t" $2}' /tmp/parts.tsv | while IFS="$(printf '\t')" read -r part fs role; do
        case "$fs" in
        vfat) mkfs.vfat -F 32 -n "$(echo "$role" | tr a-z A-Z)" "/dev/$part" >/dev/null ;;
        ext4) mkfs.ext4 -F -q -L "$role" "/dev/$part" >/dev/null ;;
        esac
    done
    awk -F'\t' '{print $1}' /tmp/parts.tsv | while read -r part; do
        uuid=$(blkid -s UUID -o value "/dev/$part"); echo "$part $uuid"
    done > /tmp/uuids
    awk 'NR==FNR {u[$1]=$2; next} {OFS="\t"; $5=u[$1]; print}' /tmp/uuids FS='\t' /tmp/parts.tsv > /tmp/parts.new \
        && mv /tmp/parts.new /tmp/parts.tsv
    mount_all rw || die "cannot mount the new file systems"
    started=$(cut -d' ' -f1 /proc/uptime)
done
got=$(cat /tmp/stream.sha)
written=$(awk -v a="$started" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.2f", b - a }')
[ "$got" = "$sha" ] || die "the archive streamed has SHA-256 $got, the image is $sha"

# 3. Read every file back from the disk, past the caches.
sync
unmount_all
echo 3 > /proc/sys/vm/drop_caches
mount_all ro || die "cannot mount the file systems again to read them back"
log "reading every file back"
manifest=$(cd "$T" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) \
    || die "reading the files back failed"
files=$(printf '%s\n' "$manifest" | grep -c .)
files_got=$(printf '%s\n' "$manifest" | openssl dgst -sha256 -r | cut -c1-64)
[ "$files_got" = "$files_sha" ] || die "the $files files on the disk have manifest SHA-256 $files_got, the image's is $files_sha"
log "$files files read back and match the image's manifest ($files_got)"

# 4. First-boot data: the mounts by UUID, and the NoCloud seed for cloud-init.
unmount_all
mount_all rw || die "cannot mount the file systems to add the first-boot data"
# Never write through a symbolic link the image brought (etc/fstab -> /dev/sdb
# would send the agent's writes to another disk or into its own RAM disk).
for p in etc etc/fstab var var/lib var/lib/cloud var/lib/cloud/seed var/lib/cloud/seed/nocloud \
    var/lib/cloud/seed/nocloud/meta-data var/lib/cloud/seed/nocloud/user-data \
    var/lib/cloud/seed/nocloud/network-config; do
    [ -L "$T/$p" ] && die "/$p is a symbolic link in the image; PureBoot writes no first-boot data through it"
done
mkdir -p "$T/etc"
{
    echo "# Written by PureBoot from the workflow's partition step."
    awk -F'\t' '{
        if ($3 == "swap") print "UUID=" $5 "\tnone\tswap\tsw\t0\t0";
        else if ($4 == "/") print "UUID=" $5 "\t/\t" $3 "\terrors=remount-ro\t0\t1";
        else if ($3 == "vfat") print "UUID=" $5 "\t" $4 "\tvfat\tumask=0077\t0\t1";
        else print "UUID=" $5 "\t" $4 "\t" $3 "\tdefaults\t0\t2";
    }' /tmp/parts.tsv
} > "$T/etc/fstab"
if [ "$(jq -r '.seed != null' "$P")" = true ]; then
    S="$T/var/lib/cloud/seed/nocloud"
    mkdir -p "$S"
    jq -r .seed.meta_data "$P" > "$S/meta-data"
    jq -r .seed.user_data "$P" > "$S/user-data"
    if [ "$(jq -r '.seed.network_config != null' "$P")" = true ]; then
        jq -r .seed.network_config "$P" > "$S/network-config"
    fi
    chmod 600 "$S"/*
    log "first-boot data written to /var/lib/cloud/seed/nocloud"
fi
sync
unmount_all
sync
jq -n --arg sha "$got" --arg fsha "$files_got" --argjson files "$files" --argjson seconds "$written" \
    --rawfile parts /tmp/parts.tsv \
    '{sha256: $sha, files_sha256: $fsha, files: $files, write_seconds: $seconds,
      partitions: ($parts | split("\n") | map(select(length > 0) | split("\t")
        | {device: ("/dev/" + .[0]), role: .[1], fs: .[2], mount: .[3], uuid: .[4]}))}'
