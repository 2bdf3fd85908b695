"""Microsoft Hyper-V through WinRM (``pywinrm``) and a small set of reviewed scripts.

``endpoint`` is the host's WS-Management URL, ``https://hyperv01.example:5986/wsman``
(a bare host name means that URL on port 5986). The credential is a Windows
account in the host's "Hyper-V Administrators" group; it signs in with NTLM
(the ``transport`` option, default ``ntlm``) or, where the listener allows it,
``basic`` over HTTPS. One connection is one Hyper-V host: no cluster-wide
placement, live migration or HA.

PureBoot runs nothing on the host but the PowerShell scripts in
``hyperv_scripts/``, one per operation, each printing one JSON document. A
script's parameters never become script text: they travel as a base64 JSON
document assigned to ``$p`` on the script's first line, so no VM name, path
or switch can inject PowerShell. ``cmd.exe`` caps WinRM command lines at
8191 characters, and ``powershell -EncodedCommand`` doubles and then base64s
the text; so the parameter line and the script go gzip-compressed inside a
fixed one-line loader, which decompresses and runs them.

Templates are the ``.vhdx`` files of the ``template_path`` folder. A VM
cloned from one gets a differencing disk on it (``template_clone``:
``differencing``, the default, fast and thin; the template must then stay
where it is) or a full copy (``copy``). The disks PureBoot makes are named
``<VMId>-disk<N>.vhdx``; deleting the VM removes exactly those.

``firmware`` ``uefi`` makes a generation 2 VM (Secure Boot per the
``secure_boot`` option, default off: network boot loaders are often not
signed), ``bios`` a generation 1 VM whose first NIC is a legacy adapter,
because only those can network-boot there.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import math
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
import winrm
from winrm import exceptions as winrm_exc

from . import base
from .base import Capability as C

SCRIPT_DIR = Path(__file__).with_name("hyperv_scripts")
SCRIPTS = ("health", "inventory", "templates", "get_vm", "create_vm", "power", "delete_vm")

# The first line of every script run: its parameters, never interpolated as code.
PARAMS_LINE = (
    "$p = ConvertFrom-Json ([Text.Encoding]::UTF8.GetString("
    "[Convert]::FromBase64String('{params}')))\n"
)
# Decompresses the parameter line and script, then runs them as one script block.
LOADER = (
    "$b = [Convert]::FromBase64String('{payload}'); "
    "$z = New-Object IO.Compression.GZipStream((New-Object IO.MemoryStream(, $b)), "
    "[IO.Compression.CompressionMode]::Decompress); "
    "$s = (New-Object IO.StreamReader($z, [Text.Encoding]::UTF8)).ReadToEnd(); "
    "& ([ScriptBlock]::Create($s))"
)
_MIB = 1024 * 1024
_STATES = {
    "Running": base.PowerState.RUNNING,
    "Starting": base.PowerState.RUNNING,
    "Stopping": base.PowerState.RUNNING,
    "Reset": base.PowerState.RUNNING,
    "Off": base.PowerState.STOPPED,
    "Paused": base.PowerState.PAUSED,
    "Pausing": base.PowerState.PAUSED,
    "Resuming": base.PowerState.PAUSED,
    "Saved": base.PowerState.PAUSED,
    "Saving": base.PowerState.PAUSED,
}
# PowerShell error categories (and the scripts' own) -> PureBoot's error classes.
_CATEGORIES: dict[str, type[base.HypervisorError]] = {
    "NotFound": base.NotFound,
    "ObjectNotFound": base.NotFound,
    "PermissionDenied": base.AuthenticationFailed,
    "SecurityError": base.AuthenticationFailed,
    "AuthenticationError": base.AuthenticationFailed,
    "QuotaExceeded": base.QuotaExceeded,
    "LimitsExceeded": base.QuotaExceeded,
    "ResourceBusy": base.TransientError,
    "ResourceUnavailable": base.TransientError,
    "OperationTimeout": base.TransientError,
    "ConnectionError": base.TransientError,
    "DeadlockDetected": base.TransientError,
    "InvalidArgument": base.InvalidRequest,
    "InvalidData": base.InvalidRequest,
    "InvalidType": base.InvalidRequest,
    "InvalidOperation": base.InvalidRequest,
    "ResourceExists": base.InvalidRequest,
}
# Hyper-V reports a missing switch or VM as an invalid argument, a full disk
# as a write error: the text says what the category does not.
_MESSAGES: tuple[tuple[re.Pattern[str], type[base.HypervisorError]], ...] = (
    (re.compile(r"unable to find|cannot find|does not exist", re.I), base.NotFound),
    (re.compile(r"not enough (space|memory)|insufficient", re.I), base.QuotaExceeded),
)
# The scripts' error line, in pywinrm's cleaned text or (if that failed) in raw CLIXML.
_FAILURE = re.compile(r"PUREBOOT\|(\w+)\|(.*?)(?:\r?\nAt line:|_x000D__x000A_|</S>|\Z)", re.S)
_MAC = re.compile(r"^[0-9A-Fa-f]{12}$")
_WSMAN_ACCESS_DENIED = 5


@functools.cache
def script_text(name: str) -> str:
    """The reviewed script ``name`` exactly as it is in ``hyperv_scripts/``."""
    if name not in SCRIPTS:
        raise ValueError(f"no Hyper-V script {name!r}")
    return (SCRIPT_DIR / f"{name}.ps1").read_text(encoding="utf-8")


def compose(name: str, params: dict[str, Any]) -> str:
    """The PowerShell text PureBoot runs for ``name``: the loader around the
    compressed parameter line and script."""
    document = json.dumps(params, separators=(",", ":"), ensure_ascii=False)
    line = PARAMS_LINE.format(params=base64.b64encode(document.encode()).decode())
    # mtime=0: the same call always sends the same bytes.
    packed = gzip.compress((line + script_text(name)).encode(), mtime=0)
    return LOADER.format(payload=base64.b64encode(packed).decode())


def _mac(value: str) -> str:
    """``00155D0A0B0C`` (Hyper-V's form) -> ``00:15:5d:0a:0b:0c``."""
    digits = re.sub(r"[^0-9A-Fa-f]", "", value or "").lower()
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def _hyperv_mac(value: str) -> str:
    digits = re.sub(r"[:\-.]", "", value or "")
    if not _MAC.match(digits):
        raise base.InvalidRequest(f"Hyper-V: {value!r} is not a MAC address")
    return digits.upper()


def _vm(data: dict[str, Any]) -> base.VM:
    return base.VM(
        id=str(data.get("id") or ""),
        name=str(data.get("name") or ""),
        power=_STATES.get(str(data.get("state")), base.PowerState.UNKNOWN),
        macs=tuple(_mac(m) for m in data.get("macs") or ()),
        cpus=int(data.get("cpus") or 0),
        memory_mib=int(data.get("memory") or 0) // _MIB,
        host=str(data.get("host") or ""),
        ha=bool(data.get("ha")),
    )


def _vm_id(vm_id: str) -> str:
    try:
        return str(uuid.UUID(vm_id))
    except (ValueError, TypeError, AttributeError):
        raise base.NotFound(f"Hyper-V: no VM with id {vm_id!r}") from None


class HyperVDriver(base.Driver):
    """One Hyper-V host over WinRM; every operation is one reviewed script."""

    name = "hyperv"
    label = "Microsoft Hyper-V"
    capabilities: ClassVar[frozenset[C]] = frozenset(
        {C.HEALTH, C.INVENTORY, C.CREATE_VM, C.CLONE_TEMPLATE, C.POWER, C.DELETE_VM}
        | {C.TEMPLATE_SYNC}
    )
    honours: ClassVar[frozenset[str]] = frozenset()
    options: ClassVar[dict[str, str]] = {
        "transport": "WinRM sign-in: ntlm (default) or basic (HTTPS only)",
        "vm_path": "Folder for VM configuration files (default: the host's)",
        "vhd_path": "Folder for new VHDX files unless a disk names one (default: the host's)",
        "template_path": "Folder whose .vhdx files are the templates",
        "template_clone": "differencing (default) or copy",
        "switch": "Virtual switch for NICs that name none",
        "secure_boot": "off (default) or on, for generation 2 (UEFI) VMs",
    }

    # --- running scripts -----------------------------------------------------

    def _url(self) -> str:
        endpoint = self.connection.endpoint.strip()
        if "://" not in endpoint:
            return f"https://{endpoint}:5986/wsman"
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise base.InvalidRequest(f"Hyper-V: endpoint {endpoint!r} is not a WinRM URL")
        return endpoint

    def _transport(self) -> str:
        transport = str(self.connection.options.get("transport") or "ntlm").lower()
        if transport not in ("ntlm", "basic"):
            raise base.InvalidRequest(f"Hyper-V: transport {transport!r}: use ntlm or basic")
        if transport == "basic" and not self._url().lower().startswith("https:"):
            # Basic sends the password itself; NTLM over HTTP is encrypted by pywinrm.
            raise base.InvalidRequest("Hyper-V: basic sign-in needs an https endpoint")
        return transport

    @contextmanager
    def _ca_file(self) -> Iterator[str | None]:
        """The configured CA as a private file for ``requests``, removed afterwards."""
        if not (self.connection.verify_tls and self.connection.ca_pem):
            yield None
            return
        handle, path = tempfile.mkstemp(prefix="pureboot-hyperv-", suffix=".pem")
        try:
            with os.fdopen(handle, "w") as file:
                file.write(self.connection.ca_pem)
            yield path
        finally:
            os.unlink(path)

    def _run(self, name: str, params: dict[str, Any], what: str) -> Any:
        """Run script ``name`` with ``params``; its JSON output, or the error mapped."""
        url = self._url()
        text = compose(name, params)
        # pywinrm wants whole seconds and the server's wait shorter than its own.
        read_timeout = max(2, math.ceil(self.connection.timeout))
        with self._ca_file() as ca_path:
            try:
                session = winrm.Session(
                    url,
                    auth=(self.connection.username, self.connection.password),
                    transport=self._transport(),
                    server_cert_validation="validate" if self.connection.verify_tls else "ignore",
                    ca_trust_path=ca_path,
                    read_timeout_sec=read_timeout,
                    operation_timeout_sec=max(1, min(20, read_timeout - 1)),
                )
                result = session.run_ps(text)
            except Exception as exc:  # every failure of the library is mapped
                raise self._error(exc, what) from None
        if result.status_code != 0:
            raise self._failure(result.std_err, result.status_code, what)
        try:
            # utf-8-sig: a console set to UTF-8 may start its output with a BOM.
            return json.loads(result.std_out.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            raise base.PermanentError(
                f"Hyper-V {what}: the host answered with something other than JSON"
            ) from None

    def _error(self, exc: Exception, what: str) -> base.HypervisorError:
        host = urlsplit(self._url()).hostname
        if isinstance(exc, base.HypervisorError):
            return exc
        if isinstance(exc, requests.exceptions.SSLError):
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                return base.TLSFailed(f"Hyper-V {what}: the certificate of {host} did not verify")
            return base.TransientError(f"Hyper-V {what}: TLS with {host} failed")
        if isinstance(exc, requests.exceptions.Timeout):
            return base.TransientError(f"Hyper-V {what}: {host} did not answer in time")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return base.TransientError(f"Hyper-V {what}: cannot reach {host}")
        if isinstance(exc, winrm_exc.AuthenticationError | PermissionError):
            return base.AuthenticationFailed(
                f"Hyper-V {what}: {host} refused the credentials of {self.connection.username!r}"
            )
        if isinstance(exc, winrm_exc.WSManFaultError):
            reason = (exc.reason or "").strip()
            if exc.wsman_fault_code == _WSMAN_ACCESS_DENIED:
                return base.AuthenticationFailed(f"Hyper-V {what}: {reason}")
            # WS-Management answers every fault with HTTP 500; most (a shell
            # quota, a busy service) pass.
            return base.TransientError(f"Hyper-V {what}: {reason}")
        if isinstance(exc, winrm_exc.WinRMTransportError):
            if exc.code == 403:
                return base.AuthenticationFailed(f"Hyper-V {what}: {host} answered 403")
            if exc.code >= 500:
                return base.TransientError(f"Hyper-V {what}: {host} answered {exc.code}")
            return base.InvalidRequest(f"Hyper-V {what}: {host} answered {exc.code}")
        if isinstance(exc, winrm_exc.WinRMOperationTimeoutError):
            return base.TransientError(f"Hyper-V {what}: {host} timed out")
        return base.PermanentError(f"Hyper-V {what}: {type(exc).__name__}: {exc}")

    def _failure(self, stderr: bytes, code: int, what: str) -> base.HypervisorError:
        text = stderr.decode("utf-8", "replace").strip()
        found = _FAILURE.search(text)
        if not found:
            detail = text[:500] or f"exit code {code}"
            return base.PermanentError(f"Hyper-V {what}: {detail}")
        category, message = found.group(1), found.group(2).strip()
        cls = _CATEGORIES.get(category)
        if cls is None or cls is base.InvalidRequest:
            cls = next((c for p, c in _MESSAGES if p.search(message)), cls or base.PermanentError)
        return cls(f"Hyper-V {what}: {message}")

    # --- health and inventory ------------------------------------------------

    def health(self) -> base.Health:
        """Sign in and read the host's Windows version; raises as :meth:`_run`."""
        data = self._run("health", {}, "health")
        return base.Health(
            ok=True,
            version=f"{data.get('os') or 'Windows'} {data.get('version') or ''}".strip(),
            message=f"Hyper-V host {data.get('host') or ''}".strip(),
        )

    def inventory(self) -> base.Inventory:
        """The host, its cluster if it is in one, drives, switches, templates and VMs."""
        data = self._run("inventory", {}, "inventory")
        info = data.get("host") or {}
        memory = int(info.get("memory") or 0) // _MIB
        cluster = str(info.get("cluster") or "")
        host = base.Host(
            name=str(info.get("name") or ""),
            cluster=cluster,
            cpus=int(info.get("cpus") or 0),
            memory_mib=memory,
            memory_used_mib=max(memory - int(info.get("free") or 0) // _MIB, 0),
            state="up",
        )
        storage = tuple(
            base.Storage(
                name=str(d.get("name") or ""),
                total_bytes=int(d.get("size") or 0),
                free_bytes=int(d.get("free") or 0),
                kind="volume",
            )
            for d in data.get("drives") or ()
        )
        return base.Inventory(
            hosts=(host,),
            clusters=(cluster,) if cluster else (),
            storage=storage,
            networks=tuple(str(s.get("name")) for s in data.get("switches") or ()),
            templates=self.templates(),
            vms=tuple(_vm(v) for v in data.get("vms") or ()),
        )

    def templates(self) -> tuple[base.Template, ...]:
        """The ``.vhdx`` files of the ``template_path`` folder (none without it)."""
        folder = self.connection.options.get("template_path")
        if not folder:
            return ()
        data = self._run("templates", {"dir": str(folder)}, f"templates in {folder}")
        found = [
            base.Template(
                id=str(t.get("name")),
                name=re.sub(r"\.vhdx$", "", str(t.get("name")), flags=re.I),
                disk_bytes=int(t.get("size") or 0),
            )
            for t in data.get("templates") or ()
        ]
        return tuple(sorted(found, key=lambda t: t.name))

    def get_vm(self, vm_id: str) -> base.VM:
        """One VM by its VMId; :class:`NotFound` if it is gone."""
        vm_id = _vm_id(vm_id)
        return _vm(self._run("get_vm", {"id": vm_id}, f"VM {vm_id}"))

    # --- create --------------------------------------------------------------

    def create_vm(self, spec: base.VMSpec) -> base.VM:
        """Create the VM, not started, network boot first; the script removes what
        it made if a step fails, or its error names the VM left behind."""
        params = self._create_params(spec)
        return _vm(self._run("create_vm", params, f"create VM {spec.name!r}"))

    def _create_params(self, spec: base.VMSpec) -> dict[str, Any]:
        options = self.connection.options
        if spec.arch != "x86_64":
            raise base.InvalidRequest(f"Hyper-V: cannot make {spec.arch} VMs")
        if spec.firmware not in ("bios", "uefi"):
            raise base.InvalidRequest(f"Hyper-V: firmware {spec.firmware!r}: use bios or uefi")
        if spec.ha:
            raise base.InvalidRequest("Hyper-V: this driver does not make HA VMs")
        if not spec.nics:
            raise base.InvalidRequest("Hyper-V: a VM needs a NIC to network-boot")
        if spec.cpus < 1 or spec.memory_mib < 32 or spec.memory_mib % 2:
            raise base.InvalidRequest(
                "Hyper-V: a VM needs a CPU and an even number of MiB of memory, 32 or more"
            )
        nics = []
        for nic in spec.nics:
            switch = nic.network or str(options.get("switch") or "")
            if not switch:
                raise base.InvalidRequest("Hyper-V: a NIC names no switch and no default is set")
            nics.append({"switch": switch, "mac": _hyperv_mac(nic.mac)})
        disks = [{"size": 0, "dir": ""}] if spec.template else []
        disks += [{"size": int(d.size_bytes), "dir": d.storage} for d in spec.disks]
        template = ""
        if spec.template:
            template = spec.template if spec.template.endswith(".vhdx") else spec.template + ".vhdx"
            if re.search(r"[\\/:*?\"<>|]", template) or template.startswith("."):
                raise base.NotFound(f"Hyper-V: no template {spec.template!r}")
            if not options.get("template_path"):
                raise base.NotFound(
                    f"Hyper-V: template {spec.template!r}: no template folder is configured "
                    "(the hypervisor's template_path option)"
                )
        clone = str(options.get("template_clone") or "differencing")
        if clone not in ("differencing", "copy"):
            raise base.InvalidRequest(
                f"Hyper-V: template_clone {clone!r}: use differencing or copy"
            )
        secure_boot = str(options.get("secure_boot") or "off").lower()
        if secure_boot not in ("on", "off"):
            raise base.InvalidRequest(f"Hyper-V: secure_boot {secure_boot!r}: use on or off")
        return {
            "name": spec.name,
            "gen": 2 if spec.firmware == "uefi" else 1,
            "cpus": int(spec.cpus),
            "memory": int(spec.memory_mib) * _MIB,
            "vm_path": str(options.get("vm_path") or ""),
            "vhd_path": str(options.get("vhd_path") or ""),
            "template_dir": str(options.get("template_path") or ""),
            "template": template,
            "clone": clone,
            "secure_boot": secure_boot.capitalize(),
            "nics": nics,
            "disks": disks,
        }

    # --- power and delete ----------------------------------------------------

    def power(self, vm_id: str, action: base.PowerAction) -> None:
        """Start (no-op if running), turn off hard (no-op if off) or reset (start if off)."""
        vm_id = _vm_id(vm_id)
        action = base.PowerAction(action)
        self._run("power", {"id": vm_id, "action": action.value}, f"power {action} VM {vm_id}")

    def power_state(self, vm_id: str) -> base.PowerState:
        """The VM's power state; :class:`NotFound` if it is gone."""
        return self.get_vm(vm_id).power

    def delete_vm(self, vm_id: str) -> None:
        """Turn the VM off, remove it and the VHDX files PureBoot made for it."""
        vm_id = _vm_id(vm_id)
        self._run("delete_vm", {"id": vm_id}, f"delete VM {vm_id}")
