"""Filters and globals for the windows_install templates (autounattend.xml, pureboot.cmd).

Every value lands in one of three syntaxes, each with its filter:

``xml``
    XML character data or an attribute value: ``& < > " '`` escaped; control
    characters (and what XML 1.0 cannot hold) refused, because Setup would
    read them back as something else or stop on the file.
``cmd_safe``
    a value inside a cmd.exe line of ``pureboot.cmd``: anything cmd would
    interpret (``& | < > ^ % "`` and line breaks) is refused, not escaped.
``ps_quote``
    a PowerShell single-quoted string (``'`` doubled, and the typographic
    quotes PowerShell also reads as ``'``).

``win_password(value, kind)`` writes a password as Windows System Image
Manager does when it hides one: base64 of the UTF-16LE text of the password
followed by the element's name (``AdministratorPassword`` or ``Password``),
to be written with ``<PlainText>false</PlainText>``. ``ps_encoded`` is what
``powershell.exe -EncodedCommand`` takes: base64 of the script's UTF-16LE text.

Setup takes at most 1024 characters per first-logon command line, so a
PowerShell script whose encoded command would be longer is carried in pieces:
commands that append its base64 to a file under ``%SystemRoot%\\Temp``, then
a short encoded command that reads, removes and runs it.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import jinja2

from .samba_tools import ou_dn
from .windows_params import COMMAND_LINE_MAX, computer_name_problem


class RefusedValue(ValueError):
    """A value that cannot be written safely where the template puts it."""


# What XML 1.0 cannot hold, and control characters Setup would not read back as written.
_XML_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_CMD_REFUSED = re.compile('[&|<>^%"\x00-\x1f\x7f\x85\u2028\u2029]')
_PS_QUOTES = re.compile("['\u2018\u2019\u201a\u201b]")
_UNC = re.compile(r"\\\\[A-Za-z0-9._-]+(\\[^\\/:*?\"<>|\x00-\x1f]+)+")
_CHUNK_NAME = re.compile(r"[a-z0-9-]{1,40}")
_VARIABLE = re.compile(r"[A-Z_]{1,20}")

POWERSHELL = "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
PASSWORD_KINDS = ("AdministratorPassword", "Password")
#: Setup runs first-logon commands numbered 1 to this.
MAX_ORDER = 500
PROCESSOR_ARCHITECTURES = ("amd64", "arm64")


def _text(value: Any, what: str) -> str:
    if value is None or isinstance(value, dict | list | tuple):
        raise RefusedValue(f"{what} needs text, got {type(value).__name__}")
    return str(value)


def xml(value: Any) -> str:
    text = _text(value, "xml")
    if _XML_REFUSED.search(text):
        raise RefusedValue(f"a control character cannot be written in unattend: {text[:60]!r}")
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
    )


def utf16_b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-16-le")).decode("ascii")


def win_password(value: Any, kind: str) -> str:
    if kind not in PASSWORD_KINDS:
        raise RefusedValue(f"win_password: kind is one of {', '.join(PASSWORD_KINDS)}")
    return utf16_b64(_text(value, "win_password") + kind)


def ps_encoded(value: Any) -> str:
    return utf16_b64(_text(value, "ps_encoded"))


def cmd_safe(value: Any) -> str:
    text = _text(value, "cmd_safe")
    if _CMD_REFUSED.search(text):
        raise RefusedValue(
            f'a character cmd.exe would interpret (& | < > ^ % " or a line break) cannot be '
            f"written in pureboot.cmd: {text[:60]!r}"
        )
    return text


def ps_quote(value: Any) -> str:
    text = _text(value, "ps_quote")
    if "\x00" in text:
        raise RefusedValue("a NUL character cannot be written in a PowerShell string")
    return "'" + _PS_QUOTES.sub(lambda m: m.group() * 2, text) + "'"


def join_account(join: dict[str, Any]) -> dict[str, str]:
    """The join account as unattend's Credentials take it: DOMAIN\\user split, else the
    join's domain and the user name (a user@domain name stays whole)."""
    username = _text(join["username"], "join.username")
    domain, sep, user = username.partition("\\")
    if sep:
        return {"domain": domain, "username": user}
    return {"domain": join["domain"], "username": username}


