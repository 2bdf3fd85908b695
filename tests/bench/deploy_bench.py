"""Image deployment benchmark: the agent's deploy step against ``curl | dd`` in the same guest.

Run by ``make bench``. One QEMU guest (TCG here: no KVM; pinned to CPU 0)
boots the real agent (``manage.py build_agent``, cached) with an extra
``/init`` appended to its initramfs; the raw image is served over HTTP by
nginx (Debian ``nginx-light``; PureBoot's production server for images)
pinned to CPU 1, reached through QEMU's user network. In one boot, for
BENCH_RUNS rounds, the guest alternates:

- the peer: ``curl URL | dd of=/dev/vda bs=4M iflag=fullblock oflag=direct conv=fsync``
- PureBoot: the agent's own ``deploy.sh`` with the parameters the controller
  would send (same URL, the image's SHA-256), which writes the same way and
  then reads the image's length back to check the SHA-256.

It prints the median seconds of each, the write rate of each, and two ratios
(PureBoot's rate / the peer's): the write phase alone, and end to end with
the read-back check. From the measured per-byte cost it also prints what an
image of BENCH_GIB GiB would take at 1 and 10 Gbit/s when the network, not
the disk, is the limit.

Environment: BENCH_RUNS (3), BENCH_IMAGE_MB (256), BENCH_GIB (4).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pureboot-bench"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
IMAGE_MB = int(os.environ.get("BENCH_IMAGE_MB", "256"))
GIB = float(os.environ.get("BENCH_GIB", "4"))
PORT = 18731
GUEST_INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH="$(cat /etc/pureboot-agent/ld-library-path)"
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
while read -r m; do insmod "$m" 2>/dev/null; done < /etc/pureboot-agent/modules
ip link set lo up; ip link set eth0 up
udhcpc -i eth0 -q -n -t 8 -T 2 -s /usr/lib/pureboot-agent/udhcpc.sh >/dev/null 2>&1
CMDLINE=$(cat /proc/cmdline)
for w in $CMDLINE; do case "$w" in bench.*=*) eval "$(echo "${w#bench.}" | tr . _)";; esac; done
now() { cut -d' ' -f1 /proc/uptime; }
jq -n --argjson d "$disk_size" --argjson s "$size" --arg sha "$sha" \
    '{disk: {path: "/dev/vda", name: "vda", size: $d, serial: ""}, url: "/image.img",
      size: $s, sha256: $sha, seed: null}' > /tmp/p.json
URL="http://10.0.2.2:$port"
i=0
while [ "$i" -lt "$runs" ]; do
    echo 3 > /proc/sys/vm/drop_caches
    t0=$(now)
    curl -sS -f "$URL/image.img" \
        | dd of=/dev/vda bs=4194304 iflag=fullblock oflag=direct conv=fsync 2>/dev/null
    t1=$(now)
    echo "BENCH peer $t0 $t1"
    echo 3 > /proc/sys/vm/drop_caches
    t0=$(now)
    sh /usr/lib/pureboot-agent/deploy.sh /tmp/p.json > /tmp/r.json 2>/tmp/deploy.log
    t1=$(now)
    echo "BENCH pureboot $t0 $t1 $(jq -r .write_seconds /tmp/r.json) $(jq -r .sha256 /tmp/r.json)"
    i=$((i + 1))
done
echo "BENCH done"
poweroff -f
"""


def need(tool: str, package: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package], check=True, capture_output=True
        )
        found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not found:
        sys.exit(f"deploy bench: {tool} is missing: apt-get install {package}")
    return found


def newc(entries: dict[str, tuple[int, bytes]]) -> bytes:
    """A tiny cpio (newc) archive, appended to the agent's initramfs to replace /init."""
    import gzip

    out = b""
    for ino, (name, (mode, data)) in enumerate(sorted(entries.items()), start=1):
        raw = name.encode()
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw) + 1, 0)
        head = b"070701" + b"".join(f"{v:08X}".encode() for v in fields)
        out += head + raw + b"\0" + b"\0" * ((4 - (len(head) + len(raw) + 1) % 4) % 4)
        out += data + b"\0" * ((4 - len(data) % 4) % 4)
    trailer = b"TRAILER!!!"
    head = b"070701" + b"".join(
        f"{v:08X}".encode() for v in (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0)
    )
    out += head + trailer + b"\0" + b"\0" * ((4 - (len(head) + 11) % 4) % 4)
    return gzip.compress(out, mtime=0)


