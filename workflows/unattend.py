"""Check a Windows answer file (autounattend.xml) for what Windows Setup refuses or misreads.

Setup has no offline validator (Windows System Image Manager needs Windows
and the image's catalog), so this checks the rules Setup applies whatever
the image: the file is well-formed XML (parsed with defusedxml: no entities,
no DTD) with the root ``unattend`` in Setup's namespace; passes are the
seven Setup knows, each once; every component carries the five attributes
with values Setup accepts; the elements a network install needs are there
(windowsPE ``Microsoft-Windows-Setup`` with ``ImageInstall`` and
``UserData/AcceptEula`` true, oobeSystem ``Microsoft-Windows-Shell-Setup``);
a computer name is a NetBIOS name (or ``*``); the values Setup requires in
ASCII are ASCII; every password Setup reads encoded is written encoded
(``PlainText`` false, base64 of UTF-16LE ending in the element's name), and
first-logon commands keep to Setup's limits.

Each problem names the element's path, e.g.
``settings[oobeSystem]/Microsoft-Windows-Shell-Setup/UserAccounts/AdministratorPassword``.
"""

from __future__ import annotations

import base64
import binascii
import re
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

NAMESPACE = "urn:schemas-microsoft-com:unattend"
PASSES = (
    "windowsPE",
    "offlineServicing",
    "generalize",
    "specialize",
    "auditSystem",
    "auditUser",
    "oobeSystem",
)
ARCHITECTURES = ("x86", "amd64", "arm", "arm64", "wow64")
PUBLIC_KEY_TOKEN = "31bf3856ad364e35"
COMPONENT_ATTRIBUTES = {
    "processorArchitecture": ARCHITECTURES,
    "publicKeyToken": (PUBLIC_KEY_TOKEN,),
    "language": ("neutral",),
    "versionScope": ("nonSxS",),
}
# Passwords Setup reads encoded when PlainText is false (what WSIM hides): element path
# inside Microsoft-Windows-Shell-Setup -> the suffix appended before encoding.
ENCODED_PASSWORDS = {
    ("UserAccounts", "AdministratorPassword"): "AdministratorPassword",
    ("UserAccounts", "LocalAccounts", "LocalAccount", "Password"): "Password",
    ("AutoLogon", "Password"): "Password",
}
# Values Setup takes in ASCII only.
ASCII_ONLY = (
    "ComputerName",
    "JoinDomain",
    "MachineObjectOU",
    "Credentials/Domain",
    "Credentials/Username",
)
_COMPUTER_NAME = re.compile(r"[A-Za-z0-9-]{1,15}")
COMMAND_LINE_MAX = 1024
DESCRIPTION_MAX = 256
ORDER_MAX = 500


def _local(element: Element) -> str:
    return element.tag.rpartition("}")[2]


def _ns(tag: str) -> str:
    return f"{{{NAMESPACE}}}{tag}"


