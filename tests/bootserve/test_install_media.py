"""Each shipped example's install boot reaches its media, over this controller's HTTP.

For every example workflow in docs/examples/workflows with a network install
boot: a small ISO of its family is built with pycdlib
(tests/workflows/isofactory.py), or for Debian a netboot.tar.gz with the real
member layout (tests/workflows/netbootfactory.py: a netinst ISO holds the CD
installer, refused for a network install), and imported with ``manage.py
import_iso`` into a temporary boot root; the example is imported and assigned to a node,
and the node fetches its iPXE script from /boot/ipxe as the machine would.
Every http URL of its kernel line, initrd line and kernel command line is
then fetched as the installer would fetch it (a folder URL is followed to the
files archiso or Anaconda's dracut read below it): boot files with HEAD, GET
and a Range GET, checked against the size and SHA-256 import_iso recorded;
the per-node config files with GET and HEAD.
"""

from __future__ import annotations

import configparser
import hashlib
import re
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from bootserve.install import node_install_boot
from credentials import services as credentials
from hypervisors.models import Hypervisor, VirtualMachine
from nodes import services as node_services
from nodes.models import Node
from tests.factories import make_node, sealed
from tests.workflows import isofactory, netbootfactory
from workflows.domainjoin_models import OfflineJoin
from workflows.models import BootImage, Workflow

pytestmark = pytest.mark.django_db

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "workflows"
NETWORK_EXAMPLES = sorted(
    p
    for p in EXAMPLES.glob("*.yaml")
    if "type: pxe_boot" in p.read_text() and "type: windows_install" not in p.read_text()
)
# Windows examples boot wimboot, not a kernel: test_every_url_of_the_windows_example_answers.
WINDOWS_EXAMPLES = sorted(
    p for p in EXAMPLES.glob("*.yaml") if "type: windows_install" in p.read_text()
)
MAC = "52:54:00:6d:ed:1a"
BASE = "http://testserver"
OCTETS = "application/octet-stream"
TEXT = "text/plain; charset=utf-8"

# An ISO of the release each example names, by the first word of its boot image
# (Debian: its netboot.tar.gz, the installer flavour that installs over the network).
BUILDERS: dict[str, Callable[[Path], isofactory.BuiltIso]] = {
    "ubuntu": lambda dest: isofactory.ubuntu_live_server(dest, version="24.04.2"),
    "debian": lambda dest: netbootfactory.debian_netboot(
        dest.with_name("netboot.tar.gz"), version="12", codename="bookworm"
    ),
    "rocky": lambda dest: isofactory.treeinfo_tree(
        dest, family="Rocky Linux", short="Rocky", version="9.4"
    ),
    "archlinux": lambda dest: isofactory.archlinux(dest, version="2024.11.01"),
}

# The command line each family's node gets: {files} is the image's folder URL,
# {config} the node's config URL.
CMDLINES = {
    "ubuntu": "ip=dhcp cloud-config-url=/dev/null url={files}install.iso"
    " autoinstall ds=nocloud-net;s={config}",
    "arch": "ip=dhcp archiso_http_srv={files} archisobasedir=arch checksum=y"
    " script={config}bootstrap.sh",
    "rocky": "ip=dhcp inst.stage2={files} inst.ks={config}ks.cfg inst.repo={repo}",
    "debian": "auto=true priority=critical url={config}preseed.cfg hostname=web01"
    " domain=lab.example.com interface=auto",
}


