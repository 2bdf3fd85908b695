"""Build and run govmomi's vCenter simulator (``main.go`` beside this file).

This is not a fake of ours: it is VMware's own simulator of the vSphere Web
Services API (govmomi's ``simulator`` package), compiled offline with
Debian's Go toolchain against the govmomi sources Debian ships, in GOPATH
mode (Debian's ``/usr/share/gocode`` is a GOPATH tree, not a module cache)::

    GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= CGO_ENABLED=0 \\
        go build -o vcsim tests/hypervisors/vcsim/main.go

Debian packages: golang-go, golang-github-vmware-govmomi-dev (which pulls in
golang-github-google-uuid-dev, the simulator's only other dependency).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.hypervisors.fakes.common import TLSFiles

HERE = Path(__file__).resolve().parent
GOPATH = Path("/usr/share/gocode")
# Debian package -> a path it installs that the build needs.
PACKAGES = {
    "golang-github-vmware-govmomi-dev": "src/github.com/vmware/govmomi/simulator",
    "golang-github-google-uuid-dev": "src/github.com/google/uuid",
}


class VcsimUnavailable(Exception):
    """The simulator cannot be built or started here; the message says why."""


def missing_packages(gopath: Path = GOPATH, path: str | None = None) -> list[str]:
    """The Debian packages the build needs that are not installed (``go`` is
    looked up on ``path``, by default $PATH)."""
    missing = [] if shutil.which("go", path=path) else ["golang-go"]
    missing += [pkg for pkg, path in PACKAGES.items() if not (gopath / path).is_dir()]
    return missing


def build(out_dir: Path, cache_dir: Path) -> Path:
    """Compile main.go into ``out_dir``; Go's build cache in ``cache_dir`` makes
    a rebuild with unchanged sources take a second."""
    missing = missing_packages()
    if missing:
        raise VcsimUnavailable(
            "the vCenter simulator cannot be built: install the Debian package(s) "
            + " ".join(missing)
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / "vcsim"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cache_dir),
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
        "GOCACHE": str(cache_dir),
    }
    result = subprocess.run(
        ["go", "build", "-o", str(binary), str(HERE / "main.go")],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise VcsimUnavailable(f"go build of the vCenter simulator failed:\n{result.stderr}")
    return binary


@dataclass
class Vcsim:
    """A running simulator: its SDK URL, its datastore's directory, its process."""

    url: str
    datastore_dir: Path
    ca_pem: str
    process: subprocess.Popen

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.url).port or 443

    def fail_next(self, method: str, fault: str) -> None:
        """Make the next call of ``method`` (a ``*_Task``) return a failed task."""
        query = urllib.parse.urlencode({"method": method, "fault": fault})
        base = self.url.rsplit("/sdk", 1)[0]
        context = ssl.create_default_context(cadata=self.ca_pem)
        request = urllib.request.Request(f"{base}/pureboot/fail-next?{query}", method="POST")
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            assert answer.status == 204, answer.status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                stream.close()


def start(binary: Path, tls: TLSFiles, username: str, password: str, workdir: Path) -> Vcsim:
    """Start the simulator on a free loopback port (the kernel picks it) and
    wait for the line that gives its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TMPDIR": str(workdir),  # the datastore's files go here
        "VCSIM_USERNAME": username,
        "VCSIM_PASSWORD": password,
    }
    log = (workdir / "vcsim.log").open("w")
    process = subprocess.Popen(
        [
            str(binary),
            "-listen",
            "127.0.0.1:0",
            "-cert",
            str(tls.certfile),
            "-key",
            str(tls.keyfile),
        ],
        stdin=subprocess.PIPE,  # closed when this process ends: the simulator exits
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
    )
    log.close()
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(60)
    if not first or not first[0].strip():
        process.kill()
        process.wait()
        raise VcsimUnavailable(
            "the vCenter simulator did not start: " + (workdir / "vcsim.log").read_text()[-2000:]
        )
    info = json.loads(first[0])
    return Vcsim(info["url"], Path(info["datastore_dir"]), tls.ca_pem, process)