def main() -> None:
    qemu = need("qemu-system-x86_64", "qemu-system-x86")
    nginx = need("nginx", "nginx-light")
    taskset = need("taskset", "util-linux")
    agent_dir = CACHE / "agent"
    subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "build_agent", "--no-import",
         "--cache", str(CACHE / "agent-build"), "--output", str(agent_dir)],
        check=True, env={**os.environ, "PUREBOOT_VAR_DIR": str(CACHE / "var")},
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pureboot-deploy-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers read the image as their own user
        image = work / "image.img"
        block = hashlib.sha256(b"pureboot").digest() * (1024 * 1024 // 32)
        with image.open("wb") as f:
            for i in range(IMAGE_MB):
                f.write(block[i % 32 :] + block[: i % 32])  # incompressible enough, no zeros
        size = image.stat().st_size
        sha = hashlib.sha256(image.read_bytes()).hexdigest()
        disk = work / "disk.img"
        with disk.open("wb") as f:
            f.truncate(size + 64 * 1024 * 1024)
        conf = work / "nginx.conf"
        conf.write_text(
            f"daemon off; worker_processes 1; pid {work}/nginx.pid;\n"
            f"error_log {work}/error.log;\n"
            "events {}\nhttp { access_log off; sendfile on;\n"
            f"server {{ listen 127.0.0.1:{PORT};\n"
            f"root {work}; }} }}\n"
        )
        server = subprocess.Popen([taskset, "-c", "1", nginx, "-c", str(conf), "-p", str(work)])
        initrd = work / "initrd.img"
        initrd.write_bytes(
            (agent_dir / "initrd.img").read_bytes()
            + newc({"init": (0o100755, GUEST_INIT.encode())})
        )
        console = work / "console.log"
        append = (
            f"console=ttyS0 quiet bench.port={PORT} bench.size={size} bench.sha={sha} "
            f"bench.runs={RUNS} bench.disk_size={disk.stat().st_size} "
            f"pureboot.url=http://10.0.2.2:{PORT} pureboot.token=bench"
        )
        started = time.monotonic()
        try:
            subprocess.run(
                [taskset, "-c", "0", qemu, "-m", "1024", "-display", "none", "-monitor", "none",
                 "-no-reboot", "-serial", f"file:{console}", "-kernel", str(agent_dir / "vmlinuz"),
                 "-initrd", str(initrd), "-append", append,
                 "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
                 "-drive", f"file={disk},if=none,id=d0,format=raw,cache=none",
                 "-device", "virtio-blk-pci,drive=d0"],
                check=True, timeout=3600,
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait()
        shutil.copyfile(console, CACHE / "deploy-console.log")
        lines = [line.split() for line in console.read_text(errors="replace").splitlines()]
        peer = [float(x[3]) - float(x[2]) for x in lines if x[:2] == ["BENCH", "peer"]]
        ours = [x for x in lines if x[:2] == ["BENCH", "pureboot"]]
        if len(peer) != RUNS or len(ours) != RUNS or any(x[-1] != sha for x in ours):
            sys.exit(
                f"deploy bench: the guest did not finish its runs:\n{console.read_text()[-3000:]}"
            )
        total = [float(x[3]) - float(x[2]) for x in ours]
        writes = [float(x[4]) for x in ours]
    mib = size / 2**20
    peer_s, total_s, write_s = (statistics.median(v) for v in (peer, total, writes))
    result = {
        "image_mib": round(mib),
        "runs": RUNS,
        "peer_curl_dd_seconds": round(peer_s, 2),
        "pureboot_write_seconds": round(write_s, 2),
        "pureboot_total_seconds": round(total_s, 2),
        "peer_mib_per_s": round(mib / peer_s, 1),
        "pureboot_write_mib_per_s": round(mib / max(write_s, 0.01), 1),
        "ratio_write": round(peer_s / max(write_s, 0.01), 2),
        "ratio_end_to_end": round(peer_s / total_s, 2),
        "guest": "QEMU TCG (no KVM), virtio-blk cache=none, user network, nginx on the host",
        "wall_seconds": round(time.monotonic() - started),
    }
    # An image of GIB GiB: the network's floor at 1 and 10 Gbit/s, and this
    # guest's measured cost per byte (write + read-back) scaled to that size.
    scaled = total_s * GIB * 2**30 / size
    result[f"image_{GIB:g}GiB_measured_guest_seconds"] = round(scaled)
    for gbit in (1, 10):
        floor = GIB * 2**30 * 8 / (gbit * 1e9)
        result[f"image_{GIB:g}GiB_network_floor_{gbit}gbit_seconds"] = round(floor, 1)
    print(json.dumps(result, indent=1))
    print(
        f"deploy: PureBoot's agent {result['ratio_write']}x curl|dd (write phase), "
        f"{result['ratio_end_to_end']}x end to end with the SHA-256 read-back "
        f"({mib:.0f} MiB, medians of {RUNS})"
    )


if __name__ == "__main__":
    main()
