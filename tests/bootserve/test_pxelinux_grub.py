"""PXELINUX and GRUB configs for each decision, and the config names they ask for.

Every GRUB config is checked by GRUB's own parser (``grub-script-check`` from
Debian ``grub-common``). PXELINUX has no checker, so its configs are checked
for structure: known keywords only, labels that exist, one boot per label.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from bootserve import grub, pxelinux
from bootserve.engine import Decision, Kind, Step
from bootserve.install import InstallBoot

MAC = "52:54:00:AB:cd:01"
UUID = "4C4C4544-0042-3510-8052-B7C04F4E3732"
INSTALL = InstallBoot(
    kernel="http://10.99.0.1:8000/boot/files/debian-12/vmlinuz",
    initrd="http://10.99.0.1:8000/boot/files/debian-12/initrd.gz",
    cmdline=(
        "console=ttyS0 autoinstall ds=nocloud-net;s=http://10.99.0.1:8000/api/v1/install/t0k/"
    ),
)
LINUX_CMD = re.compile(r"^\s*linux\s", re.M)  # GRUB's command, not /EFI/almalinux/
NAMES = ["web-01.example.com", 'it\'s "quoted" {x}; $y | z', "line\nbreak"]


def decision(kind: Kind, firmware: str = "bios") -> Decision:
    return Decision(kind, Step.NONE, "test", firmware)


# --- PXELINUX names ----------------------------------------------------------


def test_pxelinux_names_in_pxelinux_order():
    assert pxelinux.config_names(MAC, UUID) == [
        "pxelinux.cfg/4c4c4544-0042-3510-8052-b7c04f4e3732",
        "pxelinux.cfg/01-52-54-00-ab-cd-01",
        "pxelinux.cfg/default",
    ]
    assert pxelinux.config_names(MAC) == [
        "pxelinux.cfg/01-52-54-00-ab-cd-01",
        "pxelinux.cfg/default",
    ]


@pytest.mark.parametrize(
    "path,expected",
    [
        ("pxelinux.cfg/01-52-54-00-ab-cd-01", ("mac", "52:54:00:ab:cd:01")),
        ("/pxelinux.cfg/01-52-54-00-AB-CD-01", ("mac", "52:54:00:ab:cd:01")),
        ("pxelinux.cfg/4c4c4544-0042-3510-8052-b7c04f4e3732", ("uuid", UUID.lower())),
        ("pxelinux.cfg/default", ("default", None)),
    ],
)
def test_pxelinux_names_map_back(path, expected):
    assert pxelinux.parse_config_name(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "pxelinux.cfg/C0A86305",  # an IPv4 hex name: never answered
        "pxelinux.cfg/C",
        "pxelinux.cfg/06-52-54-00-ab-cd-01",  # hardware type other than Ethernet
        "pxelinux.cfg/01-52-54-00-ab-cd",  # too short
        "pxelinux.cfg/01-52-54-00-ab-cd-01-02",
        "pxelinux.cfg/01-52:54:00:ab:cd:01",
        "pxelinux.cfg/01-01-00-5e-00-00-01",  # multicast
        "pxelinux.cfg/01-00-00-00-00-00-00",
        "pxelinux.cfg/00000000-0000-0000-0000-000000000000",  # placeholder UUID
        "pxelinux.cfg/4c4c4544004235108052b7c04f4e3732",  # PXELINUX always sends dashes
        "pxelinux.cfg/default/x",
        "pxelinux.cfg/../pxelinux.cfg/default",
        "pxelinux.cfg/",
        "pxelinux.cfg",
        "//pxelinux.cfg/default",
        "grub/grub.cfg",
        "PXELINUX.CFG/default",
        "pxelinux.cfg/01-52-54-00-ab-cd-01\x00",
        "pxelinux.cfg/01-52-54-00-ab-cd-01\n",
        "",
    ],
)
def test_pxelinux_refuses_other_names(path):
    assert pxelinux.parse_config_name(path) is None


def test_pxelinux_names_round_trip():
    uuid_name, mac_name, default = pxelinux.config_names(MAC, UUID)
    assert pxelinux.parse_config_name(uuid_name) == ("uuid", UUID.lower())
    assert pxelinux.parse_config_name(mac_name) == ("mac", "52:54:00:ab:cd:01")
    assert pxelinux.parse_config_name(default) == ("default", None)


# --- PXELINUX configs --------------------------------------------------------

GLOBAL = {"DEFAULT", "PROMPT", "TIMEOUT", "ONERROR", "SAY", "MENU", "LABEL"}
IN_LABEL = {"MENU", "KERNEL", "INITRD", "APPEND", "IPAPPEND", "LOCALBOOT"}


def parse_pxelinux(text: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Check the structure of a PXELINUX config; return its globals and labels."""
    assert text.endswith("\n")
    globals_: dict[str, str] = {}
    labels: dict[str, dict[str, str]] = {}
    label = None
    for line in text.splitlines():
        assert not re.search(r"[\x00-\x1f\x7f]", line), line
        indented = line.startswith("  ")
        keyword, _, value = line.strip().partition(" ")
        if indented:
            assert label is not None and keyword in IN_LABEL, line
            assert keyword not in labels[label] or keyword == "MENU", line
            labels[label][keyword] = value
        else:
            assert keyword in GLOBAL, line
            if keyword == "LABEL":
                assert value not in labels, f"label {value} twice"
                label = value
                labels[label] = {}
            else:
                label = None
                assert keyword not in globals_ or keyword in ("SAY", "MENU"), line
                globals_[keyword] = value
    for target in (globals_.get("DEFAULT"), globals_.get("ONERROR")):
        if target is not None:
            assert target in labels, f"{target} names no label"
    for name, body in labels.items():
        assert ("KERNEL" in body) != ("LOCALBOOT" in body), f"label {name} boots twice or never"
    return globals_, labels


