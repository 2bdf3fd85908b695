# PureBoot agent: the job loop.
#
# Ask the controller for the job, run the step it names, report the step
# started, send heartbeats and log lines while it runs, report its result,
# ask again. The controller decides everything; the agent only acts on its
# own node with its own token. A machine that lost power boots the agent
# again and asks: the controller names the step it was in, and it runs
# again from the start. When the controller cannot be reached the agent
# waits for it: no step is skipped and nothing is marked done without it.
. /usr/lib/pureboot-agent/lib.sh
LIB=/usr/lib/pureboot-agent

if [ -z "$URL" ] || [ -z "$TOKEN" ]; then
    say "no pureboot.url or pureboot.token on the kernel command line; nothing to do"
    exit 1
fi

network_up() {
    ip link set lo up
    for dev in /sys/class/net/*; do
        name=${dev##*/}
        [ "$name" = lo ] && continue
        ip link set "$name" up 2>/dev/null
    done
    sleep 2
    for dev in /sys/class/net/*; do
        name=${dev##*/}
        [ "$name" = lo ] && continue
        [ "$(cat "$dev/carrier" 2>/dev/null)" = 1 ] || continue
        if udhcpc -i "$name" -q -n -t 8 -T 2 -s "$LIB/udhcpc.sh" >/dev/null 2>&1; then
            say "network up on $name: $(ip -4 -o addr show "$name" | awk '{print $4}')"
            return 0
        fi
    done
    return 1
}

until network_up; do
    say "no DHCP lease on any interface; trying again in 10s"
    sleep 10
done
say "ready (controller $URL)"

HB=15
run_step() {  # job index action
    job=$1; index=$2; action=$3
    base="/api/v1/agent/jobs/$job"
    : > /tmp/step.log
    echo 0 > /tmp/step.sent
    echo '{"status": "started"}' > /tmp/started.json
    if ! send "$base/steps/$index" /tmp/started.json /tmp/started.out; then
        say "step $index refused: $(cat /tmp/started.out)"
        return 0  # ask for the job again
    fi
    say "step $index: $action started"
    (
        while :; do
            sleep "$HB"
            ship_log "$base"
            jq -n --argjson step "$index" --arg d "$(tail -n 1 /tmp/step.log | cut -c1-400)" \
                '{step: $step, detail: $d}' > /tmp/beat.json
            api POST "$base/heartbeat" /tmp/beat.out /tmp/beat.json >/dev/null
        done
    ) &
    beat=$!
    rc=0
    case "$action" in
    inventory) sh "$LIB/inventory.sh" > /tmp/result.json 2>>/tmp/step.log || rc=$? ;;
    wipe) sh "$LIB/wipe.sh" /tmp/params.json > /tmp/result.json 2>>/tmp/step.log || rc=$? ;;
    deploy) sh "$LIB/deploy.sh" /tmp/params.json > /tmp/result.json 2>>/tmp/step.log || rc=$? ;;
    deploy_files) sh "$LIB/files.sh" /tmp/params.json > /tmp/result.json 2>>/tmp/step.log || rc=$? ;;
    copy_out|restore) sh "$LIB/migrate.sh" "$action" /tmp/params.json > /tmp/result.json 2>>/tmp/step.log || rc=$? ;;
    *) echo "this agent cannot run steps of type $action" >> /tmp/step.log; rc=2 ;;
    esac
    kill "$beat" 2>/dev/null
    wait "$beat" 2>/dev/null
    ship_log "$base"
    if [ "$rc" = 0 ]; then
        jq -n --slurpfile r /tmp/result.json '{status: "succeeded", result: $r[0]}' > /tmp/report.json \
            || { rc=3; echo "the step's result is not JSON" >> /tmp/step.log; }
    fi
    if [ "$rc" != 0 ]; then
        tail -n 20 /tmp/step.log | jq -Rs '{status: "failed", detail: .}' > /tmp/report.json
    fi
    if send "$base/steps/$index" /tmp/report.json /tmp/report.out; then
        say "step $index: $action $( [ "$rc" = 0 ] && echo succeeded || echo failed)"
        # The answer says what next; "poweroff" when the job has ended (done or failed).
        case "$(jq -r .action /tmp/report.out 2>/dev/null)" in
        poweroff) say "done: $(jq -r .reason /tmp/report.out)"; exit 0 ;;
        reboot) say "done: $(jq -r .reason /tmp/report.out); rebooting into the deployed system"
            sync; reboot -f ;;
        esac
    else
        say "step $index: the controller refused the result: $(cat /tmp/report.out)"
    fi
}

ship_log() {  # base: send the step log's new lines (500 at a time)
    total=$(wc -l < /tmp/step.log)
    sent=$(cat /tmp/step.sent)
    while [ "$total" -gt "$sent" ]; do
        sed -n "$((sent + 1)),$((sent + 500))p" /tmp/step.log | jq -R . | jq -s '{lines: .}' > /tmp/log.json
        [ "$(api POST "$1/log" /tmp/log.out /tmp/log.json)" = 200 ] || return 0
        sent=$((sent + 500)); [ "$sent" -gt "$total" ] && sent=$total
        echo "$sent" > /tmp/step.sent
    done
}

wait=2
while :; do
    code=$(api GET /api/v1/agent/job /tmp/job.json)
    case "$code" in
    200) wait=2 ;;
    401|403)
        say "the controller refused this agent's token: $(cat /tmp/job.json)"
        exit 0 ;;
    *)
        say "controller unavailable ($code); asking again in ${wait}s"
        sleep "$wait"; wait=$((wait * 2)); [ "$wait" -gt 60 ] && wait=60
        continue ;;
    esac
    if [ "$(jq -r .action /tmp/job.json)" = reboot ]; then
        say "done: $(jq -r .reason /tmp/job.json); rebooting into the deployed system"
        sync; reboot -f
    fi
    if [ "$(jq -r .action /tmp/job.json)" = wait ]; then
        # The other machine of a migration is not there yet: ask again (this is its heartbeat).
        say "waiting: $(jq -r .reason /tmp/job.json)"
        sleep "$(jq -r '.heartbeat_seconds // 15' /tmp/job.json)"
        continue
    fi
    if [ "$(jq -r .action /tmp/job.json)" != run ]; then
        say "done: $(jq -r .reason /tmp/job.json)"
        exit 0
    fi
    HB=$(jq -r '.heartbeat_seconds // 15' /tmp/job.json)
    jq '.step.params' /tmp/job.json > /tmp/params.json
    [ "$(jq -r .step.resume /tmp/job.json)" = true ] && say "resuming step $(jq -r .step.index /tmp/job.json) after an interruption"
    run_step "$(jq -r .job /tmp/job.json)" "$(jq -r .step.index /tmp/job.json)" "$(jq -r .step.action /tmp/job.json)"
done
