"""A real OpenLDAP server (Debian package ``slapd``) for the sign-in tests.

:class:`Slapd` writes a ``slapd.conf`` (mdb database, the core, cosine,
inetOrgPerson and NIS schemas from ``/etc/ldap/schema``) into a temporary
folder, starts ``slapd`` as the current user on a free loopback port, and
loads entries with ``ldapadd``/``ldapmodify`` (Debian package ``ldap-utils``).
Passwords are made up per run; nothing here is a fixed secret.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.processes import stop

SLAPD = os.environ.get("PUREBOOT_SLAPD", "/usr/sbin/slapd")
SCHEMA_DIR = Path("/etc/ldap/schema")
BASE = "dc=example,dc=org"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"


def require_tools() -> None:
    """Fail (never skip) naming the Debian package that is missing."""
    if not Path(SLAPD).exists():
        pytest.fail(f"slapd not found at {SLAPD} (Debian package: slapd)")
    for tool in ("ldapadd", "ldapmodify"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} not found (Debian package: ldap-utils)")
    for schema in ("core", "cosine", "inetorgperson", "nis"):
        if not (SCHEMA_DIR / f"{schema}.schema").exists():
            pytest.fail(f"{SCHEMA_DIR}/{schema}.schema missing (Debian package: slapd)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssha(password: str) -> str:
    """An LDAP ``{SSHA}`` password hash, as ``slappasswd`` makes."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


class Slapd:
    """One slapd process with the example.org tree; see the module docstring."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.admin_dn = f"cn=admin,{BASE}"
        self.admin_password = secrets.token_urlsafe(16)
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "slapd.log"

    def start(self) -> None:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "slapd.conf"
        schemas = "\n".join(
            f"include {SCHEMA_DIR / name}.schema"
            for name in ("core", "cosine", "inetorgperson", "nis")
        )
        conf.write_text(
            f"""{schemas}
pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{BASE}"
rootdn "{self.admin_dn}"
rootpw {ssha(self.admin_password)}
directory {data}
# People may bind with their password; only bound users (the service
# account) may search, as in a real directory.
access to attrs=userPassword by anonymous auth by self write by * none
access to * by users read by * none
"""
        )
        with open(self.log, "wb") as log:
            # -d keeps slapd in the foreground (stats logging) so we own the process.
            self.proc = subprocess.Popen(
                [SLAPD, "-f", str(conf), "-h", f"{self.uri}/", "-d", "256"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"slapd exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"slapd did not listen on {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        stop(self.proc)

    def _ldap(self, tool: str, ldif: str) -> None:
        result = subprocess.run(
            [tool, "-x", "-H", self.uri, "-D", self.admin_dn, "-w", self.admin_password],
            input=ldif,
            text=True,
            capture_output=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise AssertionError(f"{tool} failed ({result.returncode}): {result.stderr}")

    def add(self, ldif: str) -> None:
        self._ldap("ldapadd", ldif)

    def modify(self, ldif: str) -> None:
        self._ldap("ldapmodify", ldif)

    # --- the example tree ---------------------------------------------------
    def populate(self, people: dict[str, str], groups: dict[str, list[str]]) -> None:
        """Add ``people`` (uid -> password) and ``groups`` (cn -> member uids)."""
        entries = [
            f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\n"
            "dc: example\no: Example\n",
            f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        ]
        for uid, password in people.items():
            entries.append(
                f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                f"cn: {uid.title()} Example\ngivenName: {uid.title()}\nsn: Example\n"
                f"mail: {uid}@example.org\nuserPassword: {ssha(password)}\n"
            )
        for cn, members in groups.items():
            lines = "".join(f"member: {self.user_dn(uid)}\n" for uid in members)
            entries.append(f"dn: {self.group_dn(cn)}\nobjectClass: groupOfNames\ncn: {cn}\n{lines}")
        self.add("\n".join(entries))

    @staticmethod
    def user_dn(uid: str) -> str:
        return f"uid={uid},{PEOPLE}"

    @staticmethod
    def group_dn(cn: str) -> str:
        return f"cn={cn},{GROUPS}"

    def set_members(self, cn: str, uids: list[str]) -> None:
        """Replace a group's members (groupOfNames needs at least one)."""
        lines = "".join(f"member: {self.user_dn(uid)}\n" for uid in uids)
        self.modify(f"dn: {self.group_dn(cn)}\nchangetype: modify\nreplace: member\n{lines}")
