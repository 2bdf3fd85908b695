# PureBoot agent: sanitize one disk and prove it by reading it back.
# Usage: wipe.sh PARAMS.json   (the step's parameters from the controller)
# Prints the result as JSON on stdout; the log goes to stderr. Exits non-zero
# when the disk cannot be wiped as planned or the read-back finds data left.
#
# A tool's exit status proves nothing (busybox shred exits 0 on a block
# device and writes nothing), so every method is followed by reading the disk
# back with O_DIRECT (past the page cache): in full, or in N random 1 MiB
# regions (PUREBOOT_WIPE_VERIFY=sample:N). A method that leaves zeros (or
# ones) must leave every block read uniform; a crypto erase leaves noise, so
# regions sampled before it must all read differently after it.
set -o pipefail
. /usr/lib/pureboot-agent/lib.sh
P=$1
. /usr/lib/pureboot-agent/disk.sh
disk_params "$P"
method=$(jq -r .method "$P")
expect=$(jq -r .expect "$P")
passes=$(jq -r '.passes // 1' "$P")
verify=$(jq -r '.verify // "full"' "$P")
MiB=1048576

check_disk "$dev" "$name" "$want_size" "$want_serial" || die "$DISK_PROBLEM"
size=$want_size

regions() {  # count -> region offsets in MiB: the first, the last, the rest random
    total=$(( (size + MiB - 1) / MiB ))
    awk -v n="$1" -v m="$total" 'BEGIN { srand(); print 0; if (m > 1) print m - 1;
        for (i = 2; i < n && i < m; i++) print int(rand() * m) }' | sort -un
}

digest_region() { dd if="$dev" bs=$MiB skip="$1" count=1 iflag=direct 2>/dev/null | sha256sum | cut -c1-64; }

if [ "$expect" = changed ]; then
    regions 64 > /tmp/regions.txt
    : > /tmp/before.txt
    while read -r r; do echo "$r $(digest_region "$r")" >> /tmp/before.txt; done < /tmp/regions.txt
fi

overwrite() {
    blocks=$((size / MiB)); rest=$((size % MiB))
    pass=1
    while [ "$pass" -le "$passes" ]; do
        if [ "$pass" -lt "$passes" ]; then src=/dev/urandom; what="random data"; else src=/dev/zero; what=zeros; fi
        log "pass $pass of $passes: writing $what over $size bytes"
        dd if=$src of="$dev" bs=$MiB count=$blocks iflag=fullblock oflag=direct conv=fsync 2>/tmp/dd.err \
            || die "dd failed: $(cat /tmp/dd.err)"
        if [ "$rest" -gt 0 ]; then
            dd if=$src of="$dev" bs=512 seek=$((blocks * 2048)) count=$((rest / 512)) iflag=fullblock conv=fsync 2>/tmp/dd.err \
                || die "dd failed on the last $rest bytes: $(cat /tmp/dd.err)"
        fi
        pass=$((pass + 1))
    done
}

nvme_sanitize() {  # action (2 block, 4 crypto)
    ctrl=/dev/${name%n[0-9]*}
    nvme sanitize "$ctrl" --sanact="$1" >&2 || die "nvme sanitize refused"
    while :; do
        sleep 5
        nvme sanitize-log "$ctrl" -o json > /tmp/sanlog.json 2>/dev/null || continue
        sprog=$(jq '[.. | .sprog? // empty][0] // 65535' /tmp/sanlog.json)
        log "sanitize progress $((sprog * 100 / 65535))%"
        [ "$sprog" = 65535 ] && break
    done
    sstat=$(jq '[.. | .sstat? // empty][0] // 0' /tmp/sanlog.json)
    [ $((sstat & 7)) = 1 ] || die "sanitize did not complete successfully (SSTAT $sstat)"
}

