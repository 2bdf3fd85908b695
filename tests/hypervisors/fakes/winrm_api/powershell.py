"""What the fake host makes of a command line: ``powershell -encodedcommand``
decoded, PureBoot's loader unwrapped, the script recognised, and the answers
Windows PowerShell gives on stdout and stderr.

The fake runs no PowerShell. It accepts exactly the reviewed scripts of
``hypervisors/drivers/hyperv_scripts`` (byte for byte, after the one
parameter line) inside exactly the driver's loader, and refuses anything
else, so the tests prove that PureBoot sends nothing else.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

SCRIPT_DIR = Path(__file__).resolve().parents[4] / "hypervisors" / "drivers" / "hyperv_scripts"
# cmd.exe, which runs WinRM commands, refuses longer command lines.
MAX_COMMAND_LINE = 8191

_COMMAND = re.compile(r"powershell(?:\.exe)? -encodedcommand ([A-Za-z0-9+/=]+)", re.I)
# The loader and parameter line, as the driver's reviewers approved them.
_LOADER = re.compile(
    re.escape("$b = [Convert]::FromBase64String('")
    + r"([A-Za-z0-9+/=]+)"
    + re.escape(
        "'); $z = New-Object IO.Compression.GZipStream((New-Object IO.MemoryStream(, $b)), "
        "[IO.Compression.CompressionMode]::Decompress); "
        "$s = (New-Object IO.StreamReader($z, [Text.Encoding]::UTF8)).ReadToEnd(); "
        "& ([ScriptBlock]::Create($s))"
    )
)
_PARAMS = re.compile(
    re.escape(
        "$p = ConvertFrom-Json ([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('"
    )
    + r"([A-Za-z0-9+/=]*)"
    + re.escape("')))")
    + "\n"
)
_CLIXML_NS = "http://schemas.microsoft.com/powershell/2004/04"


class Refused(Exception):
    """Not a command PureBoot may send; the message is what the fake answers."""


def reviewed_scripts() -> dict[str, str]:
    """Script text -> name, for every reviewed script."""
    return {path.read_text(encoding="utf-8"): path.stem for path in SCRIPT_DIR.glob("*.ps1")}


def decode(command_line: str, scripts: dict[str, str]) -> tuple[str, str, dict[str, Any]]:
    """The reviewed script a command line runs (its name and text) and its
    parameters; :class:`Refused` for anything else."""
    found = _COMMAND.fullmatch(command_line.strip())
    if not found:
        word = command_line.split(" ", 1)[0]
        raise Refused(
            f"'{word}' is not recognized as an internal or external command,\r\n"
            "operable program or batch file."
        )
    try:
        text = base64.b64decode(found.group(1), validate=True).decode("utf-16-le")
    except (binascii.Error, UnicodeDecodeError):
        raise Refused(
            "Cannot process the command because the value of -EncodedCommand is not valid."
        ) from None
    loader = _LOADER.fullmatch(text)
    if not loader:
        raise Refused("fake WinRM host: this is not PureBoot's script loader; refused")
    try:
        body = gzip.decompress(base64.b64decode(loader.group(1), validate=True)).decode("utf-8")
    except (binascii.Error, OSError, EOFError, UnicodeDecodeError):
        raise Refused("fake WinRM host: the loader's payload does not decompress") from None
    params = _PARAMS.match(body)
    if not params:
        raise Refused("fake WinRM host: the script does not start with the parameter line")
    text = body[params.end() :]
    name = scripts.get(text)
    if name is None:
        raise Refused("fake WinRM host: not one of the reviewed scripts; refused")
    document = base64.b64decode(params.group(1), validate=True).decode("utf-8")
    return name, text, (json.loads(document) if document else {})


def _clixml_text(text: str) -> str:
    """Escape as PowerShell's serializer does: XML entities, and control
    characters as ``_xHHHH_``."""
    text = escape(text.replace("_x", "_x005F_x"))
    return re.sub(r"[\x00-\x1f]", lambda m: f"_x{ord(m.group()):04X}_", text)


_PROGRESS = (
    '<Obj S="progress" RefId="0"><TN RefId="0">'
    "<T>System.Management.Automation.PSCustomObject</T>"
    '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record">'
    "<AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC>"
    "<T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>"
)


def stderr_clixml(error: str = "") -> str:
    """What powershell.exe writes to a redirected stderr: the progress record
    of loading a module (even when the script succeeds), then an uncaught
    ``throw $error`` in its error view, one ``<S S="Error">`` per line."""
    lines = []
    if error:
        lines = [
            error,
            "At line:1 char:156",
            "+ ... y.Category, $m }; throw $m }",
            "+                                                    ~~~~~~~~",
            f"    + CategoryInfo          : OperationStopped: ({error[:40]}:String) [], "
            "RuntimeException",
            f"    + FullyQualifiedErrorId : {error}",
            " ",
        ]
    body = "".join(f'<S S="Error">{_clixml_text(item + chr(13) + chr(10))}</S>' for item in lines)
    return f'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="{_CLIXML_NS}">{_PROGRESS}{body}</Objs>'
