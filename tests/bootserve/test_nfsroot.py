"""NFS roots of diskless nodes: the boot they get, their overlays through the lifecycle,
the ganesha config, and the initramfs script that mounts them. The real nfs-ganesha
serving them is in test_nfsroot_ganesha.py."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bootserve import ganesha, nfsroot, raspberrypi
from bootserve.engine import Client, Kind, NodeFacts, Policy, Step, decide
from bootserve.install import node_install_boot
from bootserve.tasks import sync_nfs_root
from nodes import services as node_services
from nodes.models import Node
from tests.factories import make_node, make_workflow
from tests.workflows.installer_helpers import report_controller
from tests.workflows.test_rootfs import make_archive, system_members
from workflows import services as workflow_services
from workflows.models import RootFilesystem

BASE = "http://pureboot.test:8000"
SERIAL = "1234abcd"
SCRIPT = Path(__file__).resolve().parents[2] / "templates" / "nfsroot" / "pureboot-nfsroot.sh"
HOOK = SCRIPT.with_name("pureboot-nfsroot-hook.sh")
WORKFLOW = """\
name: {name}
arch: [aarch64]
firmware: [pi]
tasks:
  - type: nfs_root
    root: rpi-os
"""


@pytest.fixture
def nfs(settings, tmp_path):
    settings.PUREBOOT_NFSROOT_DIR = tmp_path / "nfsroot"
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    settings.PUREBOOT_NFS_SERVER = "10.99.0.1"
    settings.PUREBOOT_NFS_PORT = 2049
    settings.PUREBOOT_NFS_CLIENTS = []
    settings.PUREBOOT_NFS_GANESHA_CONFIG = str(tmp_path / "ganesha.conf")
    settings.PUREBOOT_NFS_GANESHA_PIDFILE = ""
    settings.PUREBOOT_DHCP_LEASEFILE = ""
    return tmp_path


@pytest.fixture
def template(nfs, db):
    archive = make_archive(nfs / "rpi.tar.gz", system_members())
    call_command("import_rootfs", "rpi-os", str(archive), "--arch", "aarch64", stdout=io.StringIO())
    return nfs / "nfsroot" / "templates" / "rpi-os"


def diskless_node(state: str = "pending", **fields) -> Node:
    workflow = make_workflow(content=WORKFLOW.format(name=f"diskless-{Node.objects.count()}"))
    return make_node(
        state,
        arch="aarch64",
        firmware="pi",
        workflow=workflow,
        workflow_version=workflow.versions.get(),
        **fields,
    )


def force_state(node: Node, state: str) -> None:
    Node.objects.filter(pk=node.pk).update(state=state)  # test set-up only


# --- the kernel command line and the boot ------------------------------------------------


def test_kernel_args_are_a_pure_function_of_explicit_addresses_and_paths():
    args = nfsroot.kernel_args(
        server="10.0.0.1",
        template_export="/pureboot/templates/rpi-os",
        node_export="/pureboot/nodes/7",
        overlay_paths=["/etc", "/var"],
        base_url=BASE,
        node_id=7,
        token="tok:en",
    )
    assert args == [
        "root=/dev/nfs",
        "nfsroot=10.0.0.1:/pureboot/templates/rpi-os,vers=4.1,ro",
        "ip=dhcp",
        "boot=pureboot",
        "pureboot.overlay=10.0.0.1:/pureboot/nodes/7",
        "pureboot.overlay_paths=/etc,/var",
        f"pureboot.url={BASE}",
        "pureboot.node=7",
        "pureboot.token=tok:en",
    ]
    bare = nfsroot.kernel_args(
        server="10.0.0.1",
        template_export="/t",
        node_export="/n",
        overlay_paths=["/etc"],
        port=20490,
    )
    assert bare[1] == "nfsroot=10.0.0.1:/t,vers=4.1,ro,port=20490"
    assert not any(a.startswith(("pureboot.url", "pureboot.node", "pureboot.token")) for a in bare)


@pytest.mark.django_db
def test_an_installing_diskless_node_boots_its_template_with_its_token(template, settings):
    node = diskless_node()
    node, _run, token = workflow_services.start_install(node.pk)
    boot = node_install_boot(node, token=token, base_url=BASE)
    assert boot.kernel == f"{BASE}/boot/files/nfsroot/rpi-os/kernel8.img"
    assert boot.initrd == f"{BASE}/boot/files/nfsroot/rpi-os/initramfs8"
    assert (boot.kernel_file, boot.initrd_file) == (
        "nfsroot/rpi-os/kernel8.img",
        "nfsroot/rpi-os/initramfs8",
    )
    assert boot.cmdline == " ".join(
        [
            "root=/dev/nfs nfsroot=10.99.0.1:/pureboot/templates/rpi-os,vers=4.1,ro ip=dhcp",
            f"boot=pureboot pureboot.overlay=10.99.0.1:/pureboot/nodes/{node.pk}",
            f"pureboot.overlay_paths=/etc,/var,/home pureboot.url={BASE}",
            f"pureboot.node={node.pk} pureboot.token={token}",
        ]
    )
    settings.PUREBOOT_NFS_SERVER = ""
    assert node_install_boot(node, token=token, base_url=BASE) is None


@pytest.mark.django_db
def test_a_raspberry_pi_fetches_its_nfs_root_boot_over_tftp(template, nfs):
    node = diskless_node(serial=SERIAL)
    raspberrypi.BOOTS.clear()
    try:
        first = raspberrypi.PiPath(SERIAL, "config.txt")
        config = raspberrypi.serve(first, base_url=BASE, boot_root=nfs / "boot")
        assert b"kernel=kernel8.img" in config
        node.refresh_from_db()
        assert node.state == "installing"  # the boot request started its install
        cmdline = raspberrypi.serve(
            raspberrypi.PiPath(SERIAL, "cmdline.txt"), base_url=BASE, boot_root=nfs / "boot"
        ).decode()
        assert f"pureboot.overlay=10.99.0.1:/pureboot/nodes/{node.pk}" in cmdline
        assert "pureboot.token=" in cmdline and cmdline.startswith("console=serial0")
        kernel = raspberrypi.serve(
            raspberrypi.PiPath(SERIAL, "kernel8.img"), base_url=BASE, boot_root=nfs / "boot"
        )
        assert Path(kernel).read_bytes() == (template / "boot/firmware/kernel8.img").read_bytes()
    finally:
        raspberrypi.BOOTS.clear()


def _facts(state: str, diskless: bool) -> NodeFacts:
    return NodeFacts(
        id=1,
        name="pi",
        state=state,
        arch="aarch64",
        firmware="pi",
        install_attempts=1,
        can_install=True,
        diskless=diskless,
    )


@pytest.mark.parametrize("state", ["installed", "active"])
def test_an_installed_or_active_diskless_node_boots_its_nfs_root_not_a_disk(state):
    client = Client(serial=SERIAL, firmware="pi")
    decision = decide(_facts(state, True), client, Policy())
    assert (decision.kind, decision.step) == (Kind.INSTALL, Step.NFS_ROOT)
    assert decision.reason == f"{state}: diskless, booting its NFS root"
    assert decide(_facts(state, False), client, Policy()).kind == Kind.LOCAL


@pytest.mark.django_db
def test_an_installed_node_boots_with_its_first_boot_token_an_active_one_with_none(template):
    node = diskless_node()
    node, run, token = workflow_services.start_install(node.pk)
    workflow_services.handle_report(run.pk, {"status": "installed"})
    node.refresh_from_db()
    assert nfsroot.first_boot_token(node) == token  # it may still report "active"
    boot = node_install_boot(node, token=nfsroot.first_boot_token(node), base_url=BASE)
    assert f"pureboot.token={token}" in boot.cmdline
    workflow_services.handle_report(run.pk, {"status": "active"})
    node.refresh_from_db()
    assert nfsroot.first_boot_token(node) == ""
    boot = node_install_boot(node, token="", base_url=BASE)
    assert "pureboot.token" not in boot.cmdline and "pureboot.overlay=" in boot.cmdline


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["installed", "active"])
def test_an_installed_diskless_node_boots_its_nfs_root_through_ipxe_and_its_pi_files(
    template, nfs, client, state
):
    """Rule B for a machine with no disk: the boot paths serve its NFS root, never a disk."""
    mac = "dc:a6:32:00:0f:01"
    node = diskless_node(serial=SERIAL, macs=[mac])
    node, run, _token = workflow_services.start_install(node.pk)
    workflow_services.handle_report(run.pk, {"status": "installed"})
    if state == "active":
        workflow_services.handle_report(run.pk, {"status": "active"})
    node.refresh_from_db()
    assert node.state == state
    for _ in range(2):  # Django, then (for an unchanged poll) the fast path: the same answer
        script = client.get("/boot/ipxe", {"mac": mac}).content.decode()
        assert f"pureboot.overlay=10.99.0.1:/pureboot/nodes/{node.pk}" in script
        assert "sanboot" not in script.split(":local")[0]
    raspberrypi.BOOTS.clear()
    try:
        cmdline = raspberrypi.serve(
            raspberrypi.PiPath(SERIAL, "cmdline.txt"), base_url=BASE, boot_root=nfs / "boot"
        )
        assert cmdline is not None and b"root=/dev/nfs" in cmdline
        assert (b"pureboot.token=" in cmdline) == (state == "installed")
    finally:
        raspberrypi.BOOTS.clear()
    node.refresh_from_db()
    assert node.state == state  # booting it changed nothing


# --- overlays through the lifecycle ------------------------------------------------------


def _config(nfs: Path) -> str:
    return (nfs / "ganesha.conf").read_text()


@pytest.mark.django_db
def test_the_overlay_is_made_when_the_install_starts_and_removed_on_retire(
    template, nfs, django_capture_on_commit_callbacks
):
    node = diskless_node()
    with django_capture_on_commit_callbacks() as callbacks:
        workflow_services.start_install(node.pk)
    queued = [c.__self__ for c in callbacks if getattr(c, "__name__", "") == "delay"]
    assert [(s.task, s.args) for s in queued if s.task.endswith("nfs_root")] == [
        ("bootserve.sync_nfs_root", (node.pk,))
    ]

    assert sync_nfs_root(node.pk) == "created"
    overlay = nfs / "nfsroot" / "nodes" / str(node.pk)
    assert (overlay / "etc/hostname").read_text() == "template\n"  # seeded from the template
    assert os.lstat(overlay / "etc/shadow").st_gid == 42
    assert os.readlink(overlay / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert sorted(p.name for p in overlay.iterdir()) == ["etc", "home", "var"]
    (overlay / "etc/hostname").write_text("pi-7\n")  # the node writes its copy...
    assert (template / "etc/hostname").read_text() == "template\n"  # ...never the template
    config = _config(nfs)
    assert f"Export_Id = {10000 + node.pk};" in config
    assert f'Path = "{overlay}";' in config and f'Pseudo = "/pureboot/nodes/{node.pk}";' in config

    assert sync_nfs_root(node.pk) == "unchanged"  # idempotent: the node's copy is kept
    assert (overlay / "etc/hostname").read_text() == "pi-7\n"

    node_services.perform(node.pk, "retire", node_services.SYSTEM, reason="test")
    assert sync_nfs_root(node.pk) == "removed"
    assert not overlay.exists()
    assert f"/pureboot/nodes/{node.pk}" not in _config(nfs)
    assert '"/pureboot/templates/rpi-os"' in _config(nfs)
    assert sorted(p.name for p in overlay.parent.iterdir()) == []


@pytest.mark.django_db
def test_deprovisioning_removes_reprovisioning_renews_and_failure_keeps_the_overlay(template, nfs):
    node = diskless_node()
    workflow_services.start_install(node.pk)
    sync_nfs_root(node.pk)
    overlay = nfs / "nfsroot" / "nodes" / str(node.pk)
    (overlay / "etc/hostname").write_text("changed\n")

    force_state(node, "failed")
    assert sync_nfs_root(node.pk) == "held"
    assert (overlay / "etc/hostname").read_text() == "changed\n"

    force_state(node, "reprovision")
    workflow_services.start_install(node.pk)  # a new run: a fresh copy
    assert sync_nfs_root(node.pk) == "created"
    assert (overlay / "etc/hostname").read_text() == "template\n"

    force_state(node, "deprovisioning")
    assert sync_nfs_root(node.pk) == "removed"
    assert not overlay.exists()


@pytest.mark.django_db
def test_nothing_happens_while_nfs_root_is_off_or_for_other_workflows(template, nfs, settings):
    other = make_node("installing", arch="aarch64")
    assert sync_nfs_root(other.pk) == "unchanged"
    node = diskless_node()
    workflow_services.start_install(node.pk)
    settings.PUREBOOT_NFS_SERVER = ""
    assert sync_nfs_root(node.pk) == "unchanged"
    assert not (nfs / "nfsroot" / "nodes" / str(node.pk)).exists()
    with pytest.raises(CommandError, match="PUREBOOT_NFS_SERVER is not set"):
        call_command("nfs_sync")


@pytest.mark.django_db
def test_nfs_sync_reconciles_every_node(template, nfs):
    wanting = diskless_node()
    workflow_services.start_install(wanting.pk)
    gone = diskless_node()
    workflow_services.start_install(gone.pk)
    sync_nfs_root(gone.pk)
    force_state(gone, "retired")
    stray = nfs / "nfsroot" / "nodes" / ".seed-99-x"
    stray.mkdir()
    out = io.StringIO()
    call_command("nfs_sync", stdout=out)
    assert (
        "overlays: 1 made, 1 removed, 0 held (failed or migrating), 0 unchanged" in out.getvalue()
    )
    nodes = nfs / "nfsroot" / "nodes"
    assert sorted(p.name for p in nodes.iterdir()) == [f".{wanting.pk}.json", str(wanting.pk)]


# --- the ganesha config --------------------------------------------------------------------


def test_the_config_has_one_export_per_template_and_per_node_overlay(tmp_path):
    exports = [
        ganesha.node_export(7, tmp_path / "nodes/7", ["10.0.0.7"]),
        ganesha.template_export(1, "rpi-os", tmp_path / "templates/rpi-os"),
        ganesha.node_export(8, tmp_path / "nodes/8", closed_reason="no lease yet"),
        ganesha.template_export(2, "deb", tmp_path / "templates/deb", ["10.0.0.0/24"]),
    ]
    text = ganesha.render_ganesha_config(exports, port=20490, graceless=True)
    assert "NFS_Port = 20490;" in text and "Protocols = 4;" in text
    assert "Graceless = true;" in text and "RecoveryRoot" not in text
    assert "Squash = No_Root_Squash;" in text and "Transports = TCP;" in text
    blocks = text.split("\nEXPORT {")[1:]
    assert [b.split("Export_Id = ")[1].split(";")[0] for b in blocks] == [
        "1001",
        "1002",
        "10007",
        "10008",
    ]
    rpi, deb, seven, eight = blocks
    assert f'Path = "{tmp_path}/templates/rpi-os";' in rpi
    assert 'Pseudo = "/pureboot/templates/rpi-os";' in rpi and "Access_Type = RO;" in rpi
    assert "CLIENT" not in rpi  # read-only to every client
    assert "Clients = 10.0.0.0/24;" in deb and "Access_Type = RO;" in deb
    assert "Access_Type = None;" in seven and "Clients = 10.0.0.7;" in seven
    assert "Access_Type = RW;" in seven and "Name = VFS;" in seven
    assert "# Exported to no one: no lease yet" in eight and "CLIENT" not in eight
    assert "Access_Type = RW;" not in eight
    assert ganesha.render_ganesha_config(exports, port=20490, graceless=True) == text  # stable


@pytest.mark.parametrize(
    "export, message",
    [
        (ganesha.node_export(60000, "/srv/n"), "outside 1-65535"),
        (ganesha.template_export(1, "x", '/srv/a"b'), "not a plain absolute path"),
        (ganesha.template_export(1, "x", "/srv/../etc"), "not a plain absolute path"),
        (ganesha.node_export(1, "/srv/n", ["10.0.0.1; Access_Type = RW"]), "not an IPv4"),
    ],
)
def test_exports_the_config_cannot_say_safely_are_refused(export, message):
    with pytest.raises(ganesha.GaneshaConfigError, match=message):
        ganesha.render_ganesha_config([export])


@pytest.mark.django_db
def test_overlay_clients_come_from_the_leases_else_the_configured_networks(template, nfs, settings):
    node = diskless_node(macs=["52:54:00:0a:00:07"])
    workflow_services.start_install(node.pk)
    sync_nfs_root(node.pk)
    by_pseudo = {e.pseudo: e for e in nfsroot.exports()}
    mine = by_pseudo[f"/pureboot/nodes/{node.pk}"]
    assert mine.clients == () and "no DHCP lease" in mine.closed_reason
    # Nobody to serve the template to yet: closed too, never open to everyone.
    template_export = by_pseudo["/pureboot/templates/rpi-os"]
    assert template_export.clients == () and "no diskless node" in template_export.closed_reason

    settings.PUREBOOT_NFS_CLIENTS = ["10.99.0.0/24"]
    mine = [e for e in nfsroot.exports() if e.pseudo.endswith(f"/{node.pk}")][0]
    assert mine.clients == ("10.99.0.0/24",) and not mine.closed_reason

    leases = nfs / "leases"
    leases.write_text(
        "0 52:54:00:0a:00:07 10.99.0.57 pi *\n"
        "1 52:54:00:0a:00:07 10.99.0.58 pi *\n"  # expired
        "0 52:54:00:0a:00:99 10.99.0.59 other *\n"
    )
    settings.PUREBOOT_DHCP_LEASEFILE = str(leases)
    by_pseudo = {e.pseudo: e for e in nfsroot.exports()}
    assert by_pseudo[f"/pureboot/nodes/{node.pk}"].clients == ("10.99.0.57",)
    # The template: the diskless nodes' own addresses and the configured networks.
    assert by_pseudo["/pureboot/templates/rpi-os"].clients == ("10.99.0.0/24", "10.99.0.57")
    assert nfsroot.apply_exports() is True  # the address changed: rewritten
    assert "Clients = 10.99.0.57;" in _config(nfs)
    assert nfsroot.apply_exports() is False  # nothing changed: not rewritten

    # A second lease for the node's MAC (another host asking with it): closed.
    leases.write_text(
        "0 52:54:00:0a:00:07 10.99.0.57 pi *\n0 52:54:00:0a:00:07 10.99.0.66 spoof *\n"
    )
    mine = {e.pseudo: e for e in nfsroot.exports()}[f"/pureboot/nodes/{node.pk}"]
    assert mine.clients == () and "more than one DHCP lease" in mine.closed_reason


@pytest.mark.django_db
def test_an_export_id_ganesha_cannot_hold_is_left_out_and_the_rest_still_written(
    template, nfs, settings, caplog
):
    settings.PUREBOOT_NFS_CLIENTS = ["10.99.0.0/24"]
    small, big = diskless_node(), diskless_node(id=70000)
    for node in (small, big):
        workflow_services.start_install(node.pk)
        sync_nfs_root(node.pk)
    with caplog.at_level("ERROR"):
        pseudos = {e.pseudo for e in nfsroot.exports()}
    assert f"/pureboot/nodes/{small.pk}" in pseudos
    assert "/pureboot/templates/rpi-os" in pseudos and "/pureboot/nodes/70000" not in pseudos
    assert "export id 80000 is over 65535" in caplog.text


@pytest.mark.django_db
def test_nfs_config_writes_atomically_and_check_validates(template, nfs, settings):
    node = diskless_node()
    workflow_services.start_install(node.pk)
    sync_nfs_root(node.pk)
    target = nfs / "out" / "ganesha.conf"
    err = io.StringIO()
    call_command("nfs_config", "-o", str(target), stderr=err)
    assert target.read_text() == nfsroot.render_config()
    assert f"wrote {target}" in err.getvalue()
    call_command("nfs_config", "-o", str(target), stderr=err)
    assert f"unchanged: {target}" in err.getvalue()
    assert [p.name for p in target.parent.iterdir()] == ["ganesha.conf"]  # no temporary left

    settings.PUREBOOT_NFS_CLIENTS = ["10.99.0.0/24"]
    with pytest.raises(CommandError, match=f"{target} is not current: run manage.py nfs_sync"):
        call_command("nfs_config", "--check", "-o", str(target))
    call_command("nfs_config", "-o", str(target), stderr=err)
    out = io.StringIO()
    call_command("nfs_config", "--check", "-o", str(target), stdout=out)
    assert "ganesha config OK: 2 exports" in out.getvalue()

    shutil.rmtree(template)
    with pytest.raises(CommandError, match="root file system rpi-os: .* is missing"):
        call_command("nfs_config", "--check", "-o", str(target))
    settings.PUREBOOT_NFS_GANESHA_CONFIG = ""
    out = io.StringIO()
    call_command("nfs_config", stdout=out)
    assert out.getvalue().startswith("# nfs-ganesha configuration written by PureBoot")


def test_reload_signals_only_a_running_ganesha(tmp_path):
    pidfile = tmp_path / "ganesha.pid"
    with pytest.raises(ganesha.GaneshaReloadError, match="cannot read ganesha's pid"):
        ganesha.reload(pidfile)
    pidfile.write_text(f"{os.getpid()}\n")  # a reused pid: another program
    with pytest.raises(ganesha.GaneshaReloadError, match="not ganesha.nfsd"):
        ganesha.reload(pidfile)
    pidfile.write_text("4194304\n")
    with pytest.raises(ganesha.GaneshaReloadError, match="is not running"):
        ganesha.reload(pidfile)


# --- the initramfs script -------------------------------------------------------------


def test_the_initramfs_script_and_hook_pass_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is missing: apt-get install shellcheck")
    for path in (SCRIPT, HOOK):
        run = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout


STUB = '#!/bin/sh\necho "$(basename "$0") $*" >>"$CALLS"\n{extra}exit 0\n'
DRIVER = """
configure_networking() {{ echo "configure_networking" >>"$CALLS"; }}
log_warning_msg() {{ echo "warning $*" >>"$CALLS"; }}
panic() {{ echo "panic $*" >>"$CALLS"; exit 1; }}
rootmnt={root}
. {script}
mountroot
"""


def _boot(tmp_path: Path, args: list[str], *, mount_nfs: bool = True) -> list[str]:
    """Run the script's mountroot with stub mount commands; the commands it ran."""
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    # The first NFS mount fails once: the script retries it.
    flaky = '[ -e "$CALLS.once" ] || { touch "$CALLS.once"; exit 32; }\n'
    names = {"mount": "", "modprobe": "", **({"mount.nfs": flaky} if mount_nfs else {})}
    for name, extra in names.items():
        (stubs / name).write_text(STUB.format(extra=extra))
        (stubs / name).chmod(0o755)
    root = tmp_path / "root"
    for folder in ("etc", "var", "home"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "cmdline").write_text(" ".join(["console=ttyAMA0", *args]) + "\n")
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "CALLS": str(tmp_path / "calls"),
        "PUREBOOT_CMDLINE": str(tmp_path / "cmdline"),
        "PUREBOOT_RUN": str(tmp_path / "run"),
        "PUREBOOT_UNITS": str(tmp_path / "units"),
        "PUREBOOT_DELAY": "0",
    }
    driver = DRIVER.format(root=root, script=SCRIPT)
    run = subprocess.run(["/bin/sh", "-c", driver], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return (tmp_path / "calls").read_text().splitlines()


ARGS = nfsroot.kernel_args(
    server="10.99.0.1",
    template_export="/pureboot/templates/rpi-os",
    node_export="/pureboot/nodes/7",
    overlay_paths=["/etc", "/var", "/home", "/srv"],
    base_url="http://10.99.0.1:8000",
    node_id=7,
    token="TOKEN:abc",
)


def test_the_initramfs_script_mounts_the_root_the_overlay_and_binds_its_folders(tmp_path):
    calls = _boot(tmp_path, ARGS)
    root, ov = tmp_path / "root", tmp_path / "run" / "overlay"
    assert calls == [
        "configure_networking",
        "modprobe -q nfsv4",
        f"mount.nfs 10.99.0.1:/pureboot/templates/rpi-os {root} -o vers=4.1,ro",
        "warning PureBoot: mounting the NFS root 10.99.0.1:/pureboot/templates/rpi-os failed "
        "(attempt 1 of 60)",
        f"mount.nfs 10.99.0.1:/pureboot/templates/rpi-os {root} -o vers=4.1,ro",
        f"mount.nfs 10.99.0.1:/pureboot/nodes/7 {ov} -o vers=4.1,rw",
        f"mount -o bind {ov}/etc {root}/etc",
        f"mount -o bind {ov}/var {root}/var",
        f"mount -o bind {ov}/home {root}/home",
        "warning PureBoot: /srv is no folder in the root; not bound",
    ]
    env = tmp_path / "run" / "node.env"
    assert env.read_text() == (
        "PUREBOOT_URL=http://10.99.0.1:8000\nPUREBOOT_NODE=7\nPUREBOOT_TOKEN=TOKEN:abc\n"
    )
    assert oct(env.stat().st_mode & 0o777) == "0o600"  # the token: root only, in memory
    unit = (tmp_path / "units" / "pureboot-report.service").read_text()
    assert f"ExecStart=/bin/sh {tmp_path}/run/report" in unit
    assert "After=network-online.target" in unit
    wants = tmp_path / "units" / "multi-user.target.wants" / "pureboot-report.service"
    assert os.readlink(wants) == "../pureboot-report.service"


def test_without_mount_nfs_it_uses_mount_with_the_servers_address_and_no_token_no_report(
    tmp_path,
):
    args = [a for a in ARGS if not a.startswith("pureboot.token")]
    args = [a.replace("vers=4.1,ro", "vers=4.1,ro,port=20490") for a in args]
    calls = _boot(tmp_path, args, mount_nfs=False)
    root = tmp_path / "root"
    assert calls[2] == (
        f"mount -t nfs4 -o vers=4.1,ro,port=20490,addr=10.99.0.1 "
        f"10.99.0.1:/pureboot/templates/rpi-os {root}"
    )
    assert calls[3].startswith("mount -t nfs4 -o vers=4.1,rw,port=20490,addr=10.99.0.1 ")
    assert not (tmp_path / "run" / "node.env").exists()
    assert not (tmp_path / "units").exists()


def test_the_first_boot_report_says_installed_then_active(tmp_path):
    _boot(tmp_path, ARGS)
    env = tmp_path / "run" / "node.env"
    with report_controller([401]) as (url, received):
        base = url.removesuffix("/api/v1/report")
        env.write_text(env.read_text().replace("http://10.99.0.1:8000", base))
        run = subprocess.run(
            ["/bin/sh", str(tmp_path / "run" / "report")],
            env={"PATH": "/usr/bin:/bin", "PUREBOOT_ENV": str(env), "PUREBOOT_REPORT_DELAY": "0"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 0, run.stderr
    # The controller refused "installed" (already reported): no retry, on to "active".
    assert [r["body"]["status"] for r in received] == ["installed", "active"]
    assert {r["auth"] for r in received} == {"Node TOKEN:abc"}
    assert received[1]["body"]["node_id"] == "7" and received[1]["path"] == "/api/v1/report"
    assert not env.exists()  # the token is gone once reported


@pytest.mark.django_db
@pytest.mark.parametrize("why", ["template gone", "nfs root off"])
def test_a_pending_diskless_node_waits_while_its_root_cannot_be_served(
    template, nfs, settings, client, why
):
    """No install starts that could not boot: it would sit in installing with nothing served."""
    mac = "52:54:00:0f:00:09"
    node = diskless_node(macs=[mac])
    if why == "template gone":
        RootFilesystem.objects.filter(name="rpi-os").delete()
    else:
        settings.PUREBOOT_NFS_SERVER = ""
    script = client.get("/boot/ipxe", {"mac": mac}).content.decode()
    assert "waiting for an assignment" in script
    assert "boot image 'nfs root rpi-os' is not imported" in script
    assert "manage.py import_rootfs, with PUREBOOT_NFS_SERVER set" in script
    node.refresh_from_db()
    assert node.state == "pending"
