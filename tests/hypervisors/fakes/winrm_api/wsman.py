"""The fake's WS-Management endpoint: ``POST /wsman`` with SOAP 1.2 envelopes,
the Windows Remote Shell resource (MS-WSMV 3.1.4.1: Create, Command,
Receive, Signal, Delete) and HTTP sign-in (Basic, and NTLM through the
Negotiate scheme, which authenticates the TCP connection, not one request).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from spnego.channel_bindings import GssChannelBindings

from ..common import QuietHandler
from . import powershell
from .hyperv import FakeHyperV, PSError

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
SHELL = NS["rsp"]
CMD_URI = f"{SHELL}/cmd"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
# MS-WSMV / winerror.h codes the fake answers with.
INVALID_SELECTORS = 2150858843
MAX_SHELLS = 2150859174
ACTION_NOT_SUPPORTED = 2150858757


@dataclass
class Command:
    stdout: bytes
    stderr: bytes
    exit_code: int
    sent_out: int = 0
    sent_err: int = 0


@dataclass
class Shell:
    owner: str
    commands: dict[str, Command] = field(default_factory=dict)


@dataclass
class WinRMState:
    """What the endpoint holds: accounts, shells, and what PureBoot ran."""

    hyperv: FakeHyperV
    users: dict[str, str]
    schemes: tuple[str, ...] = ("negotiate", "basic")
    max_shells: int = 30
    chunk: int = 512  # bytes of each stream per Receive, so clients must loop
    cert_hash: bytes | None = None  # for NTLM channel binding over HTTPS
    shells: dict[str, Shell] = field(default_factory=dict)
    ran: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def certificate_hash(pem: bytes) -> bytes:
    """RFC 5929 tls-server-end-point: the certificate's hash (SHA-256 at least)."""
    cert = x509.load_pem_x509_certificate(pem)
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return digest.finalize()


class Fault(Exception):
    def __init__(self, code: int, subcode: str, reason: str, status: int = 500) -> None:
        super().__init__(reason)
        self.code, self.subcode, self.reason, self.status = code, subcode, reason, status


