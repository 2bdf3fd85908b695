"""Following binaries to their shared libraries, for any architecture (pyelftools).

The libraries are looked up in the unpacked Debian packages, never on the
build host: an arm64 agent built on x86 gets arm64 libraries.
"""

from __future__ import annotations

import os
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from . import BuildError


def needed(path: Path) -> tuple[list[str], str | None]:
    """(DT_NEEDED names, PT_INTERP path or None) of one ELF file."""
    try:
        with path.open("rb") as handle:
            elf = ELFFile(handle)
            libs: list[str] = []
            interp = None
            for segment in elf.iter_segments():
                if segment["p_type"] == "PT_INTERP":
                    interp = segment.get_interp_name()
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    libs += [t.needed for t in section.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
            return libs, interp
    except ELFError:
        return [], None  # a script


def resolve(root: Path, name: str, dirs: list[str]) -> Path | None:
    for directory in dirs:
        candidate = root / directory.lstrip("/") / name
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None


def follow(root: Path, path: Path) -> Path:
    """Resolve ``path``'s symlinks inside ``root`` (absolute targets are relative to it)."""
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        base = root / target.lstrip("/") if target.startswith("/") else path.parent / target
        path = Path(os.path.normpath(base))
        if root not in path.parents:
            raise BuildError(f"{path}: a link leaves the package tree")
    raise BuildError(f"{path}: too many symbolic links")


def closure(root: Path, binaries: list[Path], dirs: list[str]) -> set[Path]:
    """Every library (and the loader) ``binaries`` need, as paths inside ``root``.

    Both a library's name (often a symlink) and the file it points to are
    returned, so the agent's tree has the same links as an installed system.
    """
    found: set[Path] = set()
    todo = [follow(root, b) for b in binaries]
    seen: set[Path] = set()
    while todo:
        real = todo.pop()
        if real in seen:
            continue
        seen.add(real)
        libs, interp = needed(real)
        if interp:
            loader = root / interp.lstrip("/")
            if not (loader.exists() or loader.is_symlink()):
                raise BuildError(f"{real.name} needs the loader {interp}, which no package has")
            found |= {loader, follow(root, loader)}
        for lib in libs:
            hit = resolve(root, lib, dirs)
            if hit is None:
                raise BuildError(f"{real.relative_to(root)} needs {lib}, which no package provides")
            target = follow(root, hit)
            found |= {hit, target}
            todo.append(target)
    return found