def _text(element: Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _find(element: Element, path: str) -> Element | None:
    return element.find("/".join(_ns(part) for part in path.split("/")))


def check_unattend(xml_text: str) -> list[str]:
    """The problems Setup would have with ``xml_text`` (empty: none found)."""
    try:
        root = fromstring(xml_text.encode("utf-8") if isinstance(xml_text, str) else xml_text)
    except (ParseError, DefusedXmlException) as exc:
        return [f"not well-formed XML: {exc}"]
    if root.tag != _ns("unattend"):
        return [f"{root.tag}: the root must be unattend in the namespace {NAMESPACE}"]
    problems: list[str] = []
    passes: dict[str, Element] = {}
    for settings in root:
        if settings.tag != _ns("settings"):
            if _local(settings) != "servicing" or not settings.tag.startswith(f"{{{NAMESPACE}}}"):
                problems.append(f"{settings.tag}: not an element of unattend")
            continue
        name = settings.get("pass", "")
        where = f"settings[{name}]"
        if name not in PASSES:
            problems.append(f"{where}: not a configuration pass; Setup has {', '.join(PASSES)}")
            continue
        if name in passes:
            problems.append(f"{where}: the pass appears twice")
            continue
        passes[name] = settings
        problems += _check_pass(settings, where)
    problems += _required(passes)
    return problems


def _check_pass(settings: Element, where: str) -> list[str]:
    problems = []
    seen: set[tuple[str, str]] = set()
    for component in settings:
        name = component.get("name", "")
        here = f"{where}/{name or '(component without a name)'}"
        if component.tag != _ns("component"):
            problems.append(f"{where}/{component.tag}: a pass holds only component elements")
            continue
        if not name:
            problems.append(f"{here}: the component has no name attribute")
        for attribute, allowed in COMPONENT_ATTRIBUTES.items():
            value = component.get(attribute)
            if value not in allowed:
                problems.append(
                    f"{here}: {attribute} must be {' or '.join(allowed)}, got {value!r}"
                )
        key = (name, component.get("processorArchitecture", ""))
        if key in seen:
            problems.append(f"{here}: the component appears twice in this pass")
        seen.add(key)
        problems += _check_values(component, here)
    return problems


def _paths(component: Element) -> dict[Element, str]:
    """Each element below ``component`` -> its path from the component."""
    paths: dict[Element, str] = {}
    stack = [(child, _local(child)) for child in component]
    while stack:
        element, path = stack.pop()
        paths[element] = path
        stack.extend((child, f"{path}/{_local(child)}") for child in element)
    return paths


def _check_values(component: Element, here: str) -> list[str]:
    problems = []
    paths = _paths(component)
    for path in ASCII_ONLY:
        for element in component.iterfind(".//" + "/".join(_ns(p) for p in path.split("/"))):
            if not _text(element).isascii():
                problems.append(f"{here}/{paths[element]}: Setup takes ASCII characters only here")
    for element in component.iter(_ns("ComputerName")):
        name = _text(element)
        if name != "*" and (
            not _COMPUTER_NAME.fullmatch(name)
            or name.isdigit()
            or name[0] == "-"
            or name[-1] == "-"
        ):
            problems.append(
                f"{here}/{paths[element]}: {name[:40]!r} is not a computer name: 1 to 15 "
                "letters, digits and hyphens, not only digits, no hyphen first or last (or * "
                "for a random name)"
            )
    if component.get("name") == "Microsoft-Windows-Shell-Setup":
        for path, suffix in ENCODED_PASSWORDS.items():
            found = component.iterfind("/".join(_ns(p) for p in path))
            for element in found:
                problems += _check_encoded(element, f"{here}/{'/'.join(path)}", suffix)
        problems += _check_commands(component, here)
    return problems


def _check_encoded(element: Element, here: str, suffix: str) -> list[str]:
    if _text(_find(element, "PlainText")).lower() != "false":
        return [f"{here}: write the password encoded, with PlainText false"]
    value = _text(_find(element, "Value"))
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-16-le")
    except (binascii.Error, UnicodeDecodeError):
        return [f"{here}/Value: not base64 of UTF-16LE text"]
    if not decoded.endswith(suffix):
        return [f"{here}/Value: an encoded password ends in {suffix!r} before encoding"]
    return []


def _check_commands(component: Element, here: str) -> list[str]:
    problems = []
    orders: set[str] = set()
    path = "FirstLogonCommands/SynchronousCommand"
    for command in component.iterfind("/".join(_ns(p) for p in path.split("/"))):
        order = _text(_find(command, "Order"))
        where = f"{here}/{path}[{order}]"
        if not order.isdigit() or not 1 <= int(order) <= ORDER_MAX:
            problems.append(f"{where}/Order: a number from 1 to {ORDER_MAX}")
        elif order in orders:
            problems.append(f"{where}/Order: used twice")
        orders.add(order)
        line = _text(_find(command, "CommandLine"))
        if not line or len(line) > COMMAND_LINE_MAX:
            problems.append(f"{where}/CommandLine: 1 to {COMMAND_LINE_MAX} characters")
        if len(_text(_find(command, "Description"))) > DESCRIPTION_MAX:
            problems.append(f"{where}/Description: at most {DESCRIPTION_MAX} characters")
    return problems


def _component(passes: dict[str, Element], name: str, component: str) -> Element | None:
    settings = passes.get(name)
    if settings is None:
        return None
    return next((c for c in settings if c.get("name") == component), None)


def _required(passes: dict[str, Element]) -> list[str]:
    problems = []
    setup = _component(passes, "windowsPE", "Microsoft-Windows-Setup")
    where = "settings[windowsPE]/Microsoft-Windows-Setup"
    if setup is None:
        problems.append(f"{where}: missing (the windowsPE pass installs the image)")
    else:
        if _find(setup, "ImageInstall") is None:
            problems.append(f"{where}/ImageInstall: missing (which image, onto which disk)")
        if _text(_find(setup, "UserData/AcceptEula")).lower() != "true":
            problems.append(f"{where}/UserData/AcceptEula: must be true, or Setup stops to ask")
    if _component(passes, "oobeSystem", "Microsoft-Windows-Shell-Setup") is None:
        problems.append(
            "settings[oobeSystem]/Microsoft-Windows-Shell-Setup: missing (OOBE would stop to ask)"
        )
    return problems
