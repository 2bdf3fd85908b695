"""Node-facing boot endpoints. No user credentials; nothing here needs one."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.http import (
    Http404,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotFound,
    JsonResponse,
)
from django.views.decorators.http import require_safe

from nodes.choices import Firmware
from nodes.identifiers import normalize_mac, normalize_pi_serial, normalize_uuid
from nodes.permissions import can_access_node
from pureboot.http import serve_file
from workflows.context import public_base_url

from . import grub, ipxe, leases, records, tftp_files
from .engine import Client, Kind, decide
from .models import Outcome, Protocol
from .services import facts, find_node, handle_boot, peek, policy

# iPXE's ${buildarch} and ${platform} values, mapped to PureBoot's names.
BUILDARCH = {"i386": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "arm32": "armhf"}
PLATFORM = {"pcbios": "bios", "efi": "uefi"}
_PATH_RE = re.compile(r"^[A-Za-z0-9._+/-]{1,512}$")
_GRUB_PATH_RE = re.compile(r"^[A-Za-z0-9._+/:-]{1,512}$")


class BadRequest(ValueError):
    pass


def client_from(query) -> Client:
    """Normalise the identifiers in a boot request; ValueError names what is wrong."""
    macs = []
    for raw in query.getlist("mac")[:8]:
        if raw:
            macs.append(normalize_mac(raw))
    uuid = query.get("uuid") or None
    if uuid:
        try:
            uuid = normalize_uuid(uuid)
        except ValueError:
            uuid = None  # firmware placeholders and junk are not identities
    serial = query.get("serial") or None
    if serial:
        try:
            serial = normalize_pi_serial(serial)
        except ValueError:
            serial = None  # SMBIOS serials do not identify machines here
    arch = query.get("arch")
    platform = query.get("platform")
    return Client(
        macs=tuple(macs),
        uuid=uuid,
        serial=serial,
        arch=BUILDARCH.get(arch, arch if arch in BUILDARCH.values() else None),
        firmware=PLATFORM.get(platform, platform if platform in PLATFORM.values() else None),
    )


def poll_url(base_url: str) -> str:
    return (
        f"{base_url}/boot/ipxe?mac=${{net0/mac}}&uuid=${{uuid}}&serial=${{serial}}"
        "&arch=${buildarch}&platform=${platform}&round=${pb_round}"
    )


def waited_rounds(query) -> int:
    """How many poll rounds a waiting machine has already waited (junk: none)."""
    raw = query.get("round", "")
    return min(int(raw), 1_000_000) if raw.isascii() and raw.isdigit() and len(raw) < 8 else 0


@require_safe
def boot_ipxe(request):
    """``GET/HEAD /boot/ipxe?mac=…&uuid=…&serial=…&arch=…&platform=…``: an iPXE script."""
    try:
        client = client_from(request.GET)
    except ValueError as exc:
        _refused(request, str(exc))
        return HttpResponseBadRequest(f"{exc}\n", content_type="text/plain; charset=utf-8")
    if not (client.macs or client.uuid or client.serial):
        _refused(request, "no mac, uuid or serial")
        return HttpResponseBadRequest(
            "Send at least one of mac, uuid, serial.\n", content_type="text/plain; charset=utf-8"
        )
    base_url = public_base_url(request)
    answer = handle_boot(
        client,
        base_url=base_url,
        source=request.META.get("REMOTE_ADDR", ""),
        protocol=Protocol.HTTP,
        asked=_asked(request),
        via="iPXE script",
    )
    if answer.decision.kind == Kind.IGNORE:
        raise Http404("No boot answer for this machine.")
    node = answer.node
    body = ipxe.render(
        answer.decision,
        node_name=str(node) if node else "unknown machine",
        state=node.state if node else "unknown",
        poll_url=poll_url(base_url),
        poll_seconds=settings.PUREBOOT_BOOT_POLL_SECONDS,
        wait_seconds=settings.PUREBOOT_BOOT_WAIT_SECONDS,
        install=answer.install,
        waited_rounds=waited_rounds(request.GET),
    )
    response = HttpResponse(body, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def next_instructions(request):
    """``GET /api/v1/next?mac=…``: what the machine would be told now, as JSON. Read-only.

    Anyone on the boot network may ask, so the answer is only what a booting
    machine needs: what to do (``install``, ``wait``, ``local``, ``ignore``).
    A signed-in user who may see the node also gets its id, state, workflow,
    boot files and tasks.
    """
    try:
        client = client_from(request.GET)
    except ValueError as exc:
        _refused(request, str(exc))
        return JsonResponse({"detail": str(exc), "code": "invalid"}, status=400)
    if not (client.macs or client.uuid or client.serial):
        _refused(request, "no mac, uuid or serial")
        return JsonResponse(
            {"detail": "Send at least one of mac, uuid, serial.", "code": "invalid"}, status=400
        )
    node = find_node(client)
    decision = decide(facts(node) if node else None, client, policy())
    records.record_decision(
        Protocol.HTTP,
        decision,
        node,
        address=request.META.get("REMOTE_ADDR", ""),
        asked=_asked(request),
        via="next instructions (read-only)",
        mac=client.macs[0] if client.macs else "",
    )
    answer = {"action": decision.kind.value}
    user = request.user
    if node is None or not (user.has_perm("nodes.view_node") and can_access_node(user, node)):
        return JsonResponse(answer)
    version = node.workflow_version
    tasks = version.tasks if version else []
    boot = next((t for t in tasks if t["type"] == "pxe_boot"), {})
    return JsonResponse(
        {
            **answer,
            "node": node.pk,
            "state": node.state,
            "reason": decision.reason,
            "workflow": version.workflow.name if version else None,
            "version": version.number if version else None,
            "kernel": boot.get("kernel") or None,
            "initrd": boot.get("initrd") or None,
            "boot_image": boot.get("boot_image") or None,
            "tasks": [t["type"] for t in tasks],
            "post_install": [t["script"] for t in tasks if t["type"] == "script_run"],
        }
    )


@require_safe
def boot_file(request, path: str):
    """``GET/HEAD /boot/files/<path>``: bootloaders, kernels, initrds from the boot root.

    A file sent is recorded by address only (the URL names no machine): one
    row per file and client, the range requests of a big file folding into
    its ``repeats``. A 404 is not recorded: bad paths cost no query at all.
    """
    target, relative = _boot_target(path)
    _file_record(request, Outcome.FILE_SENT, f"boot file {relative}")
    return _serve(request, target, relative)


# What makes UEFI HTTP Boot give up at once and try the next boot option.
FALL_THROUGH = frozenset({Kind.LOCAL, Kind.IGNORE})


@require_safe
def http_boot_file(request, path: str):
    """``GET/HEAD /boot/http/<path>``: the UEFI HTTP Boot first stage, or a fast 404.

    The firmware's URL carries no MAC, so the client is ``?mac=`` when given,
    else whoever dnsmasq leased the request's source address to. A machine
    that should boot its disk (or get no answer) is refused at once, so the
    firmware moves on to its disk instead of timing out; every other machine,
    and one that cannot be recognised, gets the file. Read-only: the iPXE
    request that follows registers, installs and records.
    """
    target, relative = _boot_target(path)  # a bad path: 404, no query, no record
    try:
        client = _http_boot_client(request)
    except ValueError as exc:
        _refused(request, str(exc))
        return HttpResponseBadRequest(f"{exc}\n", content_type="text/plain; charset=utf-8")
    decision, node = peek(client) if client is not None else (None, None)
    if decision is not None and decision.kind in FALL_THROUGH:
        response = HttpResponseNotFound(
            "No network boot for this machine.\n", content_type="text/plain; charset=utf-8"
        )
        records.record_decision(
            Protocol.HTTP,
            decision,
            node,
            address=request.META.get("REMOTE_ADDR", ""),
            asked=_asked(request),
            via="UEFI HTTP Boot refused at once (404)",
            mac=client.macs[0] if client.macs else "",
        )
    else:
        response = _serve(request, target, relative)
        records.record_boot(
            Protocol.HTTP,
            Outcome.FILE_SENT,
            address=request.META.get("REMOTE_ADDR", ""),
            mac=client.macs[0] if client is not None and client.macs else "",
            node_id=node.pk if node is not None else None,
            site_id=node.site_id if node is not None else None,
            node_state=node.state if node is not None else "",
            asked=_asked(request),
            answer=f"UEFI HTTP Boot first stage {relative}",
        )
    # The answer depends on the machine, not only on the URL.
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def grub_http(request, path: str):
    """``GET/HEAD /grub-arm64/<path>``: what the ARM64 GRUB asks for after a UEFI HTTP Boot.

    Loaded by HTTP Boot, ``grubnetaa64.efi``'s root is the controller over
    HTTP and its prefix ``/grub-arm64``, so it fetches its modules and its
    configs here, exactly as it would over TFTP: the same answers
    (``tftp_files.resolve``; a per-machine config is a boot request).
    """
    relative = f"{grub.ARM64_PREFIX}/{path}"
    # ':' too: PureBoot's grub.cfg asks again as grub.cfg-<mac-with-colons>.
    if not _GRUB_PATH_RE.match(relative) or ".." in relative.split("/"):
        raise Http404("No such boot file.")
    source = request.META.get("REMOTE_ADDR", "")
    result = tftp_files.resolve(relative, (source, 0), protocol=Protocol.HTTP)
    if result is None:
        raise Http404("No such boot file.")
    if isinstance(result, Path):
        root = Path(settings.PUREBOOT_BOOT_ROOT).resolve()
        return _serve(request, result, str(result.relative_to(root)))
    response = HttpResponse(result, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def _asked(request) -> str:
    """What the machine asked for: the path and query, as sent (cleaned by the recorder)."""
    query = request.META.get("QUERY_STRING", "")
    return f"{request.path}?{query}" if query else request.path


def _refused(request, why: str) -> None:
    """Record a malformed boot request (answered 400)."""
    records.record_boot(
        Protocol.HTTP,
        Outcome.REFUSED,
        address=request.META.get("REMOTE_ADDR", ""),
        asked=_asked(request),
        answer=f"bad request: {why}",
    )


def _file_record(request, outcome: str, answer: str) -> None:
    records.record_boot(
        Protocol.HTTP,
        outcome,
        address=request.META.get("REMOTE_ADDR", ""),
        asked=_asked(request),
        answer=answer,
    )


def _http_boot_client(request) -> Client | None:
    client = client_from(request.GET)
    if client.macs or client.uuid or client.serial:
        return replace(client, firmware=client.firmware or Firmware.UEFI)
    mac = leases.mac_for(request.META.get("REMOTE_ADDR", ""))
    if mac is None:
        return None
    return Client(macs=(mac,), firmware=Firmware.UEFI)


def _boot_target(path: str) -> tuple[Path, str]:
    """The file ``path`` names under the boot root and its path there; Http404 if none."""
    if not _PATH_RE.match(path) or ".." in path.split("/"):
        raise Http404("No such boot file.")
    root = Path(settings.PUREBOOT_BOOT_ROOT).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise Http404("No such boot file.")
    return target, str(target.relative_to(root))


def _serve(request, target: Path, relative: str):
    """The file itself, or (PUREBOOT_ACCEL_REDIRECT set) nginx told to send it."""
    stat = target.stat()
    return serve_file(
        request,
        target,
        relative=relative,
        etag=f"{int(stat.st_mtime)}-{stat.st_size}",
        filename=target.name,
        accel_location=settings.PUREBOOT_ACCEL_BOOT_PREFIX,
    )