@pytest.mark.parametrize("node_name", NAMES)
@pytest.mark.parametrize("kind", list(Kind))
def test_every_pxelinux_config_is_well_formed(kind, node_name):
    text = pxelinux.render(decision(kind), node_name=node_name, state="pending", install=INSTALL)
    if kind == Kind.IGNORE:
        assert text is None
        return
    globals_, labels = parse_pxelinux(text)
    assert labels["local"] == {"MENU": "LABEL Boot the local disk", "LOCALBOOT": "0"}
    assert globals_["PROMPT"] == "0"


def test_pxelinux_wait_is_a_short_menu_that_boots_the_disk():
    text = pxelinux.render(
        decision(Kind.WAIT), node_name="web-01", state="discovered", install=None
    )
    globals_, labels = parse_pxelinux(text)
    assert globals_["DEFAULT"] == "local"
    assert 0 < int(globals_["TIMEOUT"]) <= 100  # tenths of a second
    assert "web-01 is discovered" in globals_["SAY"]
    assert list(labels) == ["local"]


def test_pxelinux_install_boots_the_kernel_and_falls_back_to_the_disk():
    text = pxelinux.render(
        decision(Kind.INSTALL), node_name="web-01", state="pending", install=INSTALL
    )
    globals_, labels = parse_pxelinux(text)
    assert globals_["DEFAULT"] == "install"
    assert globals_["ONERROR"] == "local"  # a kernel that cannot be fetched: the disk
    assert labels["install"]["KERNEL"] == INSTALL.kernel
    assert labels["install"]["INITRD"] == INSTALL.initrd
    assert labels["install"]["APPEND"] == INSTALL.cmdline  # verbatim, semicolon and all
    assert labels["install"]["IPAPPEND"] == "2"
    assert labels["local"]["LOCALBOOT"] == "0"


def test_pxelinux_install_without_a_boot_waits():
    text = pxelinux.render(decision(Kind.INSTALL), node_name="n", state="pending", install=None)
    assert parse_pxelinux(text)[0]["DEFAULT"] == "local"


def test_pxelinux_agent_boots_the_agent_with_its_command_line():
    text = pxelinux.render(
        decision(Kind.AGENT), node_name="web-01", state="deprovisioning", install=INSTALL
    )
    globals_, labels = parse_pxelinux(text)
    assert globals_["DEFAULT"] == "install" and "PureBoot agent on web-01" in text
    assert INSTALL.cmdline in text and "local" in labels


@pytest.mark.parametrize("kind", [Kind.LOCAL, Kind.AGENT])
def test_pxelinux_local_and_agent_boot_the_disk(kind):
    install = INSTALL if kind == Kind.LOCAL else None  # an agent boot without its image
    text = pxelinux.render(decision(kind), node_name="web-01", state="active", install=install)
    globals_, labels = parse_pxelinux(text)
    assert globals_["DEFAULT"] == "local"
    assert list(labels) == ["local"]
    assert "web-01 is active" in globals_["SAY"]


def test_pxelinux_default_boots_the_disk():
    globals_, labels = parse_pxelinux(pxelinux.render_default())
    assert globals_["DEFAULT"] == "local" and list(labels) == ["local"]


def test_pxelinux_text_cannot_add_lines():
    evil = InstallBoot("http://h/k\nLOCALBOOT 0", "http://h/i", "a\nLABEL x\n  KERNEL y")
    text = pxelinux.render(decision(Kind.INSTALL), node_name="n\nLABEL z", state="s", install=evil)
    _, labels = parse_pxelinux(text)
    assert set(labels) == {"install", "local"}


# --- GRUB names --------------------------------------------------------------


