"""A fake Microsoft Hyper-V host reached over WinRM, for the Hyper-V driver's tests.

It is a fake: no Windows host runs on these machines. It speaks the
WS-Management protocol as Windows Remote Management does (DMTF DSP0226
WS-Management 1.1 over SOAP 1.2 and HTTP(S) at ``/wsman``, with Microsoft's
Windows Remote Shell resource, [MS-WSMV] v30: Create shell, Command,
Receive with base64 stdout/stderr streams and the CommandState with its
ExitCode, Signal, Delete), signs in with Basic or NTLM (Negotiate, with
channel binding over HTTPS) and answers 401 to bad credentials, so that
``pywinrm`` talks to it unmodified.

It runs no PowerShell: it recognises the reviewed scripts of
``hypervisors/drivers/hyperv_scripts`` inside the driver's loader
(:mod:`.powershell`), refuses any other command, and applies each script's
effect to an in-memory Hyper-V host (:mod:`.hyperv`), answering as
Windows PowerShell 5.1 does: the script's JSON on stdout, progress and
errors as CLIXML on stderr, exit code 1 on an uncaught error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..common import TLSFiles, serve
from .hyperv import GIB, MIB, FakeHyperV, PSError
from .wsman import WinRMState, WSManHandler, certificate_hash


@contextmanager
def serve_winrm(
    hyperv: FakeHyperV,
    users: dict[str, str],
    directory: Path,
    tls: TLSFiles | None = None,
    **settings: object,
) -> Iterator[tuple[WinRMState, str]]:
    """Serve ``hyperv`` at ``<url>/wsman`` to ``users`` (name -> password);
    yields the endpoint's state and the ``/wsman`` URL. NTLM's accounts go
    to a file in ``directory`` that ``NTLM_USER_FILE`` names meanwhile, as
    pyspnego's NTLM acceptor reads them there."""
    directory.mkdir(parents=True, exist_ok=True)
    accounts = directory / "ntlm-users"
    accounts.write_text("".join(f":{name}:{password}\n" for name, password in users.items()))
    accounts.chmod(0o600)
    state = WinRMState(hyperv=hyperv, users=dict(users), **settings)  # type: ignore[arg-type]
    if tls is not None:
        state.cert_hash = certificate_hash(tls.certfile.read_bytes())
    before = os.environ.get("NTLM_USER_FILE")
    os.environ["NTLM_USER_FILE"] = str(accounts)
    try:
        with serve(WSManHandler, tls=tls, winrm=state) as (_server, url):
            yield state, f"{url}/wsman"
    finally:
        if before is None:
            os.environ.pop("NTLM_USER_FILE", None)
        else:
            os.environ["NTLM_USER_FILE"] = before


__all__ = ["GIB", "MIB", "FakeHyperV", "PSError", "WinRMState", "serve_winrm"]
