"""Reading and changing Windows images (WIM) with wimlib (``wimlib-imagex``, Debian ``wimtools``).

A WIM's image list (index, name, edition, architecture) is what a Windows
workflow's ``edition`` is checked against; it is read from the WIM's XML data
with ``wimlib-imagex info --xml``. The WIM may come from an ISO anyone could
have made, so the XML is size-capped and parsed with defusedxml (no entity
expansion), and anything unexpected is a WimError naming the file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

WIMLIB = "wimlib-imagex"
# The XML of a real install.wim with a dozen editions is about 30 KB.
MAX_XML_BYTES = 4 * 1024 * 1024
MAX_IMAGES = 256
TIMEOUT_SECONDS = 300
# WINDOWS/ARCH in a WIM's XML: PROCESSOR_ARCHITECTURE values.
ARCHES = {"0": "x86", "5": "arm", "9": "amd64", "12": "arm64"}


class WimError(Exception):
    """A WIM that cannot be read or changed, or wimlib missing."""


@dataclass(frozen=True)
class WimImage:
    index: int
    name: str
    description: str = ""
    edition_id: str = ""
    arch: str = ""
    size: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _wimlib() -> str:
    path = shutil.which(WIMLIB)
    if path is None:
        raise WimError(f"{WIMLIB} not found (Debian package: wimtools)")
    return path


def _run(args: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(
            [_wimlib(), *args], capture_output=True, timeout=TIMEOUT_SECONDS, text=True
        )
    except subprocess.TimeoutExpired:
        raise WimError(f"{what}: wimlib took more than {TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        err = done.stderr.strip()
        raise WimError(f"{what}: {err.splitlines()[-1] if err else 'failed'}")
    return done


def _run_capped(args: list[str], what: str, limit: int) -> bytes:
    """wimlib's standard output, stopping it once it passes ``limit`` bytes (a hostile
    WIM's XML data is not read into memory whole)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([_wimlib(), *args], stdout=subprocess.PIPE, stderr=err)
        expired = threading.Event()
        timer = threading.Timer(TIMEOUT_SECONDS, lambda: (expired.set(), proc.kill()))
        timer.start()
        try:
            out = proc.stdout.read(limit + 1)
            if len(out) > limit:
                proc.kill()
            returncode = proc.wait()
        finally:
            timer.cancel()
            proc.stdout.close()
        if len(out) > limit:
            raise WimError(f"{what}: its XML data is over {limit} bytes")
        if expired.is_set():
            raise WimError(f"{what}: wimlib took more than {TIMEOUT_SECONDS} s")
        if returncode != 0:
            err.seek(0)
            lines = err.read(64 * 1024).decode("utf-8", "replace").strip().splitlines()
            raise WimError(f"{what}: {lines[-1] if lines else 'failed'}")
    return out


def _number(text: str) -> bool:
    """ASCII digits of a sane length: ``str.isdigit`` alone takes "²", which int() refuses,
    and int() refuses thousands of digits."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _text(element, tag: str) -> str:
    found = element.find(tag)
    return (found.text or "").strip() if found is not None else ""


def images(path: Path) -> list[WimImage]:
    """The images in the WIM at ``path``, in index order."""
    shown = Path(path).name
    raw = _run_capped(["info", str(path), "--xml"], f"{shown} is not a readable WIM", MAX_XML_BYTES)
    return parse_xml(raw, shown)


def parse_xml(raw: bytes, shown: str) -> list[WimImage]:
    """The images a WIM's XML data (UTF-16 with a BOM, as wimlib prints it) lists."""
    if len(raw) > MAX_XML_BYTES:
        raise WimError(f"{shown}: its XML data is over {MAX_XML_BYTES} bytes")
    try:
        xml = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode()
        root = ElementTree.fromstring(xml)
    except (UnicodeDecodeError, ElementTree.ParseError, DefusedXmlException) as exc:
        raise WimError(f"{shown}: its XML data cannot be read ({exc})") from None
    found = root.findall("IMAGE")
    if not found:
        raise WimError(f"{shown} holds no image")
    if len(found) > MAX_IMAGES:
        raise WimError(f"{shown} holds {len(found)} images; at most {MAX_IMAGES} are read")
    out = []
    for element in found:
        index = element.get("INDEX", "")
        if not _number(index):
            raise WimError(f"{shown}: an image has the index {index[:20]!r}")
        name = _text(element, "NAME")
        if not name or len(name) > 256 or re.search(r"[\x00-\x1f]", name):
            raise WimError(f"{shown}: image {index} has no usable name")
        size = _text(element, "TOTALBYTES")
        out.append(
            WimImage(
                index=int(index),
                name=name,
                description=_text(element, "DESCRIPTION")[:1000],
                edition_id=_text(element, "WINDOWS/EDITIONID")[:100],
                arch=ARCHES.get(_text(element, "WINDOWS/ARCH"), ""),
                size=int(size) if _number(size) else 0,
            )
        )
    names = [i.name for i in out]
    if len(set(names)) != len(names):
        raise WimError(f"{shown}: two images share a name; an edition is chosen by name")
    return sorted(out, key=lambda i: i.index)


def boot_index(path: Path) -> int:
    """The WIM's boot image index (0: none marked)."""
    done = _run(["info", str(path), "--header"], f"{Path(path).name} is not a readable WIM")
    match = re.search(r"^Boot Index\s*=\s*(\d+)", done.stdout, re.M)
    return int(match[1]) if match else 0


def add_folder(path: Path, index: int, source: Path, target: str) -> None:
    """Add the folder ``source`` at ``target`` (``/Drivers/x``) inside image ``index``."""
    parts = target.split("/")[1:]
    if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", target) or {".", ".."} & set(parts):
        raise WimError(f"not a folder path inside a WIM: {target!r}")
    if re.search(r"['\n\r\\]", str(source)):
        raise WimError(f"a folder path wimlib cannot quote: {str(source)[:80]!r}")
    _run(
        ["update", str(path), str(index), f"--command=add '{source}' '{target}'"],
        f"adding {source.name} to {Path(path).name}",
    )


def inject_drivers(path: Path, folder: Path, slug: str) -> int:
    """Add the INF driver folder ``folder`` at ``/Drivers/<slug>`` in the WIM's boot
    image (its boot index; image 1 when none is marked), changing ``path`` in place.
    Returns the image index changed. Raises WimError."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,99}", slug):
        raise WimError(f"not a driver folder name: {slug!r}")
    index = boot_index(path) or 1
    add_folder(path, index, folder, f"/Drivers/{slug}")
    return index
