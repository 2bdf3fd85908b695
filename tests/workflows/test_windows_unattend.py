"""windows_install renders autounattend.xml, winpeshl.ini and pureboot.cmd that Setup,
WinPE and cmd.exe read as meant; workflows.unattend.check_unattend finds what Setup refuses.

No Windows runs here. The parts that can run do: pureboot.cmd's report lines are split
into arguments by the Microsoft C runtime's rules (as curl.exe gets them) and sent with
the real curl to a local stand-in for the controller; the PowerShell the first logon runs
is decoded and parsed with tree-sitter's PowerShell grammar (PowerShell's own parser does
not run here).
"""

from __future__ import annotations

import base64
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from workflows.installer_checks import check_installer
from workflows.rendering import RenderError, render_installer
from workflows.unattend import check_unattend
from workflows.windows_render import cmd_safe, ps_encoded, win_password, xml

from .installer_context import REPORT_URL, TOKEN, WINDOWS, sample_context

NS = {"u": "urn:schemas-microsoft-com:unattend"}
ADMIN_PASSWORD = WINDOWS["admin_password"]
ONLINE_JOIN = {
    "mode": "online",
    "domain": "corp.example.com",
    "ou": "OU=Workstations",
    "username": "CORP\\svc-join",
    "password": "J0in&<Pass>'\"",
}
OFFLINE_JOIN = {
    "mode": "offline",
    "domain": "corp.example.com",
    "ou": "",
    "account_data": base64.b64encode(b"ODJ blob" * 40).decode(),
}


def render(*, params=None, node=None, windows=None, join=None, install=None) -> dict[str, str]:
    context = sample_context("windows_install", node=node, params=params, install=install)
    context["windows"].update(windows or {})
    context["join"] = join
    return render_installer("windows_install", context)


def parse(files: dict[str, str]) -> ET.Element:
    return ET.fromstring(files["autounattend.xml"].encode())


def texts(root: ET.Element, path: str) -> list[str]:
    return [e.text or "" for e in root.iterfind(path, NS)]


def decode_utf16(value: str) -> str:
    return base64.b64decode(value).decode("utf-16-le")


# --- every rendering passes the checker ---------------------------------------------------------

CASES = {
    "uefi-amd64": ({}, {}, None),
    "bios-amd64": ({}, {"firmware": "bios"}, None),
    "uefi-arm64-online": ({}, {"arch": "arm64"}, ONLINE_JOIN),
    "bios-offline-key-drivers": (
        {"product_key_credential": "win-key", "organization": "ACME & Sons <IT>"},
        {"firmware": "bios", "product_key": "VK7JG-NPHTM-C97JM-9MPGT-3V66T", "drivers": True},
        OFFLINE_JOIN,
    ),
    "everything": (
        {
            "locale": "de-DE",
            "input_locale": "0407:00000407",
            "timezone": "W. Europe Standard Time",
            "disk": 2,
            "computer_name": "KIOSK-07",
            "first_logon_commands": ['cmd /c echo "hi" > C:\\pureboot.txt & exit 0'],
            "post_install_powershell": ["Set-TimeZone -Id 'UTC'", "Write-Output 'x' # " * 200],
        },
        {"share_username": "pureboot", "share_password": "sh&re"},
        ONLINE_JOIN,
    ),
}


@pytest.mark.parametrize(("params", "windows", "join"), CASES.values(), ids=CASES.keys())
def test_every_rendering_passes_the_checker(params, windows, join):
    files = render(params=params, windows=windows, join=join)
    assert set(files) == {"autounattend.xml", "winpeshl.ini", "pureboot.cmd"}
    assert check_unattend(files["autounattend.xml"]) == []
    assert check_installer("windows_install", files) == []