ata_erase() {  # --security-erase or --security-erase-enhanced
    hdparm -I "$dev" | sed -n '/^Security:/,/^[A-Z]/p' | grep -Eq '^\s+not\s+frozen' \
        || die "ATA security is frozen now; suspend and resume the machine to unfreeze it"
    hdparm --user-master u --security-set-pass PureBoot "$dev" >&2 || die "setting the ATA password failed"
    hdparm --user-master u "$1" PureBoot "$dev" >&2 || die "ATA security erase failed"
}

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "sanitizing $dev ($size bytes) by $method"
case "$method" in
overwrite) overwrite ;;
nvme-format) nvme format "$dev" --ses=1 --force >&2 || die "nvme format --ses=1 failed" ;;
nvme-format-crypto) nvme format "$dev" --ses=2 --force >&2 || die "nvme format --ses=2 failed" ;;
nvme-sanitize-block) nvme_sanitize 2 ;;
nvme-sanitize-crypto) nvme_sanitize 4 ;;
ata-security-erase|ata-security-erase-ssd) ata_erase --security-erase ;;
ata-security-erase-enhanced) ata_erase --security-erase-enhanced ;;
scsi-sanitize) sg_sanitize --quick --block --wait "$dev" >&2 || die "sg_sanitize failed" ;;
mmc-secure-discard) blkdiscard --secure "$dev" >&2 || die "blkdiscard --secure failed" ;;
*) die "this agent does not know the method $method" ;;
esac
blockdev --flushbufs "$dev" 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
log "reading $dev back to verify ($verify)"

left() {  # skip count -> bytes that are not $1 in the range (reads with O_DIRECT)
    dd if="$dev" bs=$MiB skip="$2" ${3:+count=$3} iflag=direct 2>/tmp/read.err | tr -d "$1" | wc -c
}

passed=false; detail=""; mode=full; bytes_read=0; count=0
if [ "$expect" = uniform ]; then
    if [ "$verify" = full ]; then
        nz=$(left '\000' 0) || die "reading $dev back failed: $(cat /tmp/read.err)"
        if [ "$nz" = 0 ]; then
            passed=true; detail="all $size bytes read back as zeros"
        else
            no=$(left '\377' 0) || die "reading $dev back failed: $(cat /tmp/read.err)"
            if [ "$no" = 0 ]; then passed=true; detail="all $size bytes read back as 0xFF"
            else detail="$nz bytes read back non-zero after $method"; fi
        fi
        bytes_read=$size
    else
        mode=sampled
        regions "${verify#sample:}" > /tmp/regions.txt
        bad=0
        while read -r r; do
            nz=$(left '\000' "$r" 1) || die "reading region $r back failed"
            [ "$nz" = 0 ] || { no=$(left '\377' "$r" 1); [ "$no" = 0 ] || bad=$((bad + 1)); }
            count=$((count + 1))
        done < /tmp/regions.txt
        bytes_read=$((count * MiB))
        [ "$bytes_read" -gt "$size" ] && bytes_read=$size
        if [ "$bad" = 0 ]; then passed=true; detail="$count random 1 MiB regions read back uniform"
        else detail="$bad of $count sampled regions still hold data"; fi
    fi
else
    mode=sampled
    bad=0
    while read -r r digest; do
        [ "$(digest_region "$r")" = "$digest" ] && bad=$((bad + 1))
        count=$((count + 1))
    done < /tmp/before.txt
    bytes_read=$((count * MiB))
    [ "$bytes_read" -gt "$size" ] && bytes_read=$size
    if [ "$bad" = 0 ]; then passed=true; detail="all $count regions sampled before the crypto erase read differently after it"
    else detail="$bad of $count sampled regions read the same as before the erase"; fi
fi
ended=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "verification: $detail"
jq -n --arg method "$method" --arg mode "$mode" --arg expect "$expect" \
    --argjson bytes "$bytes_read" --argjson regions "$count" --argjson passed "$passed" \
    --arg detail "$detail" --arg started "$started" --arg ended "$ended" \
    --arg output "$(tail -n 20 /tmp/dd.err 2>/dev/null)" \
    '{method: $method, started_at: $started, ended_at: $ended, output: $output,
      verification: {mode: $mode, expect: $expect, bytes_read: $bytes, regions: $regions,
                     passed: $passed, detail: $detail}}'
[ "$passed" = true ] || exit 1
