"""Debian packages for the agent: resolved, fetched and checked with apt, unpacked with dpkg-deb.

Packages are fetched for the agent's architecture (``pkg:arm64`` for an
aarch64 agent, which needs ``dpkg --add-architecture arm64``), checked
against the SHA-256 in apt's index, cached, and unpacked once.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import BuildError

DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# The tools the agent runs, by package. Libraries come from the dependency closure.
TOOL_PACKAGES = (
    "busybox-static",
    "util-linux",
    "fdisk",
    "nvme-cli",
    "hdparm",
    "sg3-utils",
    "curl",
    "open-iscsi",
    "jq",
    "ca-certificates",
    "zstd",
    "xz-utils",
    "dosfstools",
    "mtools",
    "openssl",
    "e2fsprogs",
    "tar",
)


ALTERNATIVES_LEFT_OUT = frozenset({"libelogind0"})


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str
    filename: str
    sha256: str


def _run(args: list[str], cwd: Path | None = None) -> str:
    if shutil.which(args[0]) is None:
        raise BuildError(f"{args[0]} is missing: build the agent on Debian (apt, dpkg)")
    done = subprocess.run(args, capture_output=True, text=True, cwd=cwd, check=False)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(args[:3])} …: {done.stderr.strip()[-800:]}")
    return done.stdout


def check_architecture(arch: str) -> str:
    deb = DEB_ARCH.get(arch)
    if deb is None:
        raise BuildError(f"unknown architecture {arch!r}; one of {', '.join(DEB_ARCH)}")
    native = _run(["dpkg", "--print-architecture"]).strip()
    if deb != native and deb not in _run(["dpkg", "--print-foreign-architectures"]).split():
        raise BuildError(
            f"apt does not know the {deb} architecture here: run "
            f"`dpkg --add-architecture {deb} && apt-get update` first"
        )
    return deb


def kernel_package(deb: str) -> str:
    """The versioned kernel package the ``linux-image-<arch>`` metapackage depends on."""
    out = _run(["apt-cache", "depends", f"linux-image-{deb}:{deb}"])
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            return line.split()[1].split(":")[0]
    raise BuildError(f"cannot find the kernel behind linux-image-{deb} (apt-get update?)")


def closure(deb: str, roots: list[str]) -> list[str]:
    """``roots`` and the libraries they depend on (recursively), sorted."""
    out = _run(
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *[f"{r}:{deb}" for r in roots],
        ]
    )
    names = {
        line.split(":")[0] for line in out.splitlines() if line and not line.startswith((" ", "<"))
    }
    # Only libraries and the named tools go in: no maintainer-script machinery,
    # and of alternative providers of one library (libsystemd0 | libelogind0)
    # only Debian's default, so no file is provided twice.
    return sorted(
        n
        for n in names
        if (n in roots or n.startswith(("lib", "zlib")))
        and n not in ALTERNATIVES_LEFT_OUT
        and not n.endswith("-perl")  # Perl modules: nothing in the agent runs Perl
    )


def _stanzas(out: str, deb: str) -> list[Package]:
    packages = []
    for stanza in (part for part in out.strip().split("\n\n") if part.strip()):
        fields = {}
        for line in stanza.splitlines():
            if line[:1] not in (" ", "") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Architecture") not in (deb, "all"):
            continue
        packages.append(
            Package(
                fields["Package"],
                fields["Version"],
                fields["Architecture"],
                Path(fields["Filename"]).name,
                fields["SHA256"],
            )
        )
    return packages


def metadata(deb: str, names: list[str]) -> list[Package]:
    """apt's candidate of each package for ``deb`` (or architecture-independent)."""
    out = _run(["apt-cache", "show", "--no-all-versions", *[f"{n}:{deb}" for n in names]])
    packages = {p.name: p for p in _stanzas(out, deb)}
    # A foreign architecture has no "pkg:arm64" for architecture-independent
    # packages: ask for those unqualified.
    rest = [n for n in names if n not in packages]
    if rest:
        out = _run(["apt-cache", "show", "--no-all-versions", *rest])
        packages.update({p.name: p for p in _stanzas(out, deb) if p.name in rest})
    missing = set(names) - set(packages)
    if missing:
        raise BuildError(f"apt has no {deb} candidate for: {', '.join(sorted(missing))}")
    return sorted(packages.values(), key=lambda p: p.name)


def local_name(p: Package) -> str:
    """The name ``apt-get download`` saves a package under (an epoch's colon as %3a)."""
    return f"{p.name}_{p.version.replace(':', '%3a')}_{p.arch}.deb"


def fetch(packages: list[Package], cache: Path, deb: str) -> dict[str, Path]:
    """Download what the cache lacks; every file is checked against apt's SHA-256."""
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [p for p in packages if not (cache / local_name(p)).exists()]
    if wanted:
        names = [
            f"{p.name}={p.version}" if p.arch == "all" else f"{p.name}:{deb}={p.version}"
            for p in wanted
        ]
        _run(["apt-get", "download", *names], cwd=cache)
    files = {}
    for p in packages:
        path = cache / local_name(p)
        if not path.exists():
            raise BuildError(f"apt-get download did not fetch {local_name(p)}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != p.sha256:
            path.unlink()
            raise BuildError(f"{p.filename}: SHA-256 {digest} is not apt's {p.sha256}; removed")
        files[p.name] = path
    return files


def unpack(deb_file: Path, into: Path) -> Path:
    """``dpkg-deb -x`` once per package file; returns its tree."""
    tree = into / deb_file.stem
    if not (tree / ".unpacked").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb_file), str(tree)])
        (tree / ".unpacked").write_text("")
    return tree
