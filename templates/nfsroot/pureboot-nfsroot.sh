# PureBoot NFS root: an initramfs-tools boot script, /scripts/pureboot in the initramfs.
# shellcheck shell=sh
#
# Install it as /etc/initramfs-tools/scripts/pureboot (with the hook
# pureboot-nfsroot-hook.sh, see README.md here) and rebuild the initramfs.
# initramfs-tools' /init sources it when the kernel command line says
# boot=pureboot, after /scripts/functions, /scripts/local and /scripts/nfs
# (whose helpers it uses), and calls mount_top, mount_premount, mountroot
# and mount_bottom. PureBoot writes the command line:
#
#   root=/dev/nfs nfsroot=SERVER:/pureboot/templates/NAME,vers=4.1,ro ip=dhcp
#   boot=pureboot pureboot.overlay=SERVER:/pureboot/nodes/ID
#   pureboot.overlay_paths=/etc,/var,/home pureboot.url=URL pureboot.node=ID
#   [pureboot.token=TOKEN]
#
# What it does: bring the network up (ip=), mount the read-only template as
# the root, mount the node's own read-write export at /run/pureboot/overlay
# and bind each overlay folder from it over the template's (NFS cannot be an
# overlayfs upper layer, so each writable folder is the node's whole copy,
# which PureBoot seeded from the template). /init then moves /run into the
# new root, so the export stays mounted at /run/pureboot/overlay. With a
# token (the first boot of an install) it leaves a one-shot systemd unit in
# /run/systemd/system that, once the network is online, fetches the node's
# firstrun.sh (/api/v1/install/TOKEN/firstrun.sh: a raspberrypi_os task's
# first-boot configuration; 404 when the workflow has none) and runs it with
# PUREBOOT_NFSROOT=1, then reports "installed" and "active" to the controller,
# or "failed" when firstrun.sh fails. The token and firstrun.sh stay in /run
# (memory): nothing secret is written to NFS.
#
# Every mount is retried (the server may still be reloading its exports);
# a root or overlay that cannot be mounted ends in initramfs-tools' panic
# shell rather than a system booting without its writable folders.
#
# Only the functions below are defined: nothing runs when it is sourced.
# Mounting NFSv4 needs mount.nfs (nfs-common, copied in by the hook); without
# it, mount -t nfs4 with the server's address (klibc's or util-linux's mount;
# busybox's mount sends nfs* to its own NFSv3 client).

PUREBOOT_CMDLINE=${PUREBOOT_CMDLINE:-/proc/cmdline}
PUREBOOT_RUN=${PUREBOOT_RUN:-/run/pureboot}
PUREBOOT_UNITS=${PUREBOOT_UNITS:-/run/systemd/system}
PUREBOOT_TRIES=${PUREBOOT_TRIES:-60}
PUREBOOT_DELAY=${PUREBOOT_DELAY:-2}

# The value of NAME=VALUE on the kernel command line; fails when absent.
pureboot_arg() {
	set -f
	# shellcheck disable=SC2013 # words, not lines: the command line is one line
	for _pb_word in $(cat "$PUREBOOT_CMDLINE"); do
		case "$_pb_word" in
		"$1"=*)
			set +f
			printf '%s\n' "${_pb_word#*=}"
			return 0
			;;
		esac
	done
	set +f
	return 1
}

# Mount SERVER:PATH on TARGET with NFS OPTIONS.
pureboot_nfs_mount() {
	if command -v mount.nfs >/dev/null 2>&1; then
		mount.nfs "$1" "$2" -o "$3"
	else
		# The kernel's NFSv4 mount needs the server's address as addr=.
		mount -t nfs4 -o "$3,addr=${1%%:*}" "$1" "$2"
	fi
}

# Run a command until it succeeds, PUREBOOT_TRIES times at most.
pureboot_retry() {
	_pb_what=$1
	shift
	_pb_try=1
	while ! "$@"; do
		if [ "$_pb_try" -ge "$PUREBOOT_TRIES" ]; then
			return 1
		fi
		log_warning_msg "PureBoot: $_pb_what failed (attempt $_pb_try of $PUREBOOT_TRIES)"
		sleep "$PUREBOOT_DELAY"
		_pb_try=$((_pb_try + 1))
	done
}

