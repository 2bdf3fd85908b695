"""Samba's own tools against an Active Directory domain controller.

PureBoot creates, checks and deletes computer accounts with ``samba-tool
computer`` and makes offline domain-join blobs with ``net offlinejoin
provision`` (Debian package samba-common-bin), so no LDAP library of its own
is needed. Both sign in over LDAP/SMB with NTLM or Kerberos, signed and
sealed (``client ldap sasl wrapping = seal``).

The join credential never appears on a command line, in the environment or
in a log: each :class:`Session` writes it into files of a private temporary
folder (mode 0700, files 0600) that ``net`` reads with ``-A`` and
``samba-tool`` with ``PASSWD_FILE``, and removes the folder when it closes.
Every command gets PUREBOOT_SAMBA_COMMAND_PREFIX in front of it and at most
PUREBOOT_SAMBA_TIMEOUT seconds.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from django.conf import settings

#: A blob larger than this is refused (Windows' own are a few KiB).
MAX_BLOB_BYTES = 64 * 1024
TOOLS_PACKAGE = "samba-common-bin"
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_MAX_ERROR = 400


class SambaError(Exception):
    """A samba-tool or net command failed; the message names what and why (no secret)."""


def domain_dn(domain: str) -> str:
    """``corp.example.com`` -> ``DC=corp,DC=example,DC=com``."""
    return ",".join(f"DC={label}" for label in domain.strip(".").split("."))


def ou_dn(ou: str, domain: str) -> str:
    """The full DN of the OU an account goes into (``CN=Computers,<domain>`` when empty)."""
    base = domain_dn(domain)
    ou = ou.strip()
    if not ou:
        return f"CN=Computers,{base}"
    return ou if ou.lower().endswith(base.lower()) else f"{ou},{base}"


def normalise_blob(raw: bytes) -> str:
    """The base64 text unattend's ``AccountData`` takes, from a saved provisioning file.

    ``djoin /provision`` and ``net offlinejoin provision`` both write it as
    UTF-16LE with a byte-order mark (Samba adds a trailing NUL); plain ASCII
    or UTF-8 text is read as it is. Raises :class:`SambaError` for anything
    that is not base64 or is larger than :data:`MAX_BLOB_BYTES`.
    """
    if len(raw) > MAX_BLOB_BYTES:
        raise SambaError(f"the offline-join blob is {len(raw)} bytes, over {MAX_BLOB_BYTES}")
    try:
        if raw.startswith(b"\xff\xfe"):
            text = raw[2:].decode("utf-16-le")
        elif raw.startswith(b"\xfe\xff"):
            text = raw[2:].decode("utf-16-be")
        else:
            text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SambaError("the offline-join blob is not UTF-16 or UTF-8 text") from None
    text = "".join(text.replace("\x00", " ").split())
    if not text or len(text) % 4 or not _BASE64.fullmatch(text):
        raise SambaError("the offline-join blob is not base64 text")
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error:
        raise SambaError("the offline-join blob is not base64 text") from None
    return text


class Session:
    """Private files for talking to one domain as one account; a context manager.

    ``username`` may be ``user``, ``DOMAIN\\user`` or ``user@REALM``; a bare
    name is sent as ``user@REALM``.
    """

    def __init__(self, domain: str, username: str, password: str, *, dc: str = "") -> None:
        if any(c in password for c in "\r\n\x00") or any(c in username for c in "\r\n\x00"):
            raise SambaError("the join credential's username or password contains a line break")
        if not password:
            raise SambaError("the join credential has no password")
        self.domain = domain.strip(".").lower()
        self.realm = self.domain.upper()
        self.dc = dc
        self.username = (
            username if ("\\" in username or "@" in username) else (f"{username}@{self.realm}")
        )
        self._password = password
        self.dir: Path | None = None

    @property
    def ldap_url(self) -> str:
        return f"ldap://{self.dc or self.domain}"

    def __enter__(self) -> Session:
        self.dir = Path(tempfile.mkdtemp(prefix="pureboot-ad-"))  # mode 0700
        try:
            self._prepare()
        except BaseException:
            self.__exit__()  # never leave the password files behind
            raise
        return self

    def _prepare(self) -> None:
        for sub in ("private", "state", "cache", "lock", "run"):
            (self.dir / sub).mkdir(mode=0o700)
        self._write("password", self._password + "\n")
        self._write("auth", f"username = {self.username}\npassword = {self._password}\n")
        d = self.dir
        self._write(
            "smb.conf",
            "[global]\n"
            f"\trealm = {self.realm}\n"
            f"\tworkgroup = {self.realm.split('.')[0][:15]}\n"
            "\tsecurity = ads\n"
            "\tclient ldap sasl wrapping = seal\n"
            "\tdisable netbios = yes\n"
            "\tname resolve order = host\n"
            f"\tprivate dir = {d}/private\n"
            f"\tstate directory = {d}/state\n"
            f"\tcache directory = {d}/cache\n"
            f"\tlock directory = {d}/lock\n"
            f"\tpid directory = {d}/run\n"
            f"\tncalrpc dir = {d}/run/ncalrpc\n"
            f"\tlog file = {d}/log.%m\n",
        )

    def __exit__(self, *exc) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _write(self, name: str, text: str) -> None:
        fd = os.open(self.dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)

    def run(self, argv: list[str], what: str) -> subprocess.CompletedProcess:
        """Run ``argv`` (samba-tool or net) for ``what``; raises SambaError only when it
        cannot run or times out (the caller reads its return code)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.dir),
            "KRB5CCNAME": f"FILE:{self.dir}/ccache",
            "PASSWD_FILE": str(self.dir / "password"),
        }
        command = [*settings.PUREBOOT_SAMBA_COMMAND_PREFIX, *argv]
        timeout = settings.PUREBOOT_SAMBA_TIMEOUT
        try:
            return subprocess.run(
                command,
                env=env,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise SambaError(
                f"{what}: {command[0]} is not installed (Debian package: "
                f"{TOOLS_PACKAGE if command[0] == argv[0] else 'the command prefix tool'})"
            ) from None
        except subprocess.TimeoutExpired:
            raise SambaError(f"{what}: no answer within {timeout} s") from None

    def failure(self, what: str, result: subprocess.CompletedProcess) -> SambaError:
        """A SambaError with the tool's own words (its error lines), password removed."""
        lines = [
            line.strip()
            for line in (result.stderr + "\n" + result.stdout).splitlines()
            if line.strip()
        ]
        picked = [ln for ln in lines if re.match(r"(ERROR|Failed|Could not|Unable)", ln)]
        words = "; ".join(picked[:2] or lines[-1:]) or f"exit status {result.returncode}"
        words = words.replace(self._password, "[redacted]")[:_MAX_ERROR]
        return SambaError(f"{what}: {words}")

    def samba_tool(self, *args: str) -> list[str]:
        return [
            "samba-tool",
            *args,
            "-H",
            self.ldap_url,
            "-U",
            self.username,
            "-s",
            str(self.dir / "smb.conf"),
        ]

    # --- computer accounts ---------------------------------------------------------

    def show_computer(self, machine: str) -> dict[str, list[str]] | None:
        """The account's distinguishedName and objectClass, or None when there is none."""
        what = f"looking up computer {machine} in {self.domain}"
        result = self.run(
            self.samba_tool(
                "computer", "show", machine, "--attributes=distinguishedName,objectClass"
            ),
            what,
        )
        if result.returncode != 0:
            if "Unable to find computer" in result.stderr + result.stdout:
                return None
            raise self.failure(what, result)
        attributes: dict[str, list[str]] = {}
        for line in result.stdout.splitlines():
            name, sep, value = line.partition(":")
            if not sep:
                continue
            if value.startswith(":"):  # LDIF base64 value
                value = base64.b64decode(value[1:].strip()).decode("utf-8", "replace")
            attributes.setdefault(name.strip(), []).append(value.strip())
        return attributes

    def create_computer(self, machine: str, ou: str) -> None:
        what = f"creating computer {machine} in {ou}"
        argv = self.samba_tool("computer", "create", machine, f"--computerou={ou}")
        result = self.run(argv, what)
        if result.returncode != 0:
            raise self.failure(what, result)

    def delete_computer(self, machine: str) -> None:
        what = f"deleting computer {machine} from {self.domain}"
        result = self.run(self.samba_tool("computer", "delete", machine), what)
        if result.returncode != 0:
            raise self.failure(what, result)

    # --- offline join ---------------------------------------------------------------

    def provision(self, machine: str, ou: str) -> str:
        """``net offlinejoin provision`` for the (prestaged) account; the blob as base64 text.

        ``reuse`` sets a new machine password on the existing account; the
        blob carries it.
        """
        what = f"provisioning the offline join of {machine} in {self.domain}"
        blob = self.dir / "odj.txt"
        argv = [
            "net",
            "offlinejoin",
            "provision",
            f"domain={self.domain}",
            f"machine_name={machine}",
            f"machine_account_ou={ou}",
            *([f"dcname={self.dc}"] if self.dc else []),
            "reuse",
            f"savefile={blob}",
            "-s",
            str(self.dir / "smb.conf"),
            "-A",
            str(self.dir / "auth"),
        ]
        result = self.run(argv, what)
        if result.returncode != 0:
            raise self.failure(what, result)
        try:
            size = blob.stat().st_size
        except FileNotFoundError:
            raise SambaError(f"{what}: net wrote no blob") from None
        if size > MAX_BLOB_BYTES:
            raise SambaError(f"{what}: the blob is {size} bytes, over {MAX_BLOB_BYTES}")
        return normalise_blob(blob.read_bytes())