@pytest.fixture
def boot_root(settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    settings.PUREBOOT_ACCEL_REDIRECT = ""  # Django sends the bytes (nginx does in production)
    settings.PUREBOOT_PUBLIC_URL = ""  # the URLs name the host the node asked
    return settings.PUREBOOT_BOOT_ROOT


def _import_example(example: Path, tmp_path: Path) -> BootImage:
    wanted = re.search(r"boot_image: (\S+)", example.read_text())[1]
    built = BUILDERS[wanted.split("-")[0]](tmp_path / "media.iso")
    call_command("import_iso", str(built.path), stdout=StringIO())
    image = BootImage.objects.get()
    assert image.name == wanted  # the example names the image as import_iso names it
    call_command("import_workflows", str(example), stdout=StringIO(), stderr=StringIO())
    return image


def _boot(client) -> tuple[str, str, str, str]:
    """The node's iPXE script, as it asks: its kernel URL, initrd URL, command line, token."""
    script = client.get("/boot/ipxe", {"mac": MAC, "platform": "efi", "arch": "x86_64"})
    assert script.status_code == 200, script.content
    text = script.content.decode()
    kernel = re.search(r"^kernel (\S+) initrd=initrd (.*) \|\| goto local$", text, re.M)
    initrd = re.search(r"^initrd --name initrd (\S+) \|\| goto local$", text, re.M)
    assert kernel and initrd, text
    token = re.search(r"/api/v1/install/([^/\s]+)/", kernel[2])[1]
    return kernel[1], initrd[1], kernel[2], token


def _path(url: str) -> str:
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("http", "testserver"), url
    return parts.path


def _served(client, url: str, image: BootImage, boot_root: Path) -> bytes:
    """Fetch a boot file as an installer would; check it against import_iso's record."""
    path = _path(url)
    prefix = f"/boot/files/{image.name}/"
    assert path.startswith(prefix), url
    meta = next(m for m in image.files.values() if m["name"] == path[len(prefix) :])
    head = client.head(path)
    assert head.status_code == 200, url
    assert head["Content-Type"] == OCTETS and head["Content-Length"] == str(meta["size"])
    assert head["Accept-Ranges"] == "bytes" and not head.content
    get = client.get(path)
    body = b"".join(get.streaming_content)
    assert get.status_code == 200 and get["Content-Type"] == OCTETS
    assert get["Content-Length"] == str(meta["size"]) == str(len(body))
    assert hashlib.sha256(body).hexdigest() == meta["sha256"]
    part = client.get(path, HTTP_RANGE="bytes=0-99")
    assert part.status_code == 206 and part["Content-Type"] == OCTETS
    assert part["Content-Range"] == f"bytes 0-{min(99, meta['size'] - 1)}/{meta['size']}"
    assert b"".join(part.streaming_content) == body[:100]
    assert part["Content-Length"] == str(min(100, meta["size"]))
    return body


def _config(client, url: str) -> str:
    """A per-node installer file: 200, plain text, HEAD and GET agreeing."""
    path = _path(url)
    get = client.get(path)
    assert get.status_code == 200, (url, get.content)
    assert get["Content-Type"] == TEXT and get["Content-Length"] == str(len(get.content))
    head = client.head(path)
    assert head.status_code == 200 and head["Content-Type"] == TEXT
    assert head["Content-Length"] == get["Content-Length"]
    return get.content.decode()


def _fetch_all(client, urls: list[str], args: dict[str, str], image, boot_root, repo) -> set:
    """Fetch what each URL makes the installer fetch; return the paths fetched."""
    fetched = set()
    for url in urls:
        if url == repo:
            continue  # the workflow's own package mirror (repo_url), not this controller
        path = _path(url)
        if path.startswith("/api/v1/install/"):
            names = ("meta-data", "user-data", "vendor-data") if path.endswith("/") else ("",)
            for name in names:  # NoCloud's s= is a folder: cloud-init reads these below it
                _config(client, url + name)
                fetched.add(path + name)
        elif url == args.get("archiso_http_srv"):
            # archiso: <srv><archisobasedir>/<arch>/airootfs.sfs, and with checksum=y
            # the .sha512, which must check out against the root file system.
            base = f"{url}{args['archisobasedir']}/x86_64/"
            rootfs = _served(client, base + "airootfs.sfs", image, boot_root)
            sums = _served(client, base + "airootfs.sha512", image, boot_root).decode()
            assert sums == f"{hashlib.sha512(rootfs).hexdigest()}  airootfs.sfs\n"
            fetched |= {_path(base + "airootfs.sfs"), _path(base + "airootfs.sha512")}
        elif url == args.get("inst.stage2"):
            # Anaconda's dracut: <url>/.treeinfo, then the [stage2] mainimage it names.
            treeinfo = configparser.ConfigParser()
            treeinfo.read_string(_served(client, url + ".treeinfo", image, boot_root).decode())
            runtime = url + treeinfo.get("stage2", "mainimage")
            _served(client, runtime, image, boot_root)
            fetched |= {_path(url + ".treeinfo"), _path(runtime)}
        else:
            _served(client, url, image, boot_root)
            fetched.add(path)
    return fetched


@pytest.mark.parametrize("example", NETWORK_EXAMPLES, ids=lambda p: p.stem)
def test_every_url_of_an_examples_install_boot_answers(client, boot_root, tmp_path, example):
    image = _import_example(example, tmp_path)
    node = make_node(macs=[MAC], hostname="web01.lab.example.com", arch="x86_64", firmware="uefi")
    workflow = Workflow.objects.get()
    if workflow.latest_version.tasks[0]["type"] == "ovirt_vm_create":
        # As POST /api/v1/hypervisors/{id}/vms leaves it: the node is that VM's.
        ovirt = Hypervisor.objects.create(name="rhv", type="ovirt", endpoint="https://rhv.example")
        VirtualMachine.objects.create(hypervisor=ovirt, node=node, name="web01", managed=True)
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=workflow)
    kernel, initrd, cmdline, token = _boot(client)

    # What the boot path rendered is what node_install_boot gives for this token.
    boot = node_install_boot(Node.objects.get(pk=node.pk), token=token, base_url=BASE)
    assert (boot.kernel, boot.initrd, boot.cmdline) == (kernel, initrd, cmdline)
    files = f"{BASE}/boot/files/{image.name}/"
    assert kernel == files + "vmlinuz" and initrd == files + "initrd"
    installer = next(t for t in workflow.latest_version.tasks if t["type"] != "pxe_boot")
    repo = installer.get("repo_url", "")
    config = f"{BASE}/api/v1/install/{token}/"
    assert cmdline == CMDLINES[image.family].format(files=files, config=config, repo=repo)

    args = dict(a.split("=", 1) for a in cmdline.split() if "=" in a)
    urls = [kernel, initrd] + re.findall(r"https?://[^\s;]+", cmdline)
    fetched = _fetch_all(client, urls, args, image, boot_root, repo)
    # Every file the image holds that its initrd needs was reached through those URLs.
    media = {"ubuntu": {"iso"}, "arch": {"rootfs"}, "rocky": {"stage2", "treeinfo"}}
    for role in {"kernel", "initrd"} | media.get(image.family, set()):
        assert f"/boot/files/{image.name}/{image.files[role]['name']}" in fetched, role
    assert any(p.startswith("/api/v1/install/") for p in fetched)


