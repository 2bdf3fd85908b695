"""The per-node context installer templates render with."""

from __future__ import annotations

import shlex
from typing import Any

from django.conf import settings

from nodes.models import Node

from . import domainjoin
from .models import WorkflowRun, WorkflowVersion
from .registry import TASK_TYPES
from .rendering import RenderError
from .windows_context import windows_context

PREVIEW_TOKEN = "PREVIEW-TOKEN-ISSUED-AT-INSTALL"


def public_base_url(request=None) -> str:
    """Where nodes reach the controller: PUREBOOT_PUBLIC_URL, else the request's host."""
    if settings.PUREBOOT_PUBLIC_URL:
        return settings.PUREBOOT_PUBLIC_URL.rstrip("/")
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    return "http://127.0.0.1:8000"


def installer_task(version: WorkflowVersion) -> dict[str, Any] | None:
    for task in version.tasks:
        if TASK_TYPES[task["type"]].renders:
            return task
    return None


def node_context(
    node: Node,
    version: WorkflowVersion,
    *,
    token: str,
    base_url: str,
    run: WorkflowRun | None = None,
) -> dict[str, Any]:
    """Everything a template may use about ``node`` for this workflow version.

    With ``run`` the files are for the node itself, fetching them with its
    token: a Windows install's secrets (local Administrator, product key, the
    domain join's password or offline-join blob) are revealed, audited.
    Without, they read as placeholders (the preview).
    """
    interfaces = [
        {"mac": i.mac, "name": i.name, "is_primary": i.is_primary} for i in node.interfaces.all()
    ]
    primary = next((i["mac"] for i in interfaces if i["is_primary"]), "")
    task = installer_task(version) or {}
    params = {k: v for k, v in task.items() if k != "type"}
    if task:
        params = _fold_steps(version.tasks, params, base_url)
    hostname, _, domain = (node.hostname or f"node-{node.pk}").partition(".")
    context = {
        "node": {
            "id": node.pk,
            "hostname": hostname,
            "domain": domain,
            "arch": node.arch,
            "firmware": node.firmware,
            "serial": node.serial,
            "system_uuid": str(node.system_uuid) if node.system_uuid else None,
            "vendor": node.vendor,
            "model": node.model,
            "site": node.site.slug if node.site_id else None,
            "interfaces": interfaces,
            "primary_mac": primary,
            "metadata": node.metadata,
        },
        "params": params,
        "install": {
            "report_url": f"{base_url}/api/v1/report",
            "token": token,
            "config_url": f"{base_url}/api/v1/install/{token}/",
        },
    }
    if task.get("type") == "windows_install":
        served = run is not None
        if served and run.disk_written_at is not None:
            # WinPE is done; Setup goes on from the disk: its secrets are not handed out again.
            raise RenderError(
                "windows_install: Windows Setup wrote the disk and continues from it; "
                "its WinPE files are not served again"
            )
        join = next((t for t in version.tasks if t["type"] == "domain_join"), None)
        try:  # first: a join not ready yet reveals nothing else either
            context["join"] = domainjoin.join_context(join, node, run, reveal=served)
        except domainjoin.DomainJoinError as exc:
            raise RenderError(f"domain_join: {exc}") from None
        context["windows"] = windows_context(node, version, params, run=run, served=served)
    return context


def _fold_steps(tasks: list[dict], params: dict, base_url: str) -> dict:
    """Render the Linux steps that follow an installer into its config.

    ``package_install`` adds its packages and ``script_run`` its script to the
    installer's ``packages``/``post_install``, so they run inside the install.
    A script that is a URL or an absolute path (served by this controller) is
    downloaded and run; anything else is the script's own text.
    """
    packages = list(params.get("packages", []))
    post = list(params.get("post_install", []))
    seen_installer = False
    for task in tasks:
        if TASK_TYPES[task["type"]].renders:
            seen_installer = True
            continue
        if not seen_installer:
            continue
        if task["type"] == "package_install" and task["manager"] in (
            "auto",
            "apt",
            "dnf",
            "yum",
            "pacman",
        ):
            packages += [p for p in task["packages"] if p not in packages]
        elif task["type"] == "script_run" and task["interpreter"] in ("bash", "sh", "python"):
            post.append(_script_command(task, base_url))
    return {**params, "packages": packages, "post_install": post}


def _script_command(task: dict, base_url: str) -> str:
    script, interpreter = task["script"], task["interpreter"]
    runner = {"bash": "bash", "sh": "sh", "python": "python3"}[interpreter]
    args = " ".join(shlex.quote(a) for a in task.get("args", []))
    if script.startswith(("http://", "https://", "/")):
        url = script if "://" in script else f"{base_url}{script}"
        return f"curl -fsSL {shlex.quote(url)} | {runner} -s -- {args}".rstrip()
    return f"{runner} -c {shlex.quote(script)} {runner} {args}".rstrip()


def run_context(run: WorkflowRun, token: str, base_url: str) -> dict[str, Any]:
    return node_context(run.node, run.version, token=token, base_url=base_url, run=run)
