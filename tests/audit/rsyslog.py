"""A real rsyslog (Debian packages ``rsyslog`` and ``rsyslog-gnutls``) for the SIEM tests.

:class:`Rsyslog` writes its own ``rsyslog.conf`` into a temporary folder:
either a plain TCP input (``imptcp``) or a TLS one (``imtcp`` with the
``gtls`` driver, certificates made by :func:`make_pki` with
``cryptography``), and one file action writing each received message in
RFC 5424 form. It starts ``rsyslogd -n`` on a free loopback port, and can be
stopped and started again on the same port and file.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.processes import stop

RSYSLOGD = "/usr/sbin/rsyslogd"
MODULE_DIR = Path("/usr/lib/x86_64-linux-gnu/rsyslog")


def require_tools(tls: bool) -> None:
    """Fail (never skip) naming the Debian package that is missing."""
    if not Path(RSYSLOGD).exists():
        pytest.fail(f"rsyslogd not found at {RSYSLOGD} (Debian package: rsyslog)")
    if tls and not (MODULE_DIR / "lmnsd_gtls.so").exists():
        pytest.fail(f"{MODULE_DIR}/lmnsd_gtls.so missing (Debian package: rsyslog-gnutls)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PKI:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_pki(directory: Path, label: str = "test") -> PKI:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"PureBoot {label} CA"))
        .issuer_name(_name(f"PureBoot {label} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(cn: str, server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [
                        x509.ExtendedKeyUsageOID.SERVER_AUTH
                        if server
                        else x509.ExtendedKeyUsageOID.CLIENT_AUTH
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(ca_key, hashes.SHA256()), key

    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    server_cert, server_key = issue("localhost", server=True)
    client_cert, client_key = issue("pureboot-forwarder", server=False)
    (directory / "server.pem").write_bytes(server_cert.public_bytes(pem))
    _write_key(server_key, directory / "server.key")
    (directory / "client.pem").write_bytes(client_cert.public_bytes(pem))
    _write_key(client_key, directory / "client.key")
    return PKI(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )


class Rsyslog:
    """One rsyslogd receiving on a loopback port; see the module docstring."""

    def __init__(self, directory: Path, pki: PKI | None = None) -> None:
        require_tools(tls=pki is not None)
        self.directory = directory
        self.pki = pki
        self.port = free_port()
        self.output = directory / "received.log"
        self.config = directory / "rsyslog.conf"
        self.process: subprocess.Popen | None = None
        self._write_config()

    def _write_config(self) -> None:
        work = self.directory / "work"
        work.mkdir(exist_ok=True)
        lines = [
            f'global(workDirectory="{work}" maxMessageSize="64k"',
        ]
        if self.pki:
            lines[0] += (
                f' defaultNetstreamDriverCAFile="{self.pki.ca}"'
                f' defaultNetstreamDriverCertFile="{self.pki.server_cert}"'
                f' defaultNetstreamDriverKeyFile="{self.pki.server_key}"'
            )
            lines[0] += ")"
            # x509/certvalid: the forwarder must present a certificate from the CA.
            lines += [
                'module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1"'
                ' streamDriver.authMode="x509/certvalid")',
                f'input(type="imtcp" port="{self.port}" address="127.0.0.1")',
            ]
        else:
            lines[0] += ")"
            lines += [
                'module(load="imptcp")',
                f'input(type="imptcp" port="{self.port}" address="127.0.0.1")',
            ]
        lines += [
            f'action(type="omfile" file="{self.output}" template="RSYSLOG_SyslogProtocol23Format")',
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> Rsyslog:
        log = open(self.directory / "rsyslogd.out", "ab")  # noqa: SIM115 - kept for the process
        self.process = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.config), "-i", str(self.directory / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"rsyslogd exited: {self.console()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"rsyslogd did not listen on {self.port}: {self.console()}")

    def stop(self) -> None:
        stop(self.process)
        self.process = None

    def console(self) -> str:
        path = self.directory / "rsyslogd.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def lines(self) -> list[str]:
        return self.output.read_text().splitlines() if self.output.exists() else []

    def seqs(self) -> list[int]:
        return [
            int(m.group(1)) for m in (re.search(r' seq="(\d+)"', ln) for ln in self.lines()) if m
        ]

    def wait_for(self, count: int, timeout: float = 10) -> list[int]:
        """The seqs received once at least ``count`` lines arrived (or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.seqs()) < count:
            time.sleep(0.05)
        return self.seqs()