def test_uefi_layout_and_image():
    root = parse(render(params={"edition": "Windows 11 Pro", "disk": 1}))
    setup = "u:settings[@pass='windowsPE']/u:component[@name='Microsoft-Windows-Setup']"
    disk = f"{setup}/u:DiskConfiguration/u:Disk"
    assert texts(root, f"{disk}/u:DiskID") == ["1"]
    parts = root.findall(f"{disk}/u:CreatePartitions/u:CreatePartition", NS)
    assert [(p.findtext("u:Type", "", NS), p.findtext("u:Size", "", NS)) for p in parts] == [
        ("EFI", "260"),
        ("MSR", "16"),
        ("Primary", ""),
    ]
    assert texts(root, f"{disk}/u:ModifyPartitions/u:ModifyPartition/u:Format") == [
        "FAT32",
        "NTFS",
    ]
    image = f"{setup}/u:ImageInstall/u:OSImage"
    assert texts(root, f"{image}/u:InstallFrom/u:Path") == [
        WINDOWS["install_share"] + "\\install.wim"
    ]
    assert texts(root, f"{image}/u:InstallFrom/u:MetaData/u:Key") == ["/IMAGE/NAME"]
    assert texts(root, f"{image}/u:InstallFrom/u:MetaData/u:Value") == ["Windows 11 Pro"]
    assert texts(root, f"{image}/u:InstallTo/u:PartitionID") == ["3"]
    assert texts(root, f"{image}/u:InstallTo/u:DiskID") == ["1"]
    assert texts(root, f"{setup}/u:UserData/u:AcceptEula") == ["true"]
    assert root.find(f"{setup}/u:UserData/u:ProductKey", NS) is None
    assert root.find("u:settings[@pass='offlineServicing']", NS) is None


def test_bios_layout():
    root = parse(render(windows={"firmware": "bios"}))
    disk = ".//u:DiskConfiguration/u:Disk"
    parts = root.findall(f"{disk}/u:CreatePartitions/u:CreatePartition", NS)
    assert [p.findtext("u:Size", "", NS) for p in parts] == ["500", ""]
    assert texts(root, f"{disk}/u:ModifyPartitions/u:ModifyPartition/u:Active") == ["true"]
    assert texts(root, ".//u:InstallTo/u:PartitionID") == ["2"]


def test_components_carry_their_attributes():
    root = parse(render(windows={"arch": "arm64"}, join=ONLINE_JOIN))
    components = root.findall(".//u:component", NS)
    assert len(components) == 6
    for component in components:
        assert component.get("processorArchitecture") == "arm64"
        assert component.get("publicKeyToken") == "31bf3856ad364e35"
        assert component.get("language") == "neutral"
        assert component.get("versionScope") == "nonSxS"


def test_passwords_are_encoded_as_setup_reads_them():
    root = parse(render())
    shell = "u:settings[@pass='oobeSystem']/u:component[@name='Microsoft-Windows-Shell-Setup']"
    admin = f"{shell}/u:UserAccounts/u:AdministratorPassword"
    assert texts(root, f"{admin}/u:PlainText") == ["false"]
    [value] = texts(root, f"{admin}/u:Value")
    assert decode_utf16(value) == ADMIN_PASSWORD + "AdministratorPassword"
    logon = f"{shell}/u:AutoLogon"
    assert texts(root, f"{logon}/u:Username") == ["Administrator"]
    assert texts(root, f"{logon}/u:LogonCount") == ["1"]
    [value] = texts(root, f"{logon}/u:Password/u:Value")
    assert decode_utf16(value) == ADMIN_PASSWORD + "Password"
    assert ADMIN_PASSWORD not in render()["autounattend.xml"]


def test_product_key_and_values_are_escaped():
    edition = "Windows <Pro> & \"Edu\" 'N'"
    files = render(
        params={"edition": edition, "organization": "A&B"},
        windows={"product_key": "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"},
    )
    root = parse(files)
    assert texts(root, ".//u:MetaData/u:Value") == [edition]
    assert texts(root, ".//u:ProductKey/u:Key") == ["AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"]
    assert texts(root, ".//u:RegisteredOrganization") == ["A&B"]
    assert texts(root, ".//u:UserData/u:Organization") == ["A&B"]


def test_locale_time_zone_and_computer_name():
    root = parse(render(params={"locale": "de-DE", "timezone": "W. Europe Standard Time"}))
    assert texts(root, ".//u:ComputerName") == ["WEB01"]  # web01.lab.example.com
    assert texts(root, ".//u:TimeZone") == ["W. Europe Standard Time"]
    assert set(texts(root, ".//u:UILanguage")) == {"de-DE"}
    assert set(texts(root, ".//u:InputLocale")) == {"de-DE"}  # input_locale "": the locale
    root = parse(render(params={"computer_name": "kiosk-7", "input_locale": "en-GB"}))
    assert texts(root, ".//u:ComputerName") == ["KIOSK-7"]
    assert set(texts(root, ".//u:InputLocale")) == {"en-GB"}


