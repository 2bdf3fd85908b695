"""The Samba share Windows Setup reads install.wim from, served by a real smbd.

``manage.py smb_config`` prints the share; a private smbd (its own
smb.conf and state folders under tmp, a high port, bound to 127.0.0.1)
includes it, and smbclient reads a
boot image's install.wim as a guest, cannot write, and sees no staging
folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.signin.slapd import free_port


def require(tool: str, package: str) -> str:
    path = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if path is None:
        pytest.fail(f"{tool} not found (Debian package: {package})")
    return path


def config(tmp: Path, port: int, share: str) -> Path:
    dirs = {k: tmp / k for k in ("lock", "state", "cache", "pid", "private", "ncalrpc")}
    for d in dirs.values():
        d.mkdir()
    conf = tmp / "smb.conf"
    conf.write_text(
        "[global]\n"
        "   server role = standalone server\n"
        "   map to guest = Bad User\n"
        f"   smb ports = {port}\n"
        "   interfaces = 127.0.0.1\n"
        "   bind interfaces only = yes\n"
        f"   lock directory = {dirs['lock']}\n"
        f"   state directory = {dirs['state']}\n"
        f"   cache directory = {dirs['cache']}\n"
        f"   pid directory = {dirs['pid']}\n"
        f"   private dir = {dirs['private']}\n"
        f"   ncalrpc dir = {dirs['ncalrpc']}\n"
        f"   log file = {tmp}/log.%m\n"
        "   load printers = no\n"
        "   disable spoolss = yes\n" + share
    )
    return conf


@pytest.fixture
def smbd(settings, tmp_path):
    """A private smbd serving PureBoot's share of a boot root with one imported image."""
    binary = require("smbd", "samba")
    require("smbclient", "smbclient")
    boot = tmp_path / "boot"
    (boot / "windows-22621-x86_64").mkdir(parents=True)
    (boot / "windows-22621-x86_64" / "install.wim").write_bytes(b"WIM" * 1000)
    # A link out of the boot root (an operator's mistake, or a hostile import) is not followed.
    (boot / "windows-22621-x86_64" / "passwd").symlink_to("/etc/passwd")
    (boot / "windows-22621-x86_64" / "alias.wim").symlink_to("install.wim")  # even inside
    (boot / ".import-abc").mkdir()
    (boot / ".import-abc" / "half.wim").write_bytes(b"half")
    settings.PUREBOOT_BOOT_ROOT = boot
    settings.PUREBOOT_WINDOWS_SHARE = "\\\\127.0.0.1\\pb-boot"
    out = StringIO()
    call_command("smb_config", stdout=out)
    port = free_port()
    (tmp_path / "samba").mkdir()
    conf = config(tmp_path / "samba", port, out.getvalue())
    proc = subprocess.Popen(
        [binary, "--foreground", "--no-process-group", "--debug-stdout", "-s", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own process group: smbd signals its whole group when it stops.
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("smbd did not start listening")
    yield conf, port, tmp_path
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


def smbclient(conf: Path, port: int, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["smbclient", "//127.0.0.1/pb-boot", "-p", str(port), "-N", "-s", str(conf), "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_windows_setup_reads_install_wim_as_a_guest_and_cannot_write(smbd):
    conf, port, tmp = smbd
    got = tmp / "got.wim"
    done = smbclient(conf, port, f"get windows-22621-x86_64\\install.wim {got}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert got.read_bytes() == b"WIM" * 1000
    put = smbclient(conf, port, f"put {got} windows-22621-x86_64\\evil.wim")
    assert "NT_STATUS_ACCESS_DENIED" in put.stdout + put.stderr
    listing = smbclient(conf, port, "ls")
    assert "windows-22621-x86_64" in listing.stdout
    assert ".import-abc" not in listing.stdout  # an import in progress is not offered
    half = smbclient(conf, port, f"get .import-abc\\half.wim {tmp / 'half'}")
    assert half.returncode != 0 and not (tmp / "half").exists()
    link = smbclient(conf, port, f"get windows-22621-x86_64\\passwd {tmp / 'passwd'}")
    assert link.returncode != 0 and not (tmp / "passwd").exists()
    alias = smbclient(conf, port, f"get windows-22621-x86_64\\alias.wim {tmp / 'alias'}")
    assert alias.returncode != 0 and not (tmp / "alias").exists()
    mkdir = smbclient(conf, port, "mkdir evil")
    assert "NT_STATUS_ACCESS_DENIED" in mkdir.stdout + mkdir.stderr
    assert not (tmp / "boot" / "evil").exists()


def test_the_share_name_is_checked_and_the_output_written_atomically(settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    with pytest.raises(CommandError, match="does not exist: import a boot image first"):
        call_command("smb_config", stdout=StringIO())
    (tmp_path / "boot").mkdir()
    with pytest.raises(CommandError, match="share name"):
        call_command("smb_config", "--share", "bad]name", stdout=StringIO())
    target = tmp_path / "etc" / "pureboot-share.conf"
    call_command("smb_config", "--output", str(target), stdout=StringIO(), stderr=StringIO())
    text = target.read_text()
    assert "[pureboot-boot]" in text and "read only = yes" in text
    assert f"path = {(tmp_path / 'boot').resolve()}" in text
    assert "force user = root" in text  # the boot root's owner reads; guests only through it
    for line in ("guest ok = yes", "browseable = no", "follow symlinks = no", "wide links = no"):
        assert f"   {line}\n" in text
    testparm = shutil.which("testparm") or "/usr/bin/testparm"
    if not Path(testparm).exists():
        pytest.fail("testparm not found (Debian package: samba-common-bin)")
    conf = tmp_path / "smb.conf"
    conf.write_text("[global]\n   server role = standalone server\n" + text)
    checked = subprocess.run([testparm, "-s", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "Unknown parameter" not in checked.stderr
    assert "[pureboot-boot]" in checked.stdout
