"""The apps' layering (.importlinter) holds, with no import hidden in a function.

ARCHITECTURE: dependencies flow one way; no function-level import dodges a
cycle. import-linter checks every import, wherever it stands; the AST walk
below also refuses a function-level import of another of our apps, since such
an import is how a cycle usually hides.
"""

from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _apps() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    return config["importlinter"]["root_packages"].split()


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists() or shutil.which("lint-imports"), (
        "lint-imports (the import-linter package, a dev dependency) is missing"
    )
    result = subprocess.run(
        [str(lint) if lint.exists() else "lint-imports", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _function_level_imports(path: Path, apps: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    own = path.relative_to(ROOT).parts[0]
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in apps and top != own:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    return found


def test_no_app_is_imported_inside_a_function():
    apps = set(_apps())
    found = []
    for app in apps:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            found += _function_level_imports(path, apps)
    assert not found, "\n".join(found)


def test_a_new_cycle_would_fail(tmp_path):
    """The contract is not vacuous: an audit module importing nodes breaks it."""
    probe = ROOT / "audit" / "_layer_probe.py"
    probe.write_text("import nodes.models  # noqa: F401\n")
    try:
        lint = Path(sys.executable).with_name("lint-imports")
        result = subprocess.run(
            [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    finally:
        probe.unlink()
    assert result.returncode != 0
    assert "audit is not allowed to import nodes" in result.stdout