@pytest.mark.parametrize(
    ("hostname", "computer_name", "match"),
    [
        ("workstation-0123", "", "1 to 15 letters"),  # 16 characters: never cut short
        ("münchen-01", "", "1 to 15 letters"),
        ("12345", "", "only digits"),
        ("web01", "-bad", "hyphen"),
    ],
)
def test_computer_names_windows_refuses_are_refused(hostname, computer_name, match):
    with pytest.raises(RenderError, match=rf"params\.computer_name: .*{match}"):
        render(node={"hostname": hostname}, params={"computer_name": computer_name})


def test_online_join():
    root = parse(render(join=ONLINE_JOIN))
    join = "u:settings[@pass='specialize']/u:component[@name='Microsoft-Windows-UnattendedJoin']"
    ident = f"{join}/u:Identification"
    assert texts(root, f"{ident}/u:JoinDomain") == ["corp.example.com"]
    assert texts(root, f"{ident}/u:MachineObjectOU") == [
        "OU=Workstations,DC=corp,DC=example,DC=com"
    ]
    assert texts(root, f"{ident}/u:Credentials/u:Domain") == ["CORP"]
    assert texts(root, f"{ident}/u:Credentials/u:Username") == ["svc-join"]
    assert texts(root, f"{ident}/u:Credentials/u:Password") == [ONLINE_JOIN["password"]]
    upn = parse(render(join={**ONLINE_JOIN, "username": "svc@corp.example.com", "ou": ""}))
    assert texts(upn, ".//u:Credentials/u:Domain") == ["corp.example.com"]
    assert texts(upn, ".//u:Credentials/u:Username") == ["svc@corp.example.com"]
    assert upn.find(".//u:MachineObjectOU", NS) is None


def test_offline_join():
    root = parse(render(join=OFFLINE_JOIN))
    path = (
        "u:settings[@pass='offlineServicing']/u:component[@name='Microsoft-Windows-UnattendedJoin']"
        "/u:OfflineIdentification/u:Provisioning/u:AccountData"
    )
    assert texts(root, path) == [OFFLINE_JOIN["account_data"]]
    assert root.find(".//u:Identification", NS) is None
    passes = [s.get("pass") for s in root.findall("u:settings", NS)]
    assert passes == ["windowsPE", "offlineServicing", "specialize", "oobeSystem"]


# --- first logon: the operator's commands, the scripts, then the reports --------------------------


def _powershell_parser():
    try:
        import tree_sitter
        import tree_sitter_powershell as grammar
    except ImportError as exc:  # a dev dependency: its absence is a failure, never a skip
        pytest.fail(f"{exc.name} is missing: pip install -e '.[dev]'")
    return tree_sitter.Parser(tree_sitter.Language(grammar.language()))


ENCODED = re.compile(
    r"powershell\.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
    r"([A-Za-z0-9+/=]+)"
)
CHUNK = re.compile(r"cmd\.exe /c >>%SystemRoot%\\Temp\\pureboot-([a-z0-9-]+)\.b64 echo (\S+)")


def run_first_logon(commands: list[str]) -> list[str]:
    """The PowerShell each command runs, the chunked scripts put back together as the runner
    does (it reads the file the echo commands appended to)."""
    files: dict[str, str] = {}
    scripts = []
    for command in commands:
        assert len(command) <= 1024
        if chunk := CHUNK.fullmatch(command):
            files[chunk.group(1)] = files.get(chunk.group(1), "") + chunk.group(2) + "\r\n"
            continue
        encoded = ENCODED.fullmatch(command)
        assert encoded, command
        script = decode_utf16(encoded.group(1))
        if name := re.search(r"'Temp\\pureboot-([a-z0-9-]+)\.b64'", script):
            assert "Remove-Item" in script and "[ScriptBlock]::Create" in script
            script = decode_utf16(re.sub(r"\s", "", files.pop(name.group(1))))
        scripts.append(script)
    assert files == {}
    return scripts


