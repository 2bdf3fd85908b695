"""manage.py import_iso: recognise, extract into the boot root, register a boot image."""

import hashlib

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from workflows.models import BootImage

from . import isofactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def boot_root(settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    return settings.PUREBOOT_BOOT_ROOT


def _run(*args):
    from io import StringIO

    out = StringIO()
    call_command("import_iso", *args, stdout=out)
    return out.getvalue()


def test_import_ubuntu_iso(tmp_path, boot_root):
    built = isofactory.ubuntu_live_server(tmp_path / "ubuntu.iso")
    out = _run(str(built.path), "--name", "ubuntu-24.04")
    assert "imported ubuntu 24.04" in out
    image = BootImage.objects.get(name="ubuntu-24.04")
    assert image.family == "ubuntu" and image.arch == "x86_64"
    # The live-server initrd downloads the ISO itself at boot: it is kept too.
    payloads = {**built.payloads, "iso": built.path.read_bytes()}
    assert set(image.files) == set(payloads)
    for role, meta in image.files.items():
        stored = boot_root / "ubuntu-24.04" / meta["name"]
        assert stored.read_bytes() == payloads[role]
        assert meta["sha256"] == hashlib.sha256(payloads[role]).hexdigest()
        assert meta["size"] == len(payloads[role])
    assert image.files["iso"]["name"] == "install.iso"  # casper's url= wants .iso
    assert AuditEvent.objects.filter(action="bootimage.import").exists()
    assert [p.name for p in boot_root.iterdir()] == ["ubuntu-24.04"]  # no leftovers


def test_an_iso_over_the_size_limit_is_not_kept(tmp_path, boot_root):
    built = isofactory.ubuntu_live_server(tmp_path / "ubuntu.iso")
    with pytest.raises(CommandError, match="over the limit"):
        _run(str(built.path), "--max-bytes", "4096")
    assert not BootImage.objects.exists()
    assert not list(boot_root.iterdir())


def test_import_arch_iso_places_the_root_file_system_where_archiso_fetches_it(tmp_path, boot_root):
    built = isofactory.archlinux(tmp_path / "arch.iso")
    _run(str(built.path))
    image = BootImage.objects.get(name="archlinux-2024.11.01-x86_64")
    folder = boot_root / image.name
    # archiso_http_srv=<folder>/ archisobasedir=arch: <folder>/arch/x86_64/airootfs.sfs
    for role, path in (
        ("rootfs", "arch/x86_64/airootfs.sfs"),
        ("rootfs_sha512", "arch/x86_64/airootfs.sha512"),
        ("rootfs_cms_sig", "arch/x86_64/airootfs.sfs.cms.sig"),
    ):
        assert image.files[role]["name"] == path
        assert (folder / path).read_bytes() == built.payloads[role]
        assert image.files[role]["sha256"] == built.sha256(role)
        assert image.files[role]["size"] == len(built.payloads[role])
    assert "iso" not in image.files


def test_import_anaconda_tree_serves_its_runtime_beside_its_kernel(tmp_path, boot_root):
    built = isofactory.treeinfo_tree(
        tmp_path / "rocky.iso", family="Rocky Linux", short="Rocky", version="9.4"
    )
    _run(str(built.path))
    image = BootImage.objects.get(name="rocky-9.4-x86_64-baseos")
    folder = boot_root / image.name
    assert (folder / "images/install.img").read_bytes() == built.payloads["stage2"]
    treeinfo = (folder / ".treeinfo").read_text()
    assert "mainimage = images/install.img" in treeinfo
    assert image.files["treeinfo"] == {
        "name": ".treeinfo",
        "sha256": hashlib.sha256(treeinfo.encode()).hexdigest(),
        "size": len(treeinfo.encode()),
    }


def test_import_windows_iso(tmp_path):
    built = isofactory.windows(tmp_path / "win.iso")
    _run(str(built.path), "--name", "winpe")
    assert {"boot_wim", "bcd", "boot_sdi"} <= set(BootImage.objects.get(name="winpe").files)


def test_existing_name_needs_replace(tmp_path, boot_root):
    first = isofactory.debian_netinst(tmp_path / "a.iso")
    _run(str(first.path), "--name", "debian")
    with pytest.raises(CommandError, match="--replace"):
        _run(str(first.path), "--name", "debian")
    second = isofactory.debian_netinst(tmp_path / "b.iso", version="12.6.0")
    _run(str(second.path), "--name", "debian", "--replace")
    assert BootImage.objects.get(name="debian").version.startswith("12.6")
    assert sorted(p.name for p in boot_root.iterdir()) == ["debian"]


@pytest.mark.parametrize("content", [b"", b"hello world\n" * 100])
def test_not_an_iso_is_a_clear_error(tmp_path, boot_root, content):
    path = tmp_path / "junk.iso"
    path.write_bytes(content)
    with pytest.raises(CommandError) as exc:
        _run(str(path))
    assert "junk.iso" in str(exc.value)
    assert not BootImage.objects.exists()
    assert not [p for p in boot_root.iterdir()]


def test_unrecognised_iso(tmp_path):
    built = isofactory.unrecognised(tmp_path / "other.iso")
    with pytest.raises(CommandError, match="looked for|[Uu]nrecognis"):
        _run(str(built.path))


def test_url_needs_checksum_and_missing_file(tmp_path):
    with pytest.raises(CommandError, match="--sha256"):
        _run("http://127.0.0.1:9/x.iso")
    with pytest.raises(CommandError, match="no such file"):
        _run(str(tmp_path / "absent.iso"))


@pytest.mark.parametrize("taken", ["grub-arm64", "nfsroot", "rpi", "undionly.kpxe"])
def test_a_name_the_boot_root_uses_for_something_else_is_refused(tmp_path, boot_root, taken):
    """Bootloaders, NFS root kernels and operators' files beside the images are never replaced."""
    place = boot_root / taken
    if "." in taken:
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_bytes(b"a bootloader")
    else:
        place.mkdir(parents=True)
        (place / "keep.me").write_bytes(b"kept")
    built = isofactory.ubuntu_live_server(tmp_path / "ubuntu.iso")
    for extra in ([], ["--replace"]):
        with pytest.raises(CommandError, match="is not a boot image"):
            _run(str(built.path), "--name", taken, *extra)
    assert not BootImage.objects.exists()
    kept = place if place.is_file() else place / "keep.me"
    assert kept.read_bytes() in (b"a bootloader", b"kept")
    assert sorted(p.name for p in boot_root.iterdir()) == [taken]  # no leftovers
