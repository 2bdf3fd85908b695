"""A diskless Raspberry Pi's first boot: the NFS-root boot script's one-shot unit fetches
the node's firstrun.sh (raspberrypi_os), runs it on the NFS root, then reports installed
and active, or failed; and the shipped example (docs/examples/workflows/raspberry-pi-os.yaml)
does so end to end against the real controller (pytest-django's live server).

firstrun.sh is run for real, as root would run it on the Pi, but its root is a folder
here: a ``bash`` first on PATH re-roots its absolute paths (/etc, /usr, /var, /boot,
/home) into that folder, the commands that would change this machine (hostname,
usermod, systemctl, ...) are stubs that record their arguments, and, when the tests
run as root, it all runs as ``nobody``, so nothing missed can touch this machine."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from bootserve import raspberrypi
from nodes.models import Node
from tests.factories import make_node, make_workflow
from tests.workflows.installer_helpers import report_controller
from tests.workflows.test_rootfs import make_archive, system_members
from workflows.installer_checks import check_installer
from workflows.models import WorkflowRun

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "templates" / "nfsroot" / "pureboot-nfsroot.sh"
EXAMPLE = ROOT / "docs" / "examples" / "workflows" / "raspberry-pi-os.yaml"
TOKEN = "TOKEN:abc"
SERIAL = "10000000c0ffee01"
# What the example configures: its user, and the key it authorises.
EXAMPLE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfXb0m0pX3b1Rz8Qd8yXv2cJvJtq9gJmT0nU7G0c4Xy"
IMAGER_CMDLINE = (
    "console=serial0,115200 root=PARTUUID=1-02 rootwait quiet "
    "systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
    "systemd.unit=kernel-command-line.target\n"
)
# Commands firstrun.sh runs that would change this machine: each records its arguments.
STUBS = {
    "getent": 'echo "pi:x:1000:1000:,,,:$NODE_ROOT/home/pi:/bin/bash"',
    "install": 'for last; do :; done; mkdir -p "$last"',
    "locale": 'printf "C\\nC.utf8\\nen_GB.utf8\\nPOSIX\\n"',
    "chpasswd": "cat >/dev/null",
    **dict.fromkeys(
        [
            "hostname",
            "usermod",
            "groupmod",
            "chown",
            "systemctl",
            "dpkg-reconfigure",
            "update-locale",
            "raspi-config",
            "reboot",
        ],
        "",
    ),
}
REROOT = r"s#(^|[^A-Za-z0-9_.:/-])/(etc|usr|var|boot|home)/#\1{root}/\2/#g"


class NodeRoot:
    """A Pi's root file system in a folder, and the commands that run on it."""

    def __init__(self, base: Path, fail: str = "") -> None:
        self.base, self.root, self.run = base, base / "root", base / "run"
        self.calls = base / "calls"
        stubs = base / "stubs"
        for folder in ("etc/ssh", "etc/default", "etc/systemd/system", "home/pi", "boot/firmware"):
            (self.root / folder).mkdir(parents=True)
        self.run.mkdir()
        stubs.mkdir()
        (self.root / "etc/hostname").write_text("raspberrypi\n")
        (self.root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")
        (self.root / "etc/ssh/sshd_config").write_text("")
        (self.root / "boot/firmware/cmdline.txt").write_text(IMAGER_CMDLINE)
        (self.root / "boot/firmware/firstrun.sh").write_text("# on the card\n")
        for name, body in STUBS.items():
            status = "exit 1" if name == fail else "exit 0"
            self._stub(stubs / name, f'echo "{name} $*" >>"$CALLS"\n{body}\n{status}\n')
        real_bash = shutil.which("bash", path="/usr/bin:/bin")
        self._stub(
            stubs / "bash",
            f"script=$1\nshift\nsed -E '{REROOT.format(root=self.root)}' \"$script\" "
            f'>"$script.rooted"\nexec {real_bash} "$script.rooted" "$@"\n',
        )
        self.env = {
            "PATH": f"{stubs}:/usr/bin:/bin",
            "CALLS": str(self.calls),
            "NODE_ROOT": str(self.root),
            "PUREBOOT_REPORT_DELAY": "0",
            "PUREBOOT_ENV": str(self.run / "node.env"),
        }

    @staticmethod
    def _stub(path: Path, body: str) -> None:
        path.write_text(f"#!/bin/sh\n{body}")
        path.chmod(0o755)

    def unit(self, cmdline: str) -> None:
        """What the initramfs script leaves for the first boot, from this command line."""
        (self.base / "cmdline").write_text(cmdline + "\n")
        env = {
            "PATH": "/usr/bin:/bin",
            "PUREBOOT_CMDLINE": str(self.base / "cmdline"),
            "PUREBOOT_RUN": str(self.run),
            "PUREBOOT_UNITS": str(self.base / "units"),
        }
        driver = f". {SCRIPT}\npureboot_report_setup\n"
        subprocess.run(["/bin/sh", "-c", driver], env=env, check=True, timeout=30)

    def run_as_node(self, *command: str, **env: str) -> subprocess.CompletedProcess:
        """Run ``command`` (as nobody when this is root) in this root's environment."""
        if os.geteuid() == 0:
            for here, folders, files in os.walk(self.base):
                for name in [here, *(os.path.join(here, n) for n in folders + files)]:
                    os.lchown(name, 65534, 65534)
            command = (
                shutil.which("setpriv"),
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                *command,
            )
        return subprocess.run(
            command, env={**self.env, **env}, capture_output=True, text=True, timeout=120
        )

    def run_unit(self) -> subprocess.CompletedProcess:
        return self.run_as_node("/bin/sh", str(self.run / "report"))

    def recorded(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def node_root() -> Iterator[Path]:
    """A folder ``nobody`` may enter (pytest's own are root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="pureboot-pi-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _cmdline(url: str) -> str:
    return f"root=/dev/nfs boot=pureboot pureboot.url={url} pureboot.node=7 pureboot.token={TOKEN}"


# --- the unit, against a stand-in for the controller ----------------------------------------

FIRSTRUN = """#!/bin/bash
echo "$PUREBOOT_NFSROOT $(umask) $(stat -c %a "${{0%.rooted}}")" >"$CALLS.firstrun"
curl -fsS -o /dev/null -H 'Authorization: Node {token}' --data '{{"status": "installing"}}' \\
    -H 'Content-Type: application/json' {url}/api/v1/report
exit {status}
"""


def _served(url: str, status: int = 0) -> dict[str, tuple[int, bytes]]:
    script = FIRSTRUN.format(token=TOKEN, url=url, status=status)
    return {f"/api/v1/install/{TOKEN}/firstrun.sh": (200, script.encode())}


def test_the_unit_runs_firstrun_on_the_nfs_root_then_reports_installed_and_active(node_root):
    node = NodeRoot(node_root)
    files: dict[str, tuple[int, bytes]] = {}
    with report_controller([], files) as (url, received):
        base = url.removesuffix("/api/v1/report")
        files.update(_served(base))
        node.unit(_cmdline(base))
        run = node.run_unit()
    assert run.returncode == 0, run.stderr
    # firstrun.sh's own progress report comes first: it ran before "installed".
    assert [r["body"]["status"] for r in received] == ["installing", "installed", "active"]
    assert received[1]["body"]["logs"] == [
        "diskless: NFS root and overlay mounted, firstrun.sh done"
    ]
    assert {r["auth"] for r in received} == {f"Node {TOKEN}"}
    # Told it runs on an NFS root; files it writes are world-readable; itself root's only.
    assert Path(f"{node.calls}.firstrun").read_text() == "1 0022 600\n"
    assert sorted(p.name for p in node.run.iterdir()) == ["firstrun.sh.rooted", "report"]


@pytest.mark.parametrize(
    "answer, message",
    [
        (None, "diskless: firstrun.sh failed (exit 3), see journalctl -u pureboot-report"),
        ((409, b"Cannot render this node's installer config: no\n"), "(HTTP 409)"),
        ((503, b"Cannot render this node's installer config: busy\n"), "(HTTP 503)"),
    ],
    ids=["firstrun-fails", "cannot-be-rendered", "busy-after-every-retry"],
)
def test_a_first_boot_whose_firstrun_fails_is_reported_failed(node_root, answer, message):
    node = NodeRoot(node_root)
    files: dict[str, tuple[int, bytes]] = {}
    with report_controller([], files) as (url, received):
        base = url.removesuffix("/api/v1/report")
        files.update(_served(base, status=3))
        if answer:
            files[f"/api/v1/install/{TOKEN}/firstrun.sh"] = answer
        node.unit(_cmdline(base))
        run = node.run_unit()
    assert run.returncode == 1
    statuses = [r["body"]["status"] for r in received]
    assert statuses == (["installing", "failed"] if answer is None else ["failed"])
    assert message in received[-1]["body"]["logs"][0]
    if answer:
        assert "Cannot render this node's installer config" in run.stderr
    assert not (node.run / "node.env").exists() and not (node.run / "firstrun.sh").exists()


@pytest.mark.parametrize("serves", [True, False], ids=["raspberrypi_os", "nfs_root-only"])
def test_with_wget_instead_of_curl_it_fetches_runs_and_reports_the_same(node_root, serves):
    node = NodeRoot(node_root)
    tools = node_root / "tools"  # this machine's commands, but no curl
    tools.mkdir()
    for name in ("sh", "cat", "rm", "sed", "tail", "head", "sleep", "wget", "stat", "mkdir"):
        (tools / name).symlink_to(shutil.which(name, path="/usr/bin:/bin"))
    files: dict[str, tuple[int, bytes]] = {}
    with report_controller([], files) as (url, received):
        base = url.removesuffix("/api/v1/report")
        if serves:
            files.update(_served(base))
        node.unit(_cmdline(base))
        node.env["PATH"] = f"{node_root / 'stubs'}:{tools}"
        run = node.run_unit()
    assert run.returncode == 0, run.stderr
    assert [r["body"]["status"] for r in received] == ["installed", "active"]
    assert Path(f"{node.calls}.firstrun").exists() == serves
    done = "firstrun.sh done" if serves else "system up"
    assert received[0]["body"]["logs"] == [f"diskless: NFS root and overlay mounted, {done}"]


def test_the_unit_it_writes_passes_shellcheck(tmp_path):
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is missing: apt-get install shellcheck")
    node = NodeRoot(tmp_path)
    node.unit(_cmdline("http://10.99.0.1:8000"))
    run = subprocess.run(
        ["shellcheck", "-s", "sh", str(node.run / "report")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout


# --- the shipped example, end to end ------------------------------------------------------


@pytest.fixture
def example_pi(settings, tmp_path, live_server) -> Node:
    """A Pi assigned to the shipped example, its template imported, NFS root on."""
    settings.PUREBOOT_NFSROOT_DIR = tmp_path / "nfsroot"
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    settings.PUREBOOT_NFS_SERVER = "10.99.0.1"
    settings.PUREBOOT_NFS_PORT = 2049
    settings.PUREBOOT_NFS_CLIENTS = []
    settings.PUREBOOT_NFS_GANESHA_CONFIG = ""
    settings.PUREBOOT_NFS_GANESHA_PIDFILE = ""
    settings.PUREBOOT_DHCP_LEASEFILE = ""
    settings.PUREBOOT_PUBLIC_URL = live_server.url
    archive = make_archive(tmp_path / "raspios.tar.zst", system_members(), "tar.zst")
    call_command(
        "import_rootfs",
        "raspios-lite-arm64",
        str(archive),
        "--arch",
        "aarch64",
        stdout=io.StringIO(),
    )
    workflow = make_workflow(content=EXAMPLE.read_text())
    return make_node(
        "pending",
        arch="aarch64",
        firmware="pi",
        serial=SERIAL,
        hostname="pi-kiosk-7",
        workflow=workflow,
        workflow_version=workflow.versions.get(),
    )


def _tftp_cmdline(node: Node, live_server, boot_root: Path) -> str:
    """What the Pi's firmware fetches over TFTP: config.txt (its install starts), cmdline.txt."""
    raspberrypi.BOOTS.clear()
    try:
        for name in ("config.txt", "cmdline.txt"):
            text = raspberrypi.serve(
                raspberrypi.PiPath(SERIAL, name), base_url=live_server.url, boot_root=boot_root
            )
        return text.decode()
    finally:
        raspberrypi.BOOTS.clear()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fail", ["", "chpasswd"], ids=["configured", "a-step-fails"])
def test_the_example_pi_boots_its_nfs_root_configures_itself_and_reports(
    example_pi, live_server, settings, node_root, fail
):
    cmdline = _tftp_cmdline(example_pi, live_server, settings.PUREBOOT_BOOT_ROOT)
    words = cmdline.split()
    for expected in ("root=/dev/nfs", "boot=pureboot", f"pureboot.node={example_pi.pk}"):
        assert expected in words, cmdline
    assert f"pureboot.url={live_server.url}" in words
    token = next(w for w in words if w.startswith("pureboot.token=")).partition("=")[2]
    example_pi.refresh_from_db()
    assert example_pi.state == "installing" and token

    node = NodeRoot(node_root, fail=fail)
    node.unit(cmdline)
    run = node.run_unit()
    example_pi.refresh_from_db()
    logs = list(WorkflowRun.objects.get(node=example_pi).logs.values_list("line", flat=True))
    if fail:
        assert run.returncode == 1
        assert example_pi.state == "failed", logs
        assert "diskless: firstrun.sh failed (exit 1), see journalctl -u pureboot-report" in logs
        assert f"{fail} " in node.calls.read_text()
        return
    assert run.returncode == 0, run.stderr
    assert example_pi.state == "active", logs
    assert logs == [
        "raspberry pi os: first boot",
        "raspberry pi os: network up, finishing",
        "diskless: NFS root and overlay mounted, firstrun.sh done",
        "diskless: first boot",
    ]
    etc = node.root / "etc"
    assert (etc / "hostname").read_text() == "pi-kiosk-7\n"
    assert "127.0.1.1\tpi-kiosk-7" in (etc / "hosts").read_text()
    assert (etc / "timezone").read_text() == "Europe/London\n"
    keys = (node.root / "home/pi/.ssh/authorized_keys").read_text()
    assert keys.startswith(EXAMPLE_KEY)
    calls = node.recorded()
    for call in (
        "hostname pi-kiosk-7",  # taken now: no reboot follows
        "usermod -l pi-admin pi",
        "update-locale LANG=en_GB.UTF-8",
        "systemctl enable ssh",
        "systemctl --no-block reload-or-restart ssh",
    ):
        assert call in calls, calls
    assert not [c for c in calls if c.startswith(("reboot", "raspi-config"))]
    # Nothing of the card's form: the command line, firstrun.sh, the next-boot service.
    assert (node.root / "boot/firmware/cmdline.txt").read_text() == IMAGER_CMDLINE
    assert (node.root / "boot/firmware/firstrun.sh").exists()
    assert not (etc / "systemd/system/pureboot-finish.service").exists()
    assert not (node.root / "usr").exists() and not (node.root / "var").exists()
    assert token not in "".join(p.read_text() for p in node.root.rglob("*") if p.is_file())


@pytest.mark.django_db(transaction=True)
def test_the_example_firstrun_passes_its_checkers_and_still_works_from_a_card(
    example_pi, live_server, settings, node_root
):
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is missing: apt-get install shellcheck")
    cmdline = _tftp_cmdline(example_pi, live_server, settings.PUREBOOT_BOOT_ROOT)
    token = cmdline.split("pureboot.token=")[1].split()[0]
    url = f"{live_server.url}/api/v1/install/{token}/firstrun.sh"
    script = subprocess.run(
        ["curl", "-fsS", url], capture_output=True, text=True, check=True
    ).stdout
    # bash -n, then ShellCheck: both forms are in the one file.
    assert check_installer("raspberrypi_os", {"firstrun.sh": script}) == []
    assert 'if [ -n "$PUREBOOT_NFSROOT" ]; then' in script

    # Run as Raspberry Pi Imager's card runs it (systemd.run, no PUREBOOT_NFSROOT).
    node = NodeRoot(node_root)
    (node.run / "firstrun.sh").write_text(script)
    run = node.run_as_node("bash", str(node.run / "firstrun.sh"))
    assert run.returncode == 0, run.stderr
    cmdline_txt = (node.root / "boot/firmware/cmdline.txt").read_text()
    assert cmdline_txt == "console=serial0,115200 root=PARTUUID=1-02 rootwait quiet\n"
    assert not (node.root / "boot/firmware/firstrun.sh").exists()
    finish = node.root / "etc/systemd/system/pureboot-finish.service"
    # (/usr/local/sbin re-rooted into this folder.)
    assert f"ExecStart={node.root}/usr/local/sbin/pureboot-finish" in finish.read_text()
    assert (node.root / "usr/local/sbin/pureboot-finish").exists()
    calls = node.recorded()
    assert "systemctl enable pureboot-finish.service" in calls
    assert "raspi-config nonint do_change_locale en_GB.UTF-8" in calls
    assert not [c for c in calls if c.startswith(("hostname", "update-locale"))]
    assert not (node.root / "var/lib/pureboot/firstrun-failed").exists()  # every step ran
    logs = list(WorkflowRun.objects.get(node=example_pi).logs.values_list("line", flat=True))
    assert logs == ["raspberry pi os: first boot"]  # the rest reports at the next boot
