# PureBoot agent: 1:1 migration over iSCSI, one side at a time.
# Usage: migrate.sh copy_out|restore PARAMS.json
# Prints the result as JSON on stdout; the log goes to stderr.
#
# copy_out (the source machine): its disk is read (never written) into the
# migration's LUN on the controller, then both are read back and hashed.
# restore (the target machine): the LUN is written onto its disk, which is
# read back and hashed; the controller compares it with the source's hash.
# open-iscsi logs in with CHAP; the controller admits only this machine's
# address while it is its turn.
set -o pipefail
. /usr/lib/pureboot-agent/lib.sh
MODE=$1
P=$2
. /usr/lib/pureboot-agent/disk.sh
disk_params "$P"
portal="$(jq -r .portal "$P"):$(jq -r .port "$P")"
iqn=$(jq -r .iqn "$P")
lun=$(jq -r .lun "$P")
size=$(jq -r .size "$P")

check_disk "$dev" "$name" "$want_size" "$want_serial" || die "$DISK_PROBLEM"
[ "$want_size" -ge "$size" ] || die "$dev has $want_size bytes; the copy is $size"

# open-iscsi: its daemon, this machine's initiator name, CHAP as the default
# of every node record (the secret stays in RAM, in a file only root reads).
mkdir -p /etc/iscsi /run/lock/iscsi /var/lib/iscsi
umask 077
echo "InitiatorName=$(jq -r .initiator "$P")" > /etc/iscsi/initiatorname.iscsi
jq -r '"node.startup = manual\nnode.session.auth.authmethod = CHAP\n" +
    "node.session.auth.username = \(.chap.user)\nnode.session.auth.password = \(.chap.secret)\n" +
    "node.session.timeo.replacement_timeout = 30\nnode.conn[0].timeo.login_timeout = 15\n"' \
    "$P" > /etc/iscsi/iscsid.conf
umask 022
pidof iscsid >/dev/null 2>&1 || iscsid >&2 2>&1 || die "iscsid did not start"
sleep 1

logout() {
    iscsiadm -m node -T "$iqn" -p "$portal" --logout >/dev/null 2>&1
    iscsiadm -m node -T "$iqn" -p "$portal" -o delete >/dev/null 2>&1
}
logout
iscsiadm -m node -T "$iqn" -p "$portal" -o new >&2 2>&1 || die "cannot record the iSCSI target $iqn"
log "logging in to $iqn at $portal"
tries=1
until iscsiadm -m node -T "$iqn" -p "$portal" --login >/tmp/iscsi.err 2>&1; do
    [ "$tries" -ge 5 ] && die "iSCSI login to $iqn failed: $(tail -n 2 /tmp/iscsi.err)"
    log "iSCSI login failed ($(tail -n 1 /tmp/iscsi.err)); again in $((tries * 5))s"
    sleep $((tries * 5)); tries=$((tries + 1))
done
trap logout EXIT

# The LUN's block device: the session's SCSI device at LUN $lun.
lundev=""
for i in $(seq 1 30); do
    for block in /sys/class/iscsi_session/session*/device/target*/*:*:*:"$lun"/block/*; do
        [ -e "$block" ] || continue
        session=${block#/sys/class/iscsi_session/}; session=${session%%/*}
        [ "$(cat "/sys/class/iscsi_session/$session/targetname")" = "$iqn" ] || continue
        lundev=/dev/${block##*/}
    done
    [ -n "$lundev" ] && [ -b "$lundev" ] && break
    sleep 1
done
[ -n "$lundev" ] && [ -b "$lundev" ] || die "the LUN of $iqn did not appear as a disk"
lunsize=$(blockdev --getsize64 "$lundev") || die "cannot read the LUN's size"
[ "$lunsize" -ge "$size" ] || die "the LUN has $lunsize bytes; the copy is $size"
log "the LUN is $lundev ($lunsize bytes)"

started=$(cut -d' ' -f1 /proc/uptime)
case "$MODE" in
copy_out)
    log "copying $size bytes of $dev to the controller"
    copy_range "$dev" "$lundev" "$size" || die "copying to the LUN failed: $(tail -n 2 /tmp/dd.err)"
    blockdev --flushbufs "$lundev" 2>/dev/null
    echo 3 > /proc/sys/vm/drop_caches
    log "reading both back to check"
    src=$(sha_range "$dev" "$size") || die "reading $dev back failed"
    copy=$(sha_range "$lundev" "$size") || die "reading the LUN back failed"
    [ "$src" = "$copy" ] || die "the copy reads SHA-256 $copy, $dev $src"
    ;;
restore)
    log "restoring $size bytes from the controller onto $dev"
    copy_range "$lundev" "$dev" "$size" || die "writing $dev failed: $(tail -n 2 /tmp/dd.err)"
    blockdev --flushbufs "$dev" 2>/dev/null
    echo 3 > /proc/sys/vm/drop_caches
    log "reading $dev back to check"
    src=$(sha_range "$dev" "$size") || die "reading $dev back failed"
    copy=$src
    want=$(jq -r .sha256 "$P")
    [ "$src" = "$want" ] || die "$dev reads back SHA-256 $src, the source's was $want"
    # A larger disk: move the GPT's backup header to its end (after the check).
    if [ "$want_size" -gt "$size" ] && [ "$(sfdisk --dump "$dev" 2>/dev/null | sed -n 's/^label: *//p')" = gpt ]; then
        sfdisk --relocate gpt-bak-std "$dev" >&2 2>&1 || log "could not move the GPT backup header"
    fi
    ;;
*) die "unknown migration step $MODE" ;;
esac
seconds=$(awk -v a="$started" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.2f", b - a }')
log "SHA-256 $src ($size bytes, ${seconds}s)"
sync
jq -n --arg sha "$src" --arg lun "$copy" --argjson bytes "$size" --argjson seconds "$seconds" \
    '{sha256: $sha, lun_sha256: $lun, bytes: $bytes, seconds: $seconds}'