def test_grub_names_in_grub_order():
    assert grub.config_names(MAC) == [
        "grub/grub.cfg-01-52-54-00-ab-cd-01",
        "grub/grub.cfg",
        "grub/grub.cfg-52:54:00:ab:cd:01",
    ]


@pytest.mark.parametrize(
    "path,expected",
    [
        ("grub/grub.cfg-01-52-54-00-ab-cd-01", ("mac", "52:54:00:ab:cd:01")),
        ("/grub/grub.cfg-01-52-54-00-AB-CD-01", ("mac", "52:54:00:ab:cd:01")),
        ("/grub/grub.cfg-52:54:00:ab:cd:01", ("mac", "52:54:00:ab:cd:01")),
        ("grub/grub.cfg", ("default", None)),
        ("/grub/grub.cfg", ("default", None)),
    ],
)
def test_grub_names_map_back(path, expected):
    assert grub.parse_config_name(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "grub/grub.cfg-0A636305",
        "grub/grub.cfg-0",
        "grub/grub.cfg-",
        "grub/grub.cfg-06-52-54-00-ab-cd-01",
        "grub/grub.cfg-01-52:54:00:ab:cd:01",
        "grub/grub.cfg-52-54-00-ab-cd-01",
        "grub/grub.cfg-01-01-00-5e-00-00-01",
        "grub/x86_64-efi/grub.cfg",
        "grub/x86_64-efi/normal.mod",
        "grub/../grub/grub.cfg",
        "grub.cfg",
        "boot/grub/grub.cfg",
        "pxelinux.cfg/default",
        "grub/grub.cfg\x00",
        "",
    ],
)
def test_grub_refuses_other_names(path):
    assert grub.parse_config_name(path) is None


def test_grub_names_round_trip():
    first, default, by_colons = grub.config_names(MAC)
    assert grub.parse_config_name(first) == ("mac", "52:54:00:ab:cd:01")
    assert grub.parse_config_name(by_colons) == ("mac", "52:54:00:ab:cd:01")
    assert grub.parse_config_name(default) == ("default", None)


# --- GRUB configs: checked by GRUB's own parser ------------------------------


@pytest.fixture(scope="module")
def grub_script_check():
    tool = shutil.which("grub-script-check")
    if tool is None:
        pytest.fail("grub-script-check is missing: apt-get install -y grub-common")
    return tool


