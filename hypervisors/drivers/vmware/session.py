"""The VMware driver's connection: login with a timeout, TLS, errors, tasks.

:class:`VMwareSession` logs in with ``SmartConnect`` in a thread it can give
up on, verifies TLS against ``ca_pem`` or the system CAs, maps pyVmomi faults
and transport errors to base.py's classes, and waits for vSphere tasks.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit
from xml.parsers.expat import ExpatError

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from .. import base

# pyVmomi faults (and transport errors) -> base.py's classes, the first match wins.
_FAULTS: tuple[tuple[tuple[type, ...], type[base.HypervisorError]], ...] = (
    ((ssl.SSLCertVerificationError,), base.TLSFailed),
    ((vim.fault.InvalidLogin, vim.fault.NoPermission), base.AuthenticationFailed),
    (
        (vmodl.fault.ManagedObjectNotFound, vim.fault.NotFound, vim.fault.FileNotFound),
        base.NotFound,
    ),
    ((vim.fault.InsufficientResourcesFault, vim.fault.NoDiskSpace), base.QuotaExceeded),
    ((vmodl.fault.HostCommunication, vmodl.fault.SystemError), base.TransientError),
    ((vmodl.fault.RequestCanceled, vim.fault.TaskInProgress), base.TransientError),
    ((vim.fault.Timedout, vim.fault.HostConnectFault, OSError), base.TransientError),
    ((vmodl.fault.InvalidArgument, vmodl.fault.InvalidRequest), base.InvalidRequest),
    ((vmodl.fault.NotSupported, vim.fault.InvalidState), base.InvalidRequest),
    ((vim.fault.VmConfigFault, vim.fault.DuplicateName), base.InvalidRequest),
)


def _error(exc: BaseException, what: str) -> base.HypervisorError:
    """Map a pyVmomi fault or a transport error to base.py's classes. The text is
    the fault's type and message: pyVmomi's full fault dump is not used, as it
    can echo request fields."""
    if isinstance(exc, vmodl.MethodFault):
        kind = type(exc).__name__.rsplit(".", 1)[-1]
        detail = f"{kind}: {exc.msg}" if getattr(exc, "msg", "") else kind
    else:
        detail = str(exc) or type(exc).__name__
    message = f"vSphere: {what}: {detail}"
    if "CERTIFICATE_VERIFY_FAILED" in detail:  # also when wrapped in a HostConnectFault
        return base.TLSFailed(message)
    for kinds, error in _FAULTS:
        if isinstance(exc, kinds):
            return error(message)
    if isinstance(exc, http.client.HTTPException):  # an HTTP status without a SOAP fault
        status = detail.split(" ", 1)[0]
        if status in ("401", "403"):
            return base.AuthenticationFailed(message)
        if status.startswith("5") or not status.isdigit():
            return base.TransientError(message)
        return base.InvalidRequest(message)
    if isinstance(exc, ExpatError):
        return base.PermanentError(f"vSphere: {what}: the endpoint does not answer SOAP")
    return base.PermanentError(message)


class VMwareSession(base.Driver):
    """A vSphere SDK session: login, TLS, errors, and waiting for tasks."""

    def __init__(self, connection: base.Connection) -> None:
        super().__init__(connection)
        self._si: vim.ServiceInstance | None = None
        self._content_cache: vim.ServiceInstanceContent | None = None
        self._dc: vim.Datacenter | None = None

    # --- connection ---------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if not self.connection.verify_tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            return context
        try:  # cadata takes the PEM itself: no file to write and remove
            return ssl.create_default_context(cadata=self.connection.ca_pem or None)
        except (ssl.SSLError, ValueError) as exc:
            raise base.TLSFailed(
                f"vSphere: the CA certificate (ca_pem) does not load: {exc}"
            ) from None

    def _service(self) -> vim.ServiceInstance:
        if self._si is not None:
            return self._si
        endpoint = self.connection.endpoint.strip()
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise base.InvalidRequest(f"vSphere: endpoint {endpoint!r} is not an SDK URL or host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        result: dict[str, Any] = {}
        lock, context = threading.Lock(), self._ssl_context()

        def connect() -> None:
            try:
                si = SmartConnect(
                    protocol=parts.scheme,
                    host=parts.hostname,
                    port=port,
                    path=parts.path.rstrip("/") or "/sdk",
                    user=self.connection.username,
                    pwd=self.connection.password,
                    sslContext=context,
                    httpConnectionTimeout=self.connection.timeout,
                )
            except Exception as exc:  # noqa: BLE001 - mapped below, in the caller's thread
                result["error"] = exc
                return
            with lock:
                if result.get("abandoned"):  # a late login: do not leave the session open
                    Disconnect(si)
                else:
                    result["si"] = si

        # SmartConnect's first request (the API version probe) has no timeout
        # of its own: the attempt runs in a thread and is given up.
        thread = threading.Thread(target=connect, daemon=True, name="vsphere-connect")
        thread.start()
        thread.join(self.connection.timeout)
        with lock:
            result["abandoned"] = True
        where = f"{parts.hostname}:{port}"
        if "error" in result:
            exc = result["error"]
            if type(exc) is Exception:  # SmartConnect's "is down or is not a VIM server"
                raise base.TransientError(f"vSphere: {where} is down or is not a vSphere SDK")
            raise _error(exc, f"cannot log in to {where}") from None
        if "si" not in result:
            raise base.TransientError(
                f"vSphere: no answer from {where} within {self.connection.timeout:g} s"
            )
        self._si = result["si"]
        return self._si

    def close(self) -> None:
        if self._si is not None:
            try:
                Disconnect(self._si)
            except Exception:  # noqa: BLE001 - logging out is best effort
                pass
            self._si, self._content_cache, self._dc = None, None, None

    def _content(self) -> vim.ServiceInstanceContent:
        if self._content_cache is None:
            si = self._service()
            self._content_cache = self._call("service content", si.RetrieveContent)
        return self._content_cache

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except base.HypervisorError:
            raise
        except Exception as exc:  # noqa: BLE001 - every library failure is mapped
            raise _error(exc, what) from None

    def _wait(self, task: vim.Task, what: str) -> Any:
        """Wait for a task; its fault raises as the matching error class."""
        timeout = float(self.connection.options.get("task_timeout", 1800))
        deadline, pause = time.monotonic() + timeout, 0.05
        while True:
            info = self._call(what, lambda: task.info)
            if info.state == vim.TaskInfo.State.success:
                return info.result
            if info.state == vim.TaskInfo.State.error:
                raise _error(info.error, what)
            if time.monotonic() > deadline:
                raise base.TransientError(f"vSphere: {what}: task {task._moId} still running")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _run(self, what: str, method, **kwargs: Any) -> Any:
        """Start a task and wait for it."""
        return self._wait(self._call(what, method, **kwargs), what)
