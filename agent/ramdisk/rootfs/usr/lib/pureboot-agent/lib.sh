# PureBoot agent: helpers shared by the job loop and the step scripts.
# Every line meant for people (and the boot lab) starts with "PureBoot agent:".

# BusyBox's shell runs its own applet for a name before it looks at PATH
# (busybox tar for tar, busybox blkdiscard for blkdiscard, ...). The agent's
# real tools that share a name with an applet are called by their path.
APPLETS=" $(busybox --list 2>/dev/null | tr '\n' ' ') "
for real in /bin/* /sbin/* /usr/bin/* /usr/sbin/*; do
    name=${real##*/}
    case "$name" in busybox|*[!A-Za-z0-9_]*) continue ;; esac
    if [ -L "$real" ]; then
        case "$(readlink "$real")" in *busybox) continue ;; esac
    fi
    case "$APPLETS" in *" $name "*) eval "$name() { $real \"\$@\"; }" ;; esac
done
unset real name

say() { echo "PureBoot agent: $*" > /dev/console 2>/dev/null || echo "PureBoot agent: $*"; }

CMDLINE=$(cat /proc/cmdline 2>/dev/null)
arg() {
    for word in $CMDLINE; do
        case "$word" in "$1="*) echo "${word#*=}"; return 0;; esac
    done
    return 1
}

URL=$(arg pureboot.url)
TOKEN=$(arg pureboot.token)
CA_FILE=/etc/ssl/certs/ca-certificates.crt

# api METHOD PATH OUTFILE [BODYFILE]: one request with the node's token.
# Prints the HTTP status ("000" when the controller could not be reached).
api() {
    if [ -n "${4:-}" ]; then
        code=$(curl -sS -o "$3" -w '%{http_code}' -X "$1" --cacert "$CA_FILE" \
            -H "Authorization: Node $TOKEN" -H 'Content-Type: application/json' \
            --data-binary @"$4" --connect-timeout 10 --max-time 120 "$URL$2" 2>/dev/null)
    else
        code=$(curl -sS -o "$3" -w '%{http_code}' -X "$1" --cacert "$CA_FILE" \
            -H "Authorization: Node $TOKEN" --connect-timeout 10 --max-time 120 "$URL$2" 2>/dev/null)
    fi
    echo "${code:-000}"
}

# send PATH BODYFILE OUTFILE: POST until the controller answers. 0 when it
# took it; 1 when it refused (4xx: the reason is in OUTFILE). A controller
# that is down or failing (no answer, 5xx, 429) is waited for, with backoff:
# a result is never dropped, and nothing is done without it.
send() {
    wait=2
    while :; do
        code=$(api POST "$1" "$3" "$2")
        case "$code" in
        2??) return 0 ;;
        000|5??|429) say "controller unavailable ($code) for $1; retrying in ${wait}s" ;;
        *) return 1 ;;
        esac
        sleep "$wait"
        wait=$((wait * 2)); [ "$wait" -gt 60 ] && wait=60
    done
}

# A JSON string from text (quotes, backslashes and control characters escaped).
json_text() { jq -Rs . ; }
