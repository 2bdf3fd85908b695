"""PureBoot stands on its own files: nothing at run or test time reads outside the repository.

A newcomer who cloned the project without anything beside it got 15 failing
tests because the autoinstall schema was read from a sibling folder.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from workflows import installer_checks

ROOT = Path(__file__).resolve().parent.parent
# A path that climbs to the reference folder beside the repository: a
# dot-dot path to it, its name as a quoted path part, or three parent hops
# from a module one level down.
ESCAPES = re.compile(r"""\.\./shared|parent\.parent\.parent|["']shared["']""")


def test_the_autoinstall_schema_ships_with_pureboot():
    schema = installer_checks.AUTOINSTALL_SCHEMA.resolve()
    assert schema.is_relative_to(ROOT), schema
    assert schema.exists()
    notes = (schema.parent / "README.md").read_text()
    assert "subiquity" in notes and "Licence" in notes
    assert installer_checks._load_autoinstall_schema()["type"] == "object"


def test_no_code_reaches_outside_the_repository():
    files = subprocess.run(
        ["git", "ls-files", "*.py", "*.sh", "Makefile", ".ci/*", "*.toml", "*.cfg", "*.j2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert files, "git ls-files found nothing: run the tests from a git checkout"
    this = Path(__file__).relative_to(ROOT).as_posix()
    # (tests/conftest.py also fails the run if anything beside the repository is opened.)
    hits = []
    for name in files:
        if name == this:
            continue
        for number, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            if ESCAPES.search(line):
                hits.append(f"{name}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)