def check_grub(tool: str, text: str, tmp_path) -> None:
    path = tmp_path / "grub.cfg"
    path.write_text(text)
    done = subprocess.run([tool, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n--- config:\n{text}"


def test_the_checker_says_no(grub_script_check, tmp_path):
    with pytest.raises(AssertionError):
        check_grub(grub_script_check, "menuentry 'x' {\n  linux a\n", tmp_path)


@pytest.mark.parametrize("node_name", NAMES)
@pytest.mark.parametrize("firmware", ["bios", "uefi"])
@pytest.mark.parametrize("kind", list(Kind))
def test_every_grub_config_passes_grub_script_check(
    grub_script_check, tmp_path, kind, firmware, node_name
):
    text = grub.render(
        decision(kind, firmware), node_name=node_name, state="pending", install=INSTALL
    )
    if kind == Kind.IGNORE:
        assert text is None
        return
    check_grub(grub_script_check, text, tmp_path)


def test_grub_default_passes_grub_script_check(grub_script_check, tmp_path):
    text = grub.render_default()
    check_grub(grub_script_check, text, tmp_path)
    assert 'configfile "${prefix}/grub.cfg-${net_default_mac}"' in text
    assert "exit" in text and "chainloader (hd0)+1" in text


def _lines(text: str, command: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(command)]


def test_grub_install_entry(grub_script_check, tmp_path):
    text = grub.render(
        decision(Kind.INSTALL, "uefi"), node_name="web-01", state="pending", install=INSTALL
    )
    check_grub(grub_script_check, text, tmp_path)
    assert "set default=0" in text and "set fallback=1" in text
    assert re.search(r"^set timeout=[1-5]$", text, re.M)
    (linux,) = _lines(text, "linux ")
    assert linux == (
        "linux (http,10.99.0.1:8000)/boot/files/debian-12/vmlinuz console=ttyS0 autoinstall "
        r"ds=nocloud-net\;s=http://10.99.0.1:8000/api/v1/install/t0k/"
    )
    assert _lines(text, "initrd ") == [
        "initrd (http,10.99.0.1:8000)/boot/files/debian-12/initrd.gz"
    ]
    # Entry 1, the fallback, boots the disk.
    entries = re.findall(r"^menuentry (.*) --id (\w+) \{$", text, re.M)
    assert [entry_id for _, entry_id in entries] == ["install", "local"]


def test_grub_cmdline_is_escaped_for_grub():
    assert grub.cmdline("ds=nocloud-net;s=http://h/x/") == r"ds=nocloud-net\;s=http://h/x/"
    assert grub.cmdline('a  b="two words" c=$HOME d&e|f<g>h{i}') == (
        r"a b=two\ words c=\$HOME d\&e\|f\<g\>h\{i\}"
    )
    assert grub.cmdline("x=it's \\ y") == r"x=it\'s \\ y"
    assert grub.cmdline("#no-comment\tz\n") == r"\#no-comment z"
    assert grub.cmdline('  ""  ') == ""


def test_grub_install_without_arguments(grub_script_check, tmp_path):
    bare = InstallBoot(INSTALL.kernel, INSTALL.initrd, "")
    text = grub.render(decision(Kind.INSTALL), node_name="n", state="pending", install=bare)
    check_grub(grub_script_check, text, tmp_path)
    assert _lines(text, "linux ") == ["linux (http,10.99.0.1:8000)/boot/files/debian-12/vmlinuz"]


@pytest.mark.parametrize(
    "url,path",
    [
        ("http://10.0.0.1/boot/vmlinuz", "(http,10.0.0.1)/boot/vmlinuz"),
        ("http://10.0.0.1:8000/boot/vmlinuz", "(http,10.0.0.1:8000)/boot/vmlinuz"),
        ("http://Boot.Example.com:80/a%20b", "(http,boot.example.com:80)/a%20b"),
        ("http://[fd00::1]:8000/k", "(http,[fd00::1]:8000)/k"),
        ("http://10.0.0.1:8000/k?v=1", "(http,10.0.0.1:8000)/k?v=1"),
        ("http://10.0.0.1", "(http,10.0.0.1)/"),
        ("tftp://10.0.0.1/k", "(tftp,10.0.0.1)/k"),
    ],
)
def test_grub_device_paths(url, path):
    assert grub.device_path(url) == path


@pytest.mark.parametrize(
    "url", ["https://h/k", "ftp://h/k", "http://u:p@h/k", "/boot/files/k", "http:///k"]
)
def test_grub_refuses_urls_it_cannot_fetch(url):
    with pytest.raises(ValueError):
        grub.device_path(url)


def test_grub_install_over_https_boots_the_disk_and_says_why(grub_script_check, tmp_path):
    https = InstallBoot("https://h/k", "https://h/i", "x")
    text = grub.render(
        decision(Kind.INSTALL, "uefi"), node_name="n", state="pending", install=https
    )
    check_grub(grub_script_check, text, tmp_path)
    assert not LINUX_CMD.search(text) and text.rstrip().endswith("exit")
    assert "only http:// and tftp://" in text


def test_grub_local_boot_per_firmware(grub_script_check, tmp_path):
    uefi = grub.render(decision(Kind.LOCAL, "uefi"), node_name="n", state="active", install=None)
    bios = grub.render(decision(Kind.LOCAL, "bios"), node_name="n", state="active", install=None)
    assert uefi == "echo 'PureBoot: n is active; booting the local disk'\n" + grub.EFI_LOCAL
    # UEFI: the disk's own loader is chainloaded (GRUB 2.06's exit lands in the
    # firmware's setup screen), the removable-media path first; exit only if none.
    assert 'chainloader "(${pb_esp})${pb_loader}"' in uefi
    assert grub.EFI_LOADERS[0] == "/EFI/BOOT/BOOT${pb_efi}.EFI"
    assert uefi.rstrip().endswith("done\nexit")
    assert bios.rstrip().endswith("chainloader (hd0)+1\nboot")
    # An EFI GRUB handed a BIOS decision still boots the disk the UEFI way.
    assert bios.startswith(
        "echo 'PureBoot: n is active; booting the local disk'\n"
        'if [ "${grub_platform}" = "efi" ]; then\n  insmod part_gpt\n'
    )
    for text in (uefi, bios):
        check_grub(grub_script_check, text, tmp_path)


def test_grub_wait_menu_falls_to_the_disk(grub_script_check, tmp_path):
    text = grub.render(
        decision(Kind.WAIT, "uefi"), node_name="web-01", state="failed", install=INSTALL
    )
    check_grub(grub_script_check, text, tmp_path)
    assert "set default=0" in text
    assert re.search(r"^set timeout=[1-9]\d?$", text, re.M)
    entries = re.findall(r"^menuentry (.*) --id (\w+) \{$", text, re.M)
    assert entries == [("'PureBoot: web-01 is failed; boot the local disk'", "local")]
    assert not LINUX_CMD.search(text)


def test_grub_quote():
    assert grub.quote("(http,h:80)/a/b") == "(http,h:80)/a/b"
    assert grub.quote("it's") == "'it'\\''s'"
    assert grub.quote("") == "''"
    assert grub.quote("$x;y") == "'$x;y'"