class WSManHandler(QuietHandler):
    """``server.winrm`` is the :class:`WinRMState`."""

    def setup(self) -> None:
        super().setup()
        self.ntlm: Any = None
        self.user: str | None = None  # set once NTLM has authenticated the connection

    @property
    def state(self) -> WinRMState:
        return self.server.winrm  # type: ignore[attr-defined]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/").lower() != "/wsman":
            self._send(404, b"")
            return
        user = self._authenticate()
        if user is None:
            return
        try:
            status, answer = 200, self._dispatch(ET.fromstring(body), user)
        except Fault as fault:
            status, answer = fault.status, self._fault(body, fault)
        except ET.ParseError:
            status, answer = 400, b""
        self._send(status, answer)

    def _send(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # --- sign-in -------------------------------------------------------------

    def _challenge(self) -> None:
        offered = [("WWW-Authenticate", "Negotiate")] if "negotiate" in self.state.schemes else []
        if "basic" in self.state.schemes:
            offered.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._send(401, b"", tuple(offered))

    def _authenticate(self) -> str | None:
        if self.user is not None:
            return self.user
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and "basic" in self.state.schemes:
            try:
                name, _, password = base64.b64decode(token).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                name, password = "", ""
            known = self.state.users.get(name)
            if known is not None and hmac.compare_digest(known, password):
                return name
        elif scheme in ("negotiate", "ntlm") and "negotiate" in self.state.schemes:
            return self._ntlm(scheme, token)
        self._challenge()
        return None

    def _ntlm(self, scheme: str, token: str) -> str | None:
        try:
            raw = base64.b64decode(token)
            if self.ntlm is None or raw[8:12] == b"\x01\x00\x00\x00":  # a NEGOTIATE message
                bindings = None
                if self.state.cert_hash:
                    bindings = GssChannelBindings(
                        application_data=b"tls-server-end-point:" + self.state.cert_hash
                    )
                # spnego finds the accounts in the file named by NTLM_USER_FILE.
                self.ntlm = spnego.server(protocol="ntlm", channel_bindings=bindings)
            answer = self.ntlm.step(raw)
        except (binascii.Error, spnego.exceptions.SpnegoError):
            self.ntlm = None
            self._challenge()
            return None
        if not self.ntlm.complete:
            header = f"{scheme.capitalize()} {base64.b64encode(answer or b'').decode()}"
            self._send(401, b"", (("WWW-Authenticate", header),))
            return None
        self.user, self.ntlm = str(self.ntlm.client_principal), None
        return self.user

    # --- the shell resource --------------------------------------------------

    def _dispatch(self, envelope: ET.Element, user: str) -> bytes:
        header = envelope.find("s:Header", NS)
        action = (header.findtext("a:Action", "", NS) if header is not None else "").strip()
        resource = (header.findtext("w:ResourceURI", "", NS) if header is not None else "").strip()
        if resource != CMD_URI:
            raise Fault(ACTION_NOT_SUPPORTED, "w:DestinationUnreachable", "Unknown resource URI.")
        body = envelope.find("s:Body", NS)
        selector = envelope.find("s:Header/w:SelectorSet/w:Selector[@Name='ShellId']", NS)
        shell_id = (selector.text or "").strip() if selector is not None else ""
        message_id = envelope.findtext("s:Header/a:MessageID", "", NS)
        with self.state.lock:
            if action == f"{TRANSFER}/Create":
                return self._create(message_id, user, body)
            shell = self.state.shells.get(shell_id)
            if shell is None or shell.owner != user:
                raise Fault(
                    INVALID_SELECTORS,
                    "w:InvalidSelectors",
                    f"The request for the Windows Remote Shell with ShellId {shell_id} failed "
                    "because the shell was not found on the server.",
                )
            if action == f"{SHELL}/Command":
                return self._command(message_id, shell, body)
            if action == f"{SHELL}/Receive":
                return self._receive(message_id, shell, body)
            if action == f"{SHELL}/Signal":
                signal = body.find("rsp:Signal", NS) if body is not None else None
                shell.commands.pop(signal.get("CommandId", "") if signal is not None else "", None)
                return self._envelope(
                    f"{SHELL}/SignalResponse", message_id, "<rsp:SignalResponse/>"
                )
            if action == f"{TRANSFER}/Delete":
                del self.state.shells[shell_id]
                return self._envelope(f"{TRANSFER}/DeleteResponse", message_id, "")
        raise Fault(
            ACTION_NOT_SUPPORTED, "a:ActionNotSupported", f"Action {action} is not supported."
        )

    def _create(self, message_id: str, user: str, body: ET.Element | None) -> bytes:
        if sum(1 for s in self.state.shells.values() if s.owner == user) >= self.state.max_shells:
            raise Fault(
                MAX_SHELLS,
                "w:QuotaLimit",
                "The WS-Management service cannot process the request. This user is allowed a "
                f"maximum number of {self.state.max_shells} concurrent shells, which has been "
                "exceeded. Close existing shells or raise the quota for this user.",
            )
        shell_id = str(uuid.uuid4()).upper()
        self.state.shells[shell_id] = Shell(user)
        address = f"http://{self.state.hyperv.name}:5985/wsman"
        return self._envelope(
            f"{TRANSFER}/CreateResponse",
            message_id,
            f"<x:ResourceCreated><a:Address>{address}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{CMD_URI}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId><rsp:ResourceUri>{CMD_URI}"
            f"</rsp:ResourceUri><rsp:Owner>{escape(user)}</rsp:Owner>"
            "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut><rsp:InputStreams>stdin"
            "</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>",
        )

    def _command(self, message_id: str, shell: Shell, body: ET.Element | None) -> bytes:
        line = body.find("rsp:CommandLine", NS) if body is not None else None
        if line is None:
            raise Fault(ACTION_NOT_SUPPORTED, "w:SchemaValidationError", "No command line.")
        command = " ".join(
            t.strip()
            for t in (line.findtext("rsp:Command", "", NS), line.findtext("rsp:Arguments", "", NS))
            if t
        )
        command_id = str(uuid.uuid4()).upper()
        shell.commands[command_id] = self._run(command)
        return self._envelope(
            f"{SHELL}/CommandResponse",
            message_id,
            f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>",
        )

    def _run(self, command: str) -> Command:
        """What cmd.exe and powershell.exe would answer for ``command``."""
        if len(command) > powershell.MAX_COMMAND_LINE:
            return Command(b"", b"The command line is too long.\r\n", 1)
        try:
            name, text, params = powershell.decode(command, self._scripts())
        except powershell.Refused as refused:
            self.state.refused.append(command[:200])
            return Command(b"", powershell.stderr_clixml(str(refused)).encode(), 1)
        self.state.ran.append((name, params))
        hyperv = self.state.hyperv
        with hyperv.lock:
            try:
                result = hyperv.run(name, text, params)
            except PSError as error:
                return Command(b"", powershell.stderr_clixml(error.text()).encode(), 1)
            except AssertionError as mismatch:  # the fake's model and the script disagree
                self.state.refused.append(f"{name}: {mismatch}")
                return Command(b"", powershell.stderr_clixml(f"fake: {mismatch}").encode(), 1)
        text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        # Windows PowerShell's ConvertTo-Json escapes these, as the client must accept.
        for char in "<>'&":
            text = text.replace(char, f"\\u{ord(char):04x}")
        return Command((text + "\r\n").encode("utf-8"), powershell.stderr_clixml().encode(), 0)

    def _scripts(self) -> dict[str, str]:
        return powershell.reviewed_scripts()

    def _receive(self, message_id: str, shell: Shell, body: ET.Element | None) -> bytes:
        stream = body.find("rsp:Receive/rsp:DesiredStream", NS) if body is not None else None
        command_id = stream.get("CommandId", "") if stream is not None else ""
        command = shell.commands.get(command_id)
        if command is None:
            raise Fault(INVALID_SELECTORS, "w:InvalidSelectors", f"No command {command_id}.")
        size = self.state.chunk
        out = command.stdout[command.sent_out : command.sent_out + size]
        err = command.stderr[command.sent_err : command.sent_err + size]
        command.sent_out += len(out)
        command.sent_err += len(err)
        done = command.sent_out >= len(command.stdout) and command.sent_err >= len(command.stderr)
        cid = quoteattr(command_id)
        parts = ["<rsp:ReceiveResponse>"]
        for name, chunk in (("stdout", out), ("stderr", err)):
            if chunk:
                parts.append(
                    f'<rsp:Stream Name="{name}" CommandId={cid}>'
                    f"{base64.b64encode(chunk).decode()}</rsp:Stream>"
                )
            if done:
                parts.append(f'<rsp:Stream Name="{name}" CommandId={cid} End="true"></rsp:Stream>')
        if done:
            parts.append(
                f'<rsp:CommandState CommandId={cid} State="{SHELL}/CommandState/Done">'
                f"<rsp:ExitCode>{command.exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            parts.append(
                f'<rsp:CommandState CommandId={cid} State="{SHELL}/CommandState/Running"/>'
            )
        parts.append("</rsp:ReceiveResponse>")
        return self._envelope(f"{SHELL}/ReceiveResponse", message_id, "".join(parts))

    # --- envelopes -----------------------------------------------------------

    def _envelope(self, action: str, relates_to: str, body: str) -> bytes:
        names = " ".join(f'xmlns:{k}="{v}"' for k, v in NS.items())
        return (
            f'<s:Envelope xml:lang="en-US" {names}><s:Header>'
            f"<a:Action>{action}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
            f"<a:To>{ANONYMOUS}</a:To><a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
            f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
        ).encode()

    def _fault(self, request: bytes, fault: Fault) -> bytes:
        try:
            relates_to = ET.fromstring(request).findtext("s:Header/a:MessageID", "", NS)
        except ET.ParseError:
            relates_to = ""
        sender = "s:Sender" if fault.subcode != "w:QuotaLimit" else "s:Receiver"
        return self._envelope(
            "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
            relates_to,
            f"<s:Fault><s:Code><s:Value>{sender}</s:Value><s:Subcode><s:Value>{fault.subcode}"
            f'</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">'
            f"{escape(fault.reason)}</s:Text></s:Reason><s:Detail>"
            f'<f:WSManFault Code="{fault.code}" Machine="{self.state.hyperv.name}">'
            f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault></s:Detail></s:Fault>",
        )