def test_first_logon_commands_in_order():
    long_script = "\n".join(f"Write-Output 'line {n}'" for n in range(300))
    params = {
        "first_logon_commands": ["net user ops /add", 'cmd /c echo "&<>" > C:\\x.txt'],
        "post_install_powershell": ["Set-TimeZone -Id 'UTC'", long_script],
    }
    root = parse(render(params=params))
    commands = root.findall(".//u:FirstLogonCommands/u:SynchronousCommand", NS)
    orders = [c.findtext("u:Order", "", NS) for c in commands]
    assert orders == [str(n) for n in range(1, len(commands) + 1)]
    lines = [c.findtext("u:CommandLine", "", NS) for c in commands]
    assert lines[:2] == params["first_logon_commands"]  # as written
    scripts = run_first_logon(lines[2:])
    assert scripts[:2] == params["post_install_powershell"]
    assert len(lines) > 6  # the long script came in pieces
    installed, active = scripts[2:]
    for status, script in (("installed", installed), ("active", active)):
        assert REPORT_URL in script and f"'Node {TOKEN}'" in script
        assert f'\'{{"status":"{status}","progress":100,' in script
        assert "try{" in script and "catch{" in script  # a failed report never fails the logon
    parser = _powershell_parser()
    for script in scripts:
        assert not parser.parse(script.encode()).root_node.has_error, script[:80]
    runner = decode_utf16(ENCODED.search(lines[-3]).group(1))
    assert not parser.parse(runner.encode()).root_node.has_error


def test_powershell_quotes_in_report_values_are_doubled():
    files = render(install={"report_url": "https://pure'boot.example/api/v1/report"})
    root = parse(files)
    lines = texts(root, ".//u:SynchronousCommand/u:CommandLine")
    [installed, _] = run_first_logon(lines)
    assert "'https://pure''boot.example/api/v1/report'" in installed
    assert not _powershell_parser().parse(installed.encode()).root_node.has_error


def test_too_many_first_logon_commands_are_refused():
    script = "Write-Output 'x'\n" * 8000  # ~16 KiB: about 45 pieces each
    with pytest.raises(RenderError, match="Setup runs at most 500"):
        render(params={"post_install_powershell": [script] * 12})


# --- WinPE: winpeshl.ini and pureboot.cmd -------------------------------------------------------


