"""The Windows steps of a workflow (``windows_install``, ``domain_join``): their
parameters and the rules across them.

Each value is checked here against what Windows Setup accepts, so a workflow
that Setup would stop on is refused when it is saved, naming the field. The
credentials they name are checked against the credential store at save time
(workflows.checks), the edition against the boot image's install.wim.
"""

from __future__ import annotations

import re
from typing import Any

from .params import Param, ParamError

#: What a credential's name may be (credentials.models.Credential.name).
_CREDENTIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# BCP 47 tags as Windows names its languages: en-US, de-DE, sr-Latn-RS, zh-CN.
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}")
# An input locale can also be a language id and keyboard layout: 0409:00000409.
_KEYBOARD = re.compile(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{8}")
# Windows time zone ids (tzutil /l): "UTC", "W. Europe Standard Time", "UTC-11",
# "Pacific Standard Time (Mexico)".
_TIME_ZONE = re.compile(r"[A-Za-z0-9 .+()-]{1,64}")
_NETBIOS = re.compile(r"[A-Za-z0-9-]{1,15}")
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# One relative distinguished name: attribute=value, the value with RFC 4514 escapes.
_RDN = re.compile(
    r'[A-Za-z][A-Za-z0-9-]*=(?:[^,+"\\<>;=\x00-\x1f]|\\[,+"\\<>;=# ]|\\[0-9A-Fa-f]{2})+'
)

#: Setup's limit on one FirstLogonCommands command line (characters).
COMMAND_LINE_MAX = 1024
MAX_FIRST_LOGON_COMMANDS = 64
MAX_POWERSHELL_SCRIPTS = 16
MAX_POWERSHELL_CHARS = 16384


def computer_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Windows computer name (NetBIOS rule), or None."""
    if not _NETBIOS.fullmatch(name):
        return (
            f"{name[:40]!r} is not a Windows computer name: 1 to 15 letters (A-Z), digits "
            "and hyphens"
        )
    if name.isdigit():
        return f"{name!r} is not a Windows computer name: it must not be only digits"
    if name.startswith("-") or name.endswith("-"):
        return f"{name!r} is not a Windows computer name: it must not start or end with a hyphen"
    return None


def dns_name_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS domain name such as corp.example.com, or None."""
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_DNS_LABEL.fullmatch(x) for x in labels):
        return (
            f"{name[:60]!r} is not a DNS domain name such as corp.example.com (labels of "
            "letters, digits and hyphens, separated by dots)"
        )
    if labels[-1].isdigit():
        return f"{name!r} is not a DNS domain name: its last label is a number"
    return None


def dn_problem(dn: str) -> str | None:
    """Why ``dn`` is not an LDAP distinguished name (OU=Workstations,DC=corp,...), or None."""
    parts = re.split(r"(?<!\\),", dn)
    if not all(_RDN.fullmatch(part.strip()) for part in parts):
        return (
            f"{dn[:80]!r} is not an LDAP distinguished name such as "
            "OU=Workstations,DC=corp,DC=example,DC=com"
        )
    return None


def windows_install_params() -> tuple[Param, ...]:
    return (
        Param(
            "edition",
            "str",
            required=True,
            max_length=128,
            help="The image in the boot image's install.wim (wiminfo), e.g. Windows 11 Pro",
        ),
        Param(
            "admin_credential",
            "str",
            required=True,
            max_length=100,
            help="Credential (kind windows_admin) whose password is the local Administrator's",
        ),
        Param(
            "product_key_credential",
            "str",
            default="",
            max_length=100,
            help="Credential (kind product_key) whose password is the product key; empty: none",
        ),
        Param("locale", "str", default="en-US", max_length=32, help="Language tag, e.g. de-DE"),
        Param(
            "input_locale",
            "str",
            default="",
            max_length=32,
            help="Keyboard: a language tag or 0409:00000409; empty: the locale's",
        ),
        Param(
            "timezone",
            "str",
            default="UTC",
            max_length=64,
            help="A Windows time zone id (tzutil /l), e.g. W. Europe Standard Time",
        ),
        Param("disk", "int", default=0, minimum=0, maximum=63, help="Disk number; it is wiped"),
        Param(
            "computer_name",
            "str",
            default="",
            max_length=63,
            help="Empty: the node's host name (first label), upper-cased",
        ),
        Param("organization", "str", default="", max_length=256),
        Param(
            "first_logon_commands",
            "list[str]",
            default=(),
            max_length=COMMAND_LINE_MAX,
            help="Command lines run once at the first logon, as written (cmd /c ... for cmd's "
            "built-ins)",
        ),
        Param(
            "post_install_powershell",
            "list[str]",
            default=(),
            max_length=MAX_POWERSHELL_CHARS,
            help="PowerShell script texts run once at the first logon, after the commands",
        ),
    )


