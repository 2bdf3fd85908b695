"""Render what a node is (or would be) served by its pinned workflow version."""

from __future__ import annotations

from typing import Any

from nodes.models import Node

from .context import PREVIEW_TOKEN, installer_task, node_context, public_base_url
from .models import WorkflowRun, WorkflowVersion


class NothingToPreview(Exception):
    """The node has no pinned workflow version, or it has no installer task."""


def _render(
    node: Node, version: WorkflowVersion, token: str, base_url: str, run: WorkflowRun | None = None
) -> dict[str, str]:
    from .rendering import render_installer

    task = installer_task(version)
    if task is None:
        return {}
    return render_installer(
        task["type"], node_context(node, version, token=token, base_url=base_url, run=run)
    )


def file_names(run: WorkflowRun) -> list[str]:
    """The installer files ``run``'s node is served (none: no installer task)."""
    from .rendering import INSTALLER_FILES

    task = installer_task(run.version)
    return list(INSTALLER_FILES.get(task["type"], {})) if task else []


def render_for_run(run: WorkflowRun, token: str, request=None) -> dict[str, str]:
    """The files the node holding ``run``'s token is served (its secrets revealed)."""
    files = _render(run.node, run.version, token, public_base_url(request), run=run)
    if not files:
        raise NothingToPreview("This workflow has no installer files.")
    return files


def preview_node(node: Node, request=None) -> dict[str, Any]:
    """The operator's dry run: the files, and what the distributions' checkers say."""
    from .installer_checks import ToolMissing, check_installer
    from .rendering import RenderError

    version = node.workflow_version
    if version is None:
        raise NothingToPreview(
            f"Node {node.pk} has no workflow assigned; assign one to see what it would get."
        )
    task = installer_task(version)
    result: dict[str, Any] = {
        "node": node.pk,
        "state": node.state,
        "workflow": version.workflow.name,
        "version": version.number,
        "tasks": version.tasks,
        "installer": task["type"] if task else None,
        "token_note": f"{PREVIEW_TOKEN} stands for the token issued when the install starts.",
        "files": {},
        "checks": {"ok": True, "problems": [], "tool_missing": None},
    }
    if task is None:
        return result
    try:
        files = _render(node, version, PREVIEW_TOKEN, public_base_url(request))
    except RenderError as exc:
        result["checks"] = {"ok": False, "problems": [str(exc)], "tool_missing": None}
        return result
    result["files"] = files
    try:
        problems = check_installer(task["type"], files)
        result["checks"] = {"ok": not problems, "problems": problems, "tool_missing": None}
    except ToolMissing as exc:
        result["checks"] = {"ok": None, "problems": [], "tool_missing": str(exc)}
    return result