def crt_argv(line: str) -> list[str]:
    """Split a command line as the Microsoft C runtime does for curl.exe's main()."""
    args, current, in_quotes, i, started = [], [], False, 0, False
    while i < len(line):
        char = line[i]
        if char == "\\":
            j = i
            while j < len(line) and line[j] == "\\":
                j += 1
            count = j - i
            if j < len(line) and line[j] == '"':
                current.append("\\" * (count // 2))
                if count % 2:
                    current.append('"')
                    i = j + 1
                else:
                    i = j
                started = True
                continue
            current.append("\\" * count)
            i, started = j, True
            continue
        if char == '"':
            in_quotes, i, started = not in_quotes, i + 1, True
            continue
        if char in " \t" and not in_quotes:
            if started:
                args.append("".join(current))
            current, started, i = [], False, i + 1
            continue
        current.append(char)
        i, started = i + 1, True
    if started:
        args.append("".join(current))
    return args


def cmd_lines(files: dict[str, str]) -> list[str]:
    return files["pureboot.cmd"].split("\r\n")


def test_winpe_files_are_crlf_ascii():
    files = render()
    for name in ("winpeshl.ini", "pureboot.cmd"):
        assert files[name].isascii()
        assert "\n" not in files[name].replace("\r\n", "")
    assert files["winpeshl.ini"] == (
        "[LaunchApps]\r\n"
        "%SYSTEMROOT%\\System32\\wpeinit.exe\r\n"
        "%SYSTEMROOT%\\System32\\cmd.exe, /c %SYSTEMROOT%\\System32\\pureboot.cmd\r\n"
    )


def test_pureboot_cmd_steps():
    lines = cmd_lines(render(windows={"drivers": True}))
    setup = lines.index(
        "X:\\sources\\setup.exe /unattend:X:\\Windows\\System32\\autounattend.xml /noreboot"
    )
    drivers = lines.index('for /r X:\\Drivers %%i in (*.inf) do drvload "%%i"')
    reports = [n for n, line in enumerate(lines) if line.startswith("curl.exe ")]
    assert reports[0] < drivers < setup < reports[1] < lines.index("wpeutil reboot")
    assert "drvload" not in render()["pureboot.cmd"]


def test_pureboot_cmd_reports_reach_the_controller(report_server):
    url, received = report_server
    lines = cmd_lines(render(install={"report_url": url}))
    reports = [line for line in lines if line.startswith("curl.exe ")]
    assert len(reports) == 3
    # The disk_written report is retried until it is heard, then WinPE restarts.
    assert reports[1].endswith(" && goto restart")
    loop = lines[lines.index(":disk_written") :]
    assert loop[1] == reports[1] and "goto disk_written" in loop
    assert lines[lines.index(":restart") + 1] == "wpeutil reboot"
    reports = [line.removesuffix(" && goto restart") for line in reports]
    for line in reports:
        # cmd.exe expands %RC% (Setup's exit code) before curl.exe splits its arguments.
        argv = crt_argv(line.replace("%RC%", "31"))
        assert argv[0] == "curl.exe"
        assert argv[argv.index("-o") + 1] == "NUL"
        argv[argv.index("-o") + 1] = "/dev/null"
        subprocess.run(["curl", *argv[1:]], check=True, timeout=60)
    assert [r["auth"] for r in received] == [f"Node {TOKEN}"] * 3
    assert [r["body"] for r in received] == [
        {"status": "installing", "progress": 10, "logs": ["WinPE started"]},
        {
            "status": "disk_written",
            "progress": 60,
            "logs": ["Windows Setup wrote the disk; continuing from it"],
        },
        {"status": "failed", "progress": 60, "logs": ["Windows Setup failed (exit code 31)"]},
    ]


@pytest.mark.parametrize("bad", ["tok&calc", "tok%PATH%", 'tok"x', "tok|x", "tok^x", "tok\nx"])
def test_values_cmd_would_interpret_are_refused(bad):
    with pytest.raises(RenderError, match="cmd.exe would interpret"):
        render(install={"token": bad})


# --- filters -------------------------------------------------------------------------------------


def test_filters():
    assert xml("a&b<c>\"d'") == "a&amp;b&lt;c&gt;&quot;d&apos;"
    for bad in ("a\nb", "tab\there", "nul\x00", "\x85"):
        with pytest.raises(ValueError, match="control character"):
            xml(bad)
    assert decode_utf16(win_password("pw", "Password")) == "pwPassword"
    with pytest.raises(ValueError):
        win_password("pw", "Secret")
    assert base64.b64decode(ps_encoded("Get-Date")) == "Get-Date".encode("utf-16-le")
    assert cmd_safe("Windows installed") == "Windows installed"
    for bad in ("a&b", "50%", 'say "x"', "a|b", "a^b", "a<b", "a>b", "a\r\nb"):
        with pytest.raises(ValueError):
            cmd_safe(bad)


def test_control_characters_in_values_are_refused():
    with pytest.raises(RenderError, match="control character"):
        render(windows={"admin_password": "x", "install_share": WINDOWS["install_share"]},
               params={"organization": "A\x07B"})  # fmt: skip


# --- the checker, on hand-broken files ----------------------------------------------------------

GOOD = render(join=ONLINE_JOIN)["autounattend.xml"]


def broken(old: str, new: str, count: int = 1) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, count)


def _admin_value() -> str:
    return re.search(r"<AdministratorPassword>\s*<Value>([^<]+)</Value>", GOOD).group(1)


BROKEN = {
    "not well-formed": (GOOD[:-20], "not well-formed XML"),
    "entity": (
        '<?xml version="1.0"?><!DOCTYPE u [<!ENTITY e "x">]><unattend>&e;</unattend>',
        "not well-formed XML",
    ),
    "wrong namespace": (
        broken('xmlns="urn:schemas-microsoft-com:unattend"', 'xmlns="urn:example"'),
        "the root must be unattend in the namespace urn:schemas-microsoft-com:unattend",
    ),
    "unknown pass": (
        broken('pass="specialize"', 'pass="specialise"'),
        "settings[specialise]: not a configuration pass",
    ),
    "pass twice": (
        broken('<settings pass="specialize">', '<settings pass="oobeSystem">'),
        "settings[oobeSystem]: the pass appears twice",
    ),
    "missing AcceptEula": (
        broken("<AcceptEula>true</AcceptEula>", ""),
        "settings[windowsPE]/Microsoft-Windows-Setup/UserData/AcceptEula: must be true",
    ),
    "AcceptEula false": (
        broken("<AcceptEula>true</AcceptEula>", "<AcceptEula>false</AcceptEula>"),
        "UserData/AcceptEula: must be true",
    ),
    "missing ImageInstall": (
        re.sub(r"<ImageInstall>.*</ImageInstall>", "", GOOD, flags=re.S),
        "settings[windowsPE]/Microsoft-Windows-Setup/ImageInstall: missing",
    ),
    "plain-text admin password": (
        broken(
            f"<Value>{_admin_value()}</Value>\n          <PlainText>false</PlainText>",
            "<Value>hunter2</Value>\n          <PlainText>true</PlainText>",
        ),
        "settings[oobeSystem]/Microsoft-Windows-Shell-Setup/UserAccounts/AdministratorPassword: "
        "write the password encoded",
    ),
    "admin password with the wrong suffix": (
        broken(_admin_value(), win_password(ADMIN_PASSWORD, "Password")),
        "UserAccounts/AdministratorPassword/Value: an encoded password ends in "
        "'AdministratorPassword'",
    ),
    "admin password not base64": (
        broken(_admin_value(), "not*base64"),
        "AdministratorPassword/Value: not base64 of UTF-16LE text",
    ),
    "wrong publicKeyToken": (
        broken('publicKeyToken="31bf3856ad364e35"', 'publicKeyToken="0000000000000000"'),
        "settings[windowsPE]/Microsoft-Windows-International-Core-WinPE: publicKeyToken must be "
        "31bf3856ad364e35",
    ),
    "wrong architecture": (
        broken('processorArchitecture="amd64"', 'processorArchitecture="x64"'),
        "processorArchitecture must be x86 or amd64 or arm or arm64 or wow64, got 'x64'",
    ),
    "missing language": (
        broken(' language="neutral"', ""),
        "language must be neutral, got None",
    ),
    "wrong versionScope": (
        broken('versionScope="nonSxS"', 'versionScope="SxS"'),
        "versionScope must be nonSxS",
    ),
    "computer name too long": (
        broken("<ComputerName>WEB01<", "<ComputerName>WORKSTATION-0123<"),
        "settings[specialize]/Microsoft-Windows-Shell-Setup/ComputerName: 'WORKSTATION-0123' is "
        "not a computer name",
    ),
    "non-ASCII join domain": (
        broken("<JoinDomain>corp.example.com", "<JoinDomain>corp.exämple.com"),
        "JoinDomain: Setup takes ASCII characters only here",
    ),
    "no oobeSystem Shell-Setup": (
        re.sub(
            r'<settings pass="oobeSystem">.*</settings>',
            '<settings pass="oobeSystem"></settings>',
            GOOD,
            flags=re.S,
        ),
        "settings[oobeSystem]/Microsoft-Windows-Shell-Setup: missing",
    ),
    "command line too long": (
        broken("<CommandLine>", "<CommandLine>" + "x" * 1100),
        "SynchronousCommand[1]/CommandLine: 1 to 1024 characters",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("text", "problem"), BROKEN.values(), ids=BROKEN.keys())
def test_checker_finds_what_setup_refuses(text, problem):
    problems = check_unattend(text)
    assert any(problem in p for p in problems), problems


def test_checker_allows_the_plain_join_password_and_a_random_name():
    assert check_unattend(GOOD) == []
    assert "<Password>J0in&amp;&lt;Pass&gt;&apos;&quot;</Password>" in GOOD  # not encoded
    assert check_unattend(broken("<ComputerName>WEB01<", "<ComputerName>*<")) == []


def test_installer_check_names_the_file():
    files = render()
    files["autounattend.xml"] = BROKEN["wrong namespace"][0]
    files["pureboot.cmd"] = "rem ü\r\n"
    problems = check_installer("windows_install", files)
    assert problems[0].startswith("autounattend.xml: ")
    assert problems[1] == "pureboot.cmd: WinPE reads it in its code page: ASCII characters only"


def test_a_boot_image_with_drivers_hands_them_to_setup():
    """drvload loads them in WinPE; PnpCustomizationsWinPE has Setup add them to Windows."""
    component = "Microsoft-Windows-PnpCustomizationsWinPE"
    pnp = f"u:settings[@pass='windowsPE']/u:component[@name='{component}']"
    path = f"{pnp}/u:DriverPaths/u:PathAndCredentials/u:Path"
    assert texts(parse(render(windows={"drivers": True})), path) == ["X:\\Drivers"]
    assert texts(parse(render()), path) == []


def test_an_offline_joins_computer_name_is_the_one_its_blob_was_made_for():
    """The node renamed after its install started: the blob's name wins (else no trust)."""
    join = {**OFFLINE_JOIN, "computer_name": "OLDNAME"}
    xml = render(params={"computer_name": "NEWNAME"}, join=join)["autounattend.xml"]
    assert "<ComputerName>OLDNAME</ComputerName>" in xml and "NEWNAME" not in xml