def test_the_operators_cmdline_wins_over_what_pureboot_would_add(client, boot_root, tmp_path):
    example = EXAMPLES / "ubuntu-autoinstall.yaml"
    image = _import_example(example, tmp_path)
    static = "ip=10.0.0.5::10.0.0.1:255.255.255.0:web01:eth0:none"
    doc = example.read_text().replace(
        f"boot_image: {image.name}\n",
        f"boot_image: {image.name}\n    cmdline: {static} url=http://mirror.example/u.iso\n",
    )
    call_command("import_workflows", str(_write(tmp_path / "u.yaml", doc)), stdout=StringIO())
    node = make_node(macs=[MAC], arch="x86_64", firmware="uefi")
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=Workflow.objects.get())
    _, _, cmdline, _ = _boot(client)
    assert cmdline.startswith(
        f"{static} url=http://mirror.example/u.iso cloud-config-url=/dev/null"
    )
    assert cmdline.count("ip=") == 1 and cmdline.count(" url=") == 1


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def iso_url(client, boot_root, tmp_path) -> tuple[str, int]:
    _import_example(EXAMPLES / "ubuntu-autoinstall.yaml", tmp_path)
    image = BootImage.objects.get()
    return f"/boot/files/{image.name}/install.iso", image.files["iso"]["size"]


def test_a_range_out_of_bounds_is_416(client, iso_url):
    path, size = iso_url
    for header in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}", "bytes=-0"):
        resp = client.get(path, HTTP_RANGE=header)
        assert resp.status_code == 416, header
        assert resp["Content-Range"] == f"bytes */{size}"
    last = client.get(path, HTTP_RANGE=f"bytes={size - 1}-{size + 1000}")
    assert last.status_code == 206 and last["Content-Length"] == "1"
    assert last["Content-Range"] == f"bytes {size - 1}-{size - 1}/{size}"
    head = client.head(path, HTTP_RANGE="bytes=0-99")
    assert head.status_code == 206 and head["Content-Length"] == "100"
    assert not b"".join(head.streaming_content)


