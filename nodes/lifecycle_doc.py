"""Render the lifecycle declared in ``nodes.lifecycle`` as Markdown (table + Mermaid)."""

from __future__ import annotations

from . import lifecycle as lc

HEADER = """# Node lifecycle

Generated from `nodes/lifecycle.py` by `python manage.py lifecycle_doc > docs/lifecycle.md`;
a test fails when this file and the code disagree.

"""


def render() -> str:
    lines = [HEADER, "```mermaid", "stateDiagram-v2", "    [*] --> discovered"]
    for action in lc.ACTIONS.values():
        for source in action.sources:
            lines.append(f"    {source} --> {action.target}: {action.name}")
    lines += [
        "```",
        "",
        "| action | from | to | who may | needs second approval |",
        "|---|---|---|---|---|",
    ]
    for action in lc.ACTIONS.values():
        who = "system" if action.system_only else f"`{action.permission}`"
        if action.name == "activate":
            who += " or system"
        gate = "no"
        if action.four_eye_states:
            gate = "yes, from " + ", ".join(action.four_eye_states)
        if action.four_eye_if_ever_installed:
            gate = "yes, for a machine PureBoot ever installed"
        sources = ", ".join(action.sources) if action.name != "retire" else "any but retired"
        lines.append(f"| {action.name} | {sources} | {action.target} | {who} | {gate} |")
    return "\n".join(lines) + "\n"