# The NFS options with ro turned into rw (the overlay is written).
pureboot_rw_options() {
	_pb_out=""
	_pb_ifs=$IFS
	IFS=,
	for _pb_opt in $1; do
		[ "$_pb_opt" = ro ] && _pb_opt=rw
		_pb_out="${_pb_out:+$_pb_out,}$_pb_opt"
	done
	IFS=$_pb_ifs
	case ",$_pb_out," in
	*,rw,*) ;;
	*) _pb_out="${_pb_out:+$_pb_out,}rw" ;;
	esac
	printf '%s\n' "$_pb_out"
}

# Mount the node's export and bind its folders over the read-only root.
pureboot_overlay() {
	_pb_overlay=$(pureboot_arg pureboot.overlay) || return 0
	_pb_paths=$(pureboot_arg pureboot.overlay_paths) || _pb_paths=""
	_pb_mnt="$PUREBOOT_RUN/overlay"
	mkdir -p "$_pb_mnt"
	pureboot_retry "mounting the overlay $_pb_overlay" \
		pureboot_nfs_mount "$_pb_overlay" "$_pb_mnt" "$(pureboot_rw_options "$1")" ||
		panic "PureBoot: cannot mount the node's overlay $_pb_overlay"
	_pb_ifs=$IFS
	IFS=,
	for _pb_path in $_pb_paths; do
		IFS=$_pb_ifs
		case "$_pb_path" in
		/*) ;;
		*)
			log_warning_msg "PureBoot: overlay path $_pb_path is not absolute; skipped"
			continue
			;;
		esac
		if [ ! -d "${rootmnt?}$_pb_path" ] || [ -L "${rootmnt?}$_pb_path" ]; then
			log_warning_msg "PureBoot: $_pb_path is no folder in the root; not bound"
			continue
		fi
		[ -d "$_pb_mnt$_pb_path" ] || mkdir -p "$_pb_mnt$_pb_path"
		mount -o bind "$_pb_mnt$_pb_path" "${rootmnt?}$_pb_path" ||
			panic "PureBoot: cannot bind $_pb_path from the overlay"
	done
	IFS=$_pb_ifs
}

# With a token: the one-shot unit that configures (firstrun.sh) and reports the first boot.
pureboot_report_setup() {
	_pb_token=$(pureboot_arg pureboot.token) || _pb_token=""
	_pb_url=$(pureboot_arg pureboot.url) || _pb_url=""
	_pb_node=$(pureboot_arg pureboot.node) || _pb_node=""
	if [ -z "$_pb_token" ] || [ -z "$_pb_url" ]; then
		return 0
	fi
	mkdir -p "$PUREBOOT_RUN" "$PUREBOOT_UNITS/multi-user.target.wants"
	(
		umask 077
		printf 'PUREBOOT_URL=%s\nPUREBOOT_NODE=%s\nPUREBOOT_TOKEN=%s\n' \
			"$_pb_url" "$_pb_node" "$_pb_token" >"$PUREBOOT_RUN/node.env"
	)
	cat >"$PUREBOOT_RUN/report" <<'PUREBOOT_REPORT'
#!/bin/sh
# PureBoot: this diskless node's first boot. When its workflow configures it
# (raspberrypi_os), fetch its firstrun.sh and run it on this NFS root, then
# report "installed" and "active", or "failed" if it failed. Both files stay
# in /run (memory), readable by root only: the token is never written to NFS.
umask 077
env=${PUREBOOT_ENV:-/run/pureboot/node.env}
delay=${PUREBOOT_REPORT_DELAY:-10}
while IFS='=' read -r key value; do
	case "$key" in
	PUREBOOT_URL) url=$value ;;
	PUREBOOT_NODE) node=$value ;;
	PUREBOOT_TOKEN) token=$value ;;
	esac
done <"$env"
firstrun=${env%/*}/firstrun.sh
# One POST: 0 done, 2 the controller answered with an error (retrying is useless),
# 1 no answer.
# shellcheck disable=SC2317 # post and get are called through retry
post() {
	body="{\"node_id\": \"$node\", \"status\": \"$1\", \"progress\": 100, \"logs\": [\"$2\"]}"
	if command -v curl >/dev/null 2>&1; then
		curl -fsS -o /dev/null -m 30 -H "Authorization: Node $token" \
			-H "Content-Type: application/json" --data "$body" "$url/api/v1/report"
		rc=$? error=22
	else
		wget -q -O /dev/null -T 30 --header="Authorization: Node $token" \
			--header="Content-Type: application/json" --post-data="$body" \
			"$url/api/v1/report"
		rc=$? error=8
	fi
	[ "$rc" -eq 0 ] && return 0
	[ "$rc" -eq "$error" ] && return 2
	return 1
}
# One GET of the node's firstrun.sh: 0 fetched, 3 none (404: the workflow has no
# raspberrypi_os), 2 another answer, 1 no answer yet (none, busy: 429, 5xx). The
# answer's status is in $code.
# shellcheck disable=SC2317
get() {
	if command -v curl >/dev/null 2>&1; then
		code=$(curl -sS -o "$firstrun" -w '%{http_code}' -m 60 \
			"$url/api/v1/install/$token/firstrun.sh")
	else
		# wget -S prints the answer's status line (HTTP/1.1 404 Not Found) on stderr.
		code=$(wget -S -O "$firstrun" -T 60 "$url/api/v1/install/$token/firstrun.sh" 2>&1 |
			sed -n 's|^ *HTTP/[0-9.]* \([0-9][0-9][0-9]\).*|\1|p' | tail -n 1)
	fi
	case "$code" in
	200) return 0 ;;
	404) return 3 ;;
	429 | 5[0-9][0-9]) return 1 ;;
	[1-4][0-9][0-9]) return 2 ;;
	*) return 1 ;;
	esac
}
# Repeat a POST or a GET while the controller does not answer.
retry() {
	for attempt in 1 2 3 4 5 6; do
		"$@"
		rc=$?
		[ "$rc" -ne 1 ] && return "$rc"
		[ "$attempt" -lt 6 ] && sleep "$delay"
	done
	return 1
}
finish() {
	rm -f "$env" "$firstrun"
	exit "$1"
}
retry get
case $? in
0)
	echo "PureBoot: running firstrun.sh from $url"
	# As a service would: files it writes in /etc are for everyone to read.
	(umask 022 && PUREBOOT_NFSROOT=1 exec bash "$firstrun")
	rc=$?
	if [ "$rc" -ne 0 ]; then
		retry post failed "diskless: firstrun.sh failed (exit $rc), see journalctl -u pureboot-report"
		finish 1
	fi
	what="firstrun.sh done"
	;;
3) what="system up" ;;
*)
	answer="HTTP ${code:-000}"
	[ "$answer" = "HTTP 000" ] && answer="no answer"
	echo "PureBoot: cannot fetch firstrun.sh ($answer):" >&2
	[ -s "$firstrun" ] && head -c 2000 "$firstrun" >&2
	retry post failed "diskless: cannot fetch firstrun.sh from the controller ($answer)"
	finish 1
	;;
esac
retry post installed "diskless: NFS root and overlay mounted, $what"
retry post active "diskless: first boot"
finish 0
PUREBOOT_REPORT
	chmod 700 "$PUREBOOT_RUN/report"
	cat >"$PUREBOOT_UNITS/pureboot-report.service" <<PUREBOOT_UNIT
[Unit]
Description=PureBoot: configure this diskless node's first boot and report it
Wants=network-online.target
After=network-online.target
ConditionPathExists=$PUREBOOT_RUN/node.env

[Service]
Type=oneshot
TimeoutStartSec=30min
ExecStart=/bin/sh $PUREBOOT_RUN/report
PUREBOOT_UNIT
	ln -sf ../pureboot-report.service \
		"$PUREBOOT_UNITS/multi-user.target.wants/pureboot-report.service"
}

mount_top() {
	:
}

mount_premount() {
	:
}

mount_bottom() {
	:
}

mountroot() {
	configure_networking
	modprobe -q nfsv4 2>/dev/null || true
	# /init sets NFSROOT from nfsroot=; SERVER:/PATH[,OPTIONS].
	NFSROOT=${NFSROOT:-$(pureboot_arg nfsroot)}
	_pb_spec=${NFSROOT%%,*}
	_pb_opts=${NFSROOT#"$_pb_spec"}
	_pb_opts=${_pb_opts#,}
	_pb_opts=${_pb_opts:-vers=4.1,ro}
	case "$_pb_spec" in
	?*:/*) ;;
	*) panic "PureBoot: nfsroot=$NFSROOT is not SERVER:/PATH[,OPTIONS]" ;;
	esac
	pureboot_retry "mounting the NFS root $_pb_spec" \
		pureboot_nfs_mount "$_pb_spec" "${rootmnt?}" "$_pb_opts" ||
		panic "PureBoot: cannot mount the NFS root $_pb_spec"
	pureboot_overlay "$_pb_opts"
	pureboot_report_setup
}
