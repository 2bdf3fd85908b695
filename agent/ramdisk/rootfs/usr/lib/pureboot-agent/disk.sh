# PureBoot agent: the step's disk, and is it still the one the controller planned?
# Device names can change between boots; nothing is written to another disk.

disk_params() {  # PARAMS.json: the planned disk, and log/die for the step
    dev=$(jq -r .disk.path "$1")
    name=$(jq -r .disk.name "$1")
    want_size=$(jq -r .disk.size "$1")
    want_serial=$(jq -r '.disk.serial // ""' "$1")
}
log() { echo "$*" >&2; say "$name: $*"; }
die() { log "FAILED: $*"; exit 1; }
disk_serial() {  # path name
    s=$(cat "/sys/block/$2/device/serial" "/sys/block/$2/serial" 2>/dev/null | head -n 1 | sed 's/^ *//; s/ *$//')
    [ -z "$s" ] && s=$(hdparm -I "$1" 2>/dev/null | sed -n 's/^\s*Serial Number:\s*//p' | head -n 1 | sed 's/\s*$//')
    [ -z "$s" ] && s=$(sg_inq -p 0x80 "$1" 2>/dev/null | sed -n 's/^\s*Unit serial number:\s*//p' | head -n 1 | sed 's/\s*$//')
    echo "$s"
}

check_disk() {  # path name size serial; sets DISK_PROBLEM on failure
    DISK_PROBLEM=""
    [ -b "$1" ] || { DISK_PROBLEM="$1 is not a block device here"; return 1; }
    have=$(blockdev --getsize64 "$1") || { DISK_PROBLEM="cannot read the size of $1"; return 1; }
    [ "$have" = "$3" ] || { DISK_PROBLEM="$1 has $have bytes, the planned disk $3; not writing"; return 1; }
    if [ -n "$4" ]; then
        serial=$(disk_serial "$1" "$2")
        [ "$serial" = "$4" ] || { DISK_PROBLEM="$1 has serial '$serial', the planned disk '$4'; not writing"; return 1; }
    fi
    return 0
}

BS=4194304
read_range() {  # dev size: exactly SIZE bytes from the start of DEV, past the page cache
    full=$(($2 / BS)); rest=$(($2 % BS))
    dd if="$1" bs=$BS count=$full iflag=direct 2>/dev/null || return 1
    if [ "$rest" -gt 0 ]; then
        if [ $((rest % 512)) = 0 ]; then
            dd if="$1" bs=512 skip=$((full * BS / 512)) count=$((rest / 512)) iflag=direct 2>/dev/null
        else
            dd if="$1" bs=$BS skip=$full count=1 iflag=direct 2>/dev/null | head -c "$rest"
        fi
    fi
}
sha_range() {  # dev size: the SHA-256 of its first SIZE bytes (OpenSSL's)
    read_range "$1" "$2" | openssl dgst -sha256 -r | cut -c1-64
}
copy_range() {  # from to size: whole blocks, then the remaining 512-byte sectors
    full=$(($3 / BS)); rest=$(($3 % BS))
    [ $((rest % 512)) = 0 ] || { echo "$3 is not a whole number of sectors" >&2; return 1; }
    dd if="$1" of="$2" bs=$BS count=$full iflag=direct oflag=direct conv=fsync 2>/tmp/dd.err || return 1
    if [ "$rest" -gt 0 ]; then
        dd if="$1" of="$2" bs=512 skip=$((full * BS / 512)) seek=$((full * BS / 512)) \
            count=$((rest / 512)) iflag=direct oflag=direct conv=fsync 2>>/tmp/dd.err || return 1
    fi
}