@pytest.mark.parametrize(
    "header",
    [
        "bytes=abc",
        "bytes=-",
        "bytes=5-2",
        "bytes=0-1,4-5",
        "items=0-1",
        "bytes=" + "9" * 20 + "-",
        "bytes=0-" + "9" * 40,
        "bytes=\u0661-\u0662",  # Arabic-Indic digits: not ASCII, refused
        "bytes=0-1\x00",
        "bytes= 0-1",
        "bytes=" + "0-" * 2000,
        "",
        "bytes=-99999999999999999",
    ],
)
def test_hostile_range_headers_never_fail_the_server(client, iso_url, header):
    path, size = iso_url
    resp = client.get(path, HTTP_RANGE=header)
    assert resp.status_code in (200, 206, 416), (header, resp.status_code)
    body = b"".join(resp.streaming_content) if resp.streaming else resp.content
    if resp.status_code == 206:
        first, last = map(
            int, re.fullmatch(r"bytes (\d+)-(\d+)/\d+", resp["Content-Range"]).groups()
        )
        assert 0 <= first <= last < size and len(body) == last - first + 1
    elif resp.status_code == 200:
        assert len(body) == size
    else:
        assert resp["Content-Range"] == f"bytes */{size}"


def test_a_stale_if_range_gets_the_whole_file(client, iso_url):
    path, size = iso_url
    resp = client.get(path, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"some-other-version"')
    assert resp.status_code == 200 and resp["Content-Length"] == str(size)


@pytest.mark.parametrize("example", WINDOWS_EXAMPLES, ids=lambda p: p.stem)
def test_every_url_of_the_windows_example_answers(client, boot_root, tmp_path, settings, example):
    """wimboot, the boot files for this firmware and the node's own files, fetched as iPXE
    does; the offline-join blob is stood in for (tests/windows makes real ones)."""
    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    settings.PUREBOOT_WINDOWS_SHARE = "\\\\pureboot.example.com\\pureboot-boot"
    settings.PUREBOOT_SAMBA_COMMAND_PREFIX = ["false"]  # no domain controller here
    built = isofactory.windows(tmp_path / "win.iso", build="22621")
    call_command("import_iso", str(built.path), stdout=StringIO())
    wimboot = tmp_path / "wimboot"
    wimboot.write_bytes(b"MZ" + b"\0" * 0x200 + b"HdrS" + b"\0" * 5000)
    call_command("import_wimboot", str(wimboot), stdout=StringIO())
    for name, kind in (("win-local-admin", "windows_admin"), ("corp-join", "domain_join")):
        credentials.create_credential(
            "user:setup",
            {"name": name, "kind": kind, "username": "Administrator", "scope": "corp.example.com"},
            {"password": "example-password"},
            approval=sealed("credential.create", f"credential:new:{name}", ""),
        )
    call_command("import_workflows", str(example), stdout=StringIO(), stderr=StringIO())
    node = make_node(macs=[MAC], hostname="desk-42.lab.example.com", firmware="uefi")
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=Workflow.objects.get())
    script = client.get("/boot/ipxe", {"mac": MAC, "platform": "efi", "arch": "x86_64"})
    text = script.content.decode()
    assert "wimboot" in text, text
    join = OfflineJoin.objects.get(node=node)  # its worker failed: no DC; stand in for it
    OfflineJoin.objects.filter(pk=join.pk).update(
        status="ready", error="", blob_ciphertext=credentials.encrypt("QUJD" * 100)
    )
    image = BootImage.objects.get(family="windows")
    wimboot_image = BootImage.objects.get(family="wimboot")
    kernel = re.search(r"^kernel (\S+) \|\| goto local$", text, re.M)[1]
    _served(client, kernel, wimboot_image, boot_root)
    fetched = []
    for name, url in re.findall(r"^initrd --name (\S+) (\S+) \S+ \|\| goto", text, re.M):
        if "/api/v1/install/" in url:
            body = _config(client, url)
            assert body.strip(), name
        else:
            _served(client, url, image, boot_root)
        fetched.append(name)
    assert fetched == [
        "bootmgfw.efi",
        "BCD",
        "boot.sdi",
        "boot.wim",
        "winpeshl.ini",
        "pureboot.cmd",
        "autounattend.xml",
    ]