# --- reports ---------------------------------------------------------------------------------


def _body(status: str, progress: int, message: str) -> str:
    return json.dumps(
        {"status": status, "progress": progress, "logs": [message]}, separators=(",", ":")
    )


@jinja2.pass_context
def cmd_report(
    ctx: jinja2.runtime.Context, status: str, progress: int, message: str, code_var: str = ""
) -> str:
    """The curl.exe line by which WinPE reports progress; cmd never fails on it.

    ``code_var`` names a cmd variable (``RC``) whose value ends the message
    (``exit code %RC%``). The JSON needs no cmd escapes: every value is
    ``cmd_safe`` and its quotes are written ``\\"`` for curl's argument parser.
    """
    install = ctx["install"]
    token = cmd_safe(install["token"])
    url = cmd_safe(install["report_url"])
    if code_var:
        if not _VARIABLE.fullmatch(code_var):
            raise RefusedValue(f"cmd_report: {code_var!r} is not a variable name")
        message = f"{message} (exit code {{CODE}})"
    cmd_safe(status)
    cmd_safe(message)
    body = _body(status, int(progress), message)
    if "\\" in body:
        raise RefusedValue(f"a backslash cannot be written in a report from cmd: {body[:60]!r}")
    body = body.replace('"', '\\"').replace("{CODE}", f"%{code_var}%")
    return (
        f'curl.exe -fsS --max-time 20 --retry 3 -o NUL -X POST -H "Authorization: Node {token}" '
        f'-H "Content-Type: application/json" --data "{body}" {url}'
    )


@jinja2.pass_context
def ps_report(ctx: jinja2.runtime.Context, status: str, progress: int, message: str) -> str:
    """A PowerShell script that reports progress, trying for about a minute; it never fails."""
    install = ctx["install"]
    # Short: it fits one first-logon command line as an encoded command.
    request = (
        f"irm -UseBasicParsing -Method Post -TimeoutSec 20 -Uri {ps_quote(install['report_url'])} "
        f"-Headers @{{Authorization={ps_quote('Node ' + str(install['token']))}}} "
        f"-ContentType 'application/json' -Body {ps_quote(_body(status, progress, message))}"
    )
    return f"foreach($i in 1..6){{try{{{request}|Out-Null;break}}catch{{sleep 10}}}}"


def powershell_commands(script: Any, name: str) -> list[str]:
    """Command lines that run ``script`` at the first logon, each within Setup's limit."""
    text = _text(script, "powershell_commands")
    if not _CHUNK_NAME.fullmatch(name):
        raise RefusedValue(f"powershell_commands: {name!r} is not a file name part")
    command = POWERSHELL + ps_encoded(text)
    if len(command) <= COMMAND_LINE_MAX:
        return [command]
    path = f"%SystemRoot%\\Temp\\pureboot-{name}.b64"
    prefix = f"cmd.exe /c >>{path} echo "
    encoded = ps_encoded(text)
    size = COMMAND_LINE_MAX - len(prefix)
    commands = [prefix + encoded[i : i + size] for i in range(0, len(encoded), size)]
    runner = (
        f"$f = Join-Path $env:SystemRoot 'Temp\\pureboot-{name}.b64'; "
        "$b = (Get-Content -Raw -LiteralPath $f) -replace '\\s', ''; "
        "Remove-Item -LiteralPath $f; "
        "& ([ScriptBlock]::Create([Text.Encoding]::Unicode.GetString("
        "[Convert]::FromBase64String($b))))"
    )
    return [*commands, POWERSHELL + ps_encoded(runner)]


