"""A real SAML 2.0 identity provider for the sign-in tests: pysaml2's IdP in a thread.

pysaml2's :class:`saml2.server.Server` is a complete IdP: it parses and
checks the signed AuthnRequest PureBoot sends (HTTP-Redirect binding), and
builds and signs (with the xmlsec1 program) the Response it posts back. This
module wraps it in a small WSGI app served by ``wsgiref`` on a free loopback
port: a sign-in form, a user table with passwords and groups, and knobs a
test turns to make it misbehave (no signature, an assertion that is already
expired). Its signing key and certificate are made with ``cryptography`` in
the test's temp folder; no key is committed.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import shutil
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import AUTHN_PASSWORD, NAME_FORMAT_BASIC
from saml2.server import Server


def xmlsec1() -> str:
    """The xmlsec1 program, or the test fails naming it."""
    path = shutil.which("xmlsec1")
    if not path:
        pytest.fail("SAML tests need the xmlsec1 program: apt-get install xmlsec1")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_keypair(directory: Path, name: str, ip: str | None = None) -> tuple[Path, Path]:
    """A fresh RSA key and self-signed certificate (PEM files): (key path, cert path).

    With ``ip``, the certificate names that address, so it can serve HTTPS there.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = x509.CertificateBuilder()
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    cert = (
        builder.subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@dataclass
class Person:
    password: str
    groups: list[str] = field(default_factory=list)
    email: str = ""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


class IdentityProvider:
    """Start with :meth:`start`, stop with :meth:`stop`; its metadata is ``metadata_file``.

    ``sp_metadata_file`` must hold the service provider's metadata before the
    first sign-in (the IdP reads it at every request, as PureBoot's may change).
    """

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.entity_id = f"{self.url}/idp"
        self.key_file, self.cert_file = make_keypair(self.dir, "idp")
        self.metadata_file = self.dir / "idp-metadata.xml"
        self.sp_metadata_file = self.dir / "sp-metadata.xml"
        self.people: dict[str, Person] = {}
        # Knobs: what the next responses look like.
        self.sign_assertion = True
        self.encrypt_assertion = False
        self.lifetime_minutes = 15
        self._pending: dict[str, tuple[object, str]] = {}
        self._httpd = None
        self._thread: threading.Thread | None = None

    def _config(self, with_sp: bool = True) -> IdPConfig:
        conf = {
            "entityid": self.entity_id,
            "xmlsec_binary": xmlsec1(),
            "key_file": str(self.key_file),
            "cert_file": str(self.cert_file),
            "service": {
                "idp": {
                    "name": "Test IdP",
                    "endpoints": {
                        "single_sign_on_service": [
                            (f"{self.url}/sso/redirect", BINDING_HTTP_REDIRECT)
                        ]
                    },
                    "want_authn_requests_signed": True,
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": self.lifetime_minutes},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_BASIC,
                        }
                    },
                }
            },
        }
        if with_sp:
            conf["metadata"] = {"local": [str(self.sp_metadata_file)]}
        config = IdPConfig()
        config.load(conf)
        return config

    def start(self) -> None:
        self.metadata_file.write_text(
            create_metadata_string(None, config=self._config(with_sp=False)).decode()
        )
        self._httpd = make_server("127.0.0.1", self.port, self._app, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)

    # --- the WSGI app ---------------------------------------------------------

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        try:
            if path == "/sso/redirect" and environ["REQUEST_METHOD"] == "GET":
                status, body = self._sso(parse_qs(environ.get("QUERY_STRING", "")))
            elif path == "/sso/login" and environ["REQUEST_METHOD"] == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                form = parse_qs(environ["wsgi.input"].read(length).decode())
                status, body = self._login(form)
            else:
                status, body = "404 Not Found", "not found"
        except Exception as exc:  # a test IdP: show what went wrong
            status, body = "500 Internal Server Error", f"idp error: {exc!r}"
        start_response(status, [("Content-Type", "text/html; charset=utf-8")])
        return [body.encode()]

    def _sso(self, query: dict[str, list[str]]) -> tuple[str, str]:
        """Check the signed AuthnRequest, then show the sign-in form."""
        one = {k: v[0] for k, v in query.items()}
        request = self._server().parse_authn_request(
            one["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=one.get("RelayState"),
            sigalg=one.get("SigAlg"),
            signature=one.get("Signature"),
        )
        if not one.get("Signature"):
            return "400 Bad Request", "unsigned AuthnRequest"
        key = secrets.token_urlsafe(16)
        self._pending[key] = (request.message, one.get("RelayState", ""))
        return "200 OK", (
            '<html><body><form id="idp-login" method="post" action="/sso/login">'
            f'<input type="hidden" name="key" value="{key}">'
            '<input name="username"><input name="password" type="password">'
            '<input type="submit" value="Sign in"></form></body></html>'
        )

    def _login(self, form: dict[str, list[str]]) -> tuple[str, str]:
        """Check the password, then answer PureBoot with a signed Response (auto-posted form)."""
        message, relay_state = self._pending.pop(form["key"][0])
        username = form.get("username", [""])[0]
        person = self.people.get(username)
        if person is None or not secrets.compare_digest(
            person.password, form.get("password", [""])[0]
        ):
            return "403 Forbidden", "wrong password"
        server = self._server()
        identity = {"uid": [username], "groups": list(person.groups)}
        if person.email:
            identity["mail"] = [person.email]
        response = server.create_authn_response(
            identity,
            in_response_to=message.id,
            destination=message.assertion_consumer_service_url,
            sp_entity_id=message.issuer.text,
            name_id_policy=message.name_id_policy,
            userid=username,
            authn={"class_ref": AUTHN_PASSWORD, "authn_auth": self.entity_id},
            sign_assertion=self.sign_assertion,
            # Encrypted for the certificate in PureBoot's metadata.
            encrypt_assertion=self.encrypt_assertion,
            encrypt_assertion_self_contained=True,
            sign_response=False,
        )
        http_args = server.apply_binding(
            BINDING_HTTP_POST,
            str(response),
            destination=message.assertion_consumer_service_url,
            relay_state=relay_state,
            response=True,
        )
        return "200 OK", http_args["data"]

    def _server(self) -> Server:
        return Server(config=self._config())


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


class MetadataServer:
    """Serves the IdP's metadata file over HTTPS (a certificate made for 127.0.0.1).

    As an IdP publishes it: ``url`` is its address, ``ca_file`` the certificate
    a client must trust to fetch it.
    """

    def __init__(self, idp: IdentityProvider):
        self.key_file, self.ca_file = make_keypair(idp.dir, "metadata-tls", ip="127.0.0.1")
        directory = str(idp.metadata_file.parent)
        self._httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0),
            lambda *a, **kw: _QuietFiles(*a, directory=directory, **kw),
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, self.key_file)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        port = self._httpd.server_address[1]
        self.url = f"https://127.0.0.1:{port}/{idp.metadata_file.name}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