def _credential_name(value: str, path: str) -> None:
    if not _CREDENTIAL.fullmatch(value):
        raise ParamError(path, "is the name of a stored credential (letters, digits, . _ -)")


def _control_free(value: str, path: str) -> None:
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ParamError(path, "must not contain line breaks or control characters")


def check_windows_install(params: dict[str, Any], path: str) -> None:
    """The rules Windows Setup puts on windows_install's values."""
    edition = params["edition"]
    if not edition.strip():
        raise ParamError(f"{path}.edition", "is required: an image name from install.wim")
    _control_free(edition, f"{path}.edition")
    _credential_name(params["admin_credential"], f"{path}.admin_credential")
    if params["product_key_credential"]:
        _credential_name(params["product_key_credential"], f"{path}.product_key_credential")
    if not _LANGUAGE.fullmatch(params["locale"]):
        raise ParamError(f"{path}.locale", "must be a Windows language tag such as en-US or de-DE")
    keyboard = params["input_locale"]
    if keyboard and not (_LANGUAGE.fullmatch(keyboard) or _KEYBOARD.fullmatch(keyboard)):
        raise ParamError(
            f"{path}.input_locale",
            "must be a language tag such as de-DE, or a language and keyboard id such as "
            "0407:00000407",
        )
    if not _TIME_ZONE.fullmatch(params["timezone"]):
        raise ParamError(
            f"{path}.timezone",
            "must be a Windows time zone id (tzutil /l) such as UTC or W. Europe Standard Time: "
            "letters, digits, spaces and . + - ( )",
        )
    name = params["computer_name"]
    if name and (problem := computer_name_problem(name)):
        raise ParamError(f"{path}.computer_name", problem)
    _control_free(params["organization"], f"{path}.organization")
    commands = params["first_logon_commands"]
    if len(commands) > MAX_FIRST_LOGON_COMMANDS:
        raise ParamError(
            f"{path}.first_logon_commands", f"at most {MAX_FIRST_LOGON_COMMANDS} commands"
        )
    for index, command in enumerate(commands):
        here = f"{path}.first_logon_commands[{index}]"
        if not command.strip():
            raise ParamError(here, "is empty")
        _control_free(command, here)
    scripts = params["post_install_powershell"]
    if len(scripts) > MAX_POWERSHELL_SCRIPTS:
        raise ParamError(
            f"{path}.post_install_powershell", f"at most {MAX_POWERSHELL_SCRIPTS} scripts"
        )
    for index, script in enumerate(scripts):
        if not script.strip():
            raise ParamError(f"{path}.post_install_powershell[{index}]", "is empty")


def domain_join_params() -> tuple[Param, ...]:
    return (
        Param("domain", "str", required=True, max_length=253, help="DNS name of the AD domain"),
        Param(
            "mode",
            "choice",
            default="online",
            choices=("online", "offline"),
            help="online: Windows joins with the credential during setup; offline: PureBoot "
            "provisions the account and Windows joins without contacting the domain",
        ),
        Param(
            "ou",
            "str",
            default="",
            max_length=1024,
            help="LDAP DN of the OU for the computer account; empty: CN=Computers",
        ),
        Param(
            "credential",
            "str",
            default="",
            max_length=100,
            help="Name of a stored credential (kind domain_join)",
        ),
        Param(
            "dc",
            "str",
            default="",
            max_length=253,
            help="Domain controller host name or address for offline provisioning; empty: "
            "found through DNS",
        ),
    )


def check_domain_join(params: dict[str, Any], path: str) -> None:
    """domain_join: a DNS domain, an LDAP DN, a credential, a host name or address."""
    if problem := dns_name_problem(params["domain"]):
        raise ParamError(f"{path}.domain", problem)
    if params["ou"] and (problem := dn_problem(params["ou"])):
        raise ParamError(f"{path}.ou", problem)
    if not params["credential"]:
        raise ParamError(
            f"{path}.credential",
            f"is required for a {params['mode']} join: a stored credential of kind domain_join "
            "(the account that creates the computer account)",
        )
    _credential_name(params["credential"], f"{path}.credential")
    dc = params["dc"].lower()
    domain = params["domain"].lower().rstrip(".")
    if dc:
        labels = dc.split(".")
        if len(dc) > 253 or not all(_DNS_LABEL.fullmatch(x) for x in labels):
            raise ParamError(f"{path}.dc", "must be a domain controller's host name")
        if not dc.endswith("." + domain):
            # The join account's password goes to this host: only one of its own domain,
            # as the credential's scope names it (checked at save and before each use).
            raise ParamError(f"{path}.dc", f"must be a host name in {domain} (e.g. dc1.{domain})")