@jinja2.pass_context
def first_logon(ctx: jinja2.runtime.Context) -> list[dict[str, str]]:
    """FirstLogonCommands in order: the operator's command lines, the PowerShell scripts,
    then the reports ``installed`` and ``active``. Each: {command, description}."""
    params = ctx["params"]
    entries = []
    for index, command in enumerate(params["first_logon_commands"]):
        text = _text(command, f"params.first_logon_commands[{index}]")
        if len(text) > COMMAND_LINE_MAX:
            raise RefusedValue(
                f"params.first_logon_commands[{index}] is longer than Setup's "
                f"{COMMAND_LINE_MAX} characters"
            )
        entries.append({"command": text, "description": f"first_logon_commands[{index}]"})
    for index, script in enumerate(params["post_install_powershell"]):
        for part, command in enumerate(powershell_commands(script, f"script-{index + 1}")):
            entries.append(
                {"command": command, "description": f"post_install_powershell[{index}] #{part}"}
            )
    for status, message in (
        ("installed", "Windows installed"),
        ("active", "Windows is up"),
    ):
        for command in powershell_commands(ps_report(ctx, status, 100, message), status):
            entries.append({"command": command, "description": f"PureBoot report: {status}"})
    if len(entries) > MAX_ORDER:
        raise RefusedValue(
            f"params.post_install_powershell: the scripts and commands need {len(entries)} "
            f"first-logon commands; Setup runs at most {MAX_ORDER}"
        )
    return entries


# --- checks before any template runs -----------------------------------------------------------


@jinja2.pass_context
def computer_name(ctx: jinja2.runtime.Context) -> str:
    join = ctx.get("join")
    if join and join.get("computer_name"):  # an offline join's blob names the computer
        name = str(join["computer_name"])
        if problem := computer_name_problem(name):
            raise RefusedValue(f"join.computer_name: {problem}")
        return name
    return derive_computer_name(ctx["params"], ctx["node"])


def derive_computer_name(params: dict[str, Any], node: dict[str, Any]) -> str:
    """params.computer_name, else the node's host name (first label), upper-cased; never cut."""
    name = str(params["computer_name"] or node["hostname"].partition(".")[0]).upper()
    if problem := computer_name_problem(name):
        source = "" if params["computer_name"] else f" (from the node's host name {name!r})"
        raise RefusedValue(
            f"params.computer_name: {problem}{source}; set computer_name for this workflow "
            "or give the node a shorter host name"
        )
    return name


def check_context(context: dict[str, Any]) -> None:
    """Refuse a windows_install context the templates could not write correctly."""
    params, node, windows = context["params"], context["node"], context["windows"]
    derive_computer_name(params, node)
    if windows["arch"] not in PROCESSOR_ARCHITECTURES:
        raise RefusedValue(
            f"windows.arch must be one of {', '.join(PROCESSOR_ARCHITECTURES)}, "
            f"got {windows['arch']!r}"
        )
    if windows["firmware"] not in ("uefi", "bios"):
        raise RefusedValue(f"windows.firmware must be uefi or bios, got {windows['firmware']!r}")
    if not _UNC.fullmatch(str(windows["install_share"])):
        raise RefusedValue(
            f"windows.install_share must be a UNC folder such as \\\\host\\share\\image, got "
            f"{str(windows['install_share'])[:80]!r}"
        )
    join = context["join"]
    if join is not None and join["mode"] not in ("online", "offline"):
        raise RefusedValue(f"join.mode must be online or offline, got {join['mode']!r}")


def online_ou(join: dict[str, Any]) -> str:
    """The OU's full DN, as MachineObjectOU takes it."""
    return ou_dn(join["ou"], join["domain"]) if join["ou"] else ""


FILTERS = {
    "xml": xml,
    "win_password": win_password,
    "ps_encoded": ps_encoded,
    "cmd_safe": cmd_safe,
    "ps_quote": ps_quote,
}
GLOBALS = {
    "cmd_report": cmd_report,
    "ps_report": ps_report,
    "powershell_commands": powershell_commands,
    "first_logon": first_logon,
    "computer_name": computer_name,
    "join_account": join_account,
    "online_ou": online_ou,
}
