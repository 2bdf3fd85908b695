"""Installer configurations checked by the distributions' own tools.

``check_installer(task_type, files)`` takes what ``render_installer`` returns
and answers with a list of problems (empty: the installer will accept it).
Each check is the tool the installer itself (or its project) uses:

================== ==========================================================
kickstart          pykickstart's parser, with the syntax version named by
                   ks.cfg's ``#version=`` line (RHEL9, F40, ...); parse
                   errors, deprecation and parse warnings are all problems.
ubuntu_autoinstall YAML parse of every file; the ``autoinstall`` section
                   against subiquity's JSON schema
                   (``workflows/schemas/autoinstall-schema.json``, shipped
                   with PureBoot) with ``jsonschema``, plus top-level keys the
                   schema does not know (subiquity ignores them with only a
                   log warning, so a typo would silently drop a section);
                   then ``cloud-init schema`` on user-data, on its nested
                   ``user-data`` (the installed system's cloud-config) and on
                   vendor-data.
cloud_init         ``cloud-init schema --config-file`` on user-data and
                   vendor-data (schema errors and deprecations), YAML parse
                   and ``instance-id`` of meta-data.
debian_preseed     ``debconf-set-selections --checkonly`` against a private,
                   empty debconf database (so that a running apt/dpkg holding
                   the system's lock cannot fail the check); its errors and
                   its warnings (an unknown question type is only a warning
                   there, and the line would be dropped) are problems.
arch_bootstrap,    ``bash -n``. ``shellcheck`` (warnings and errors, not style
raspberrypi_os     notes) runs too *when it is installed*; it is optional,
                   ``bash -n`` is the required tool.
windows_install    ``workflows.unattend.check_unattend`` on autounattend.xml
                   (Setup's own rules: passes, component attributes, encoded
                   passwords, computer name, ...); winpeshl.ini and
                   pureboot.cmd must be non-empty ASCII.
================== ==========================================================

A missing required tool raises ToolMissing: a check never passes because it
could not run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from .unattend import check_unattend

# Shipped with PureBoot (origin and licence: workflows/schemas/README.md).
AUTOINSTALL_SCHEMA = Path(
    os.environ.get("PUREBOOT_AUTOINSTALL_SCHEMA")
    or Path(__file__).resolve().parent / "schemas" / "autoinstall-schema.json"
)
TOOL_TIMEOUT = 60  # seconds; each tool answers in well under one here

# A private debconf configuration: File databases in a temporary folder.
_DEBCONF_CONF = """\
Config: configdb
Templates: templatedb

Name: configdb
Driver: File
Filename: {dir}/config.dat

Name: templatedb
Driver: File
Mode: 644
Filename: {dir}/templates.dat
"""


class ToolMissing(Exception):
    """The tool that checks this kind of installer configuration is not available."""

    def __init__(self, tool: str, provider: str) -> None:
        super().__init__(f"{tool} is not available: install {provider}")
        self.tool = tool
        self.provider = provider


def check_installer(task_type: str, files: dict[str, str]) -> list[str]:
    """Check rendered installer files with the distribution's own tool; return the problems.

    Raises ToolMissing when the tool is not installed, KeyError for an unknown
    task type. Problems name their file (``"ks.cfg: ..."``).
    """
    checker = _CHECKERS[task_type]
    return checker(files)


# --- helpers -------------------------------------------------------------------------------


def _require(command: str, provider: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise ToolMissing(command, provider)
    return path


@contextlib.contextmanager
def _as_file(content: str, name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pureboot-check-") as folder:
        path = Path(folder) / name
        path.write_text(content, encoding="utf-8")
        yield path


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired:
        # A checker that hangs is a failed check, reported as such, not a crash.
        message = f"error: {Path(argv[0]).name} did not finish within {TOOL_TIMEOUT} s"
        return subprocess.CompletedProcess(argv, 124, "", message)


def _missing(files: dict[str, str], *names: str) -> list[str]:
    return [f"{name}: missing" for name in names if name not in files]


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys, which YAML parsers resolve silently (last wins)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key; the parent class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _yaml_load(name: str, content: str) -> tuple[Any, list[str]]:
    try:
        return yaml.load(content, Loader=_StrictLoader), []
    except yaml.YAMLError as exc:
        return None, [f"{name}: not valid YAML: {_one_line(exc)}"]


# --- kickstart -----------------------------------------------------------------------------


def _check_kickstart(files: dict[str, str]) -> list[str]:
    if problems := _missing(files, "ks.cfg"):
        return problems
    try:
        from pykickstart.errors import (
            KickstartDeprecationWarning,
            KickstartError,
            KickstartParseWarning,
            KickstartVersionError,
        )
        from pykickstart.parser import KickstartParser
        from pykickstart.version import makeVersion, stringToVersion
    except ImportError:
        raise ToolMissing("pykickstart", "the PyPI package pykickstart") from None

    content = files["ks.cfg"]
    match = re.search(r"^#version=(\S+)\s*$", content, re.MULTILINE)
    if match is None:
        return ["ks.cfg: no '#version=' line names the kickstart syntax to check against"]
    try:
        handler = makeVersion(stringToVersion(match.group(1)))
    except (KickstartVersionError, KickstartError):
        return [
            f"ks.cfg: this pykickstart has no kickstart syntax {match.group(1)!r} "
            "(a newer pykickstart may)"
        ]

    problems: list[str] = []

    class CollectingParser(KickstartParser):
        # pykickstart's own hook for errorsAreFatal=False: it prints each error to
        # stderr and goes on. Collect them instead, so every problem is reported.
        def _tryFunc(self, fn: Callable[[], Any]) -> None:
            try:
                fn()
            except Exception as exc:  # pykickstart raises assorted types here
                self.errorsCount += 1
                problems.append(f"ks.cfg: {_one_line(exc)}")

    parser = CollectingParser(handler, followIncludes=False, errorsAreFatal=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser.readKickstartFromString(content)
        except KickstartError as exc:
            problems.append(f"ks.cfg: {_one_line(exc)}")
    for warning in caught:
        if issubclass(warning.category, KickstartDeprecationWarning | KickstartParseWarning):
            problems.append(f"ks.cfg: {_one_line(warning.message)}")
    return problems


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())


# --- cloud-init and autoinstall -------------------------------------------------------------


def _cloud_init_schema(name: str, content: str) -> list[str]:
    """``cloud-init schema --config-file``: errors (non-zero exit) and deprecations."""
    tool = _require("cloud-init", "the Debian package cloud-init")
    with _as_file(content, "cloud-config.yaml") as path:
        result = _run([tool, "schema", "--config-file", str(path)])
    output = (result.stdout + "\n" + result.stderr).replace(str(path), name)
    problems = []
    if result.returncode != 0:
        problems.append(f"{name}: cloud-init schema: {_tool_message(output)}")
    # Deprecated keys pass with exit 0 but will break on a newer cloud-init.
    for line in output.splitlines():
        head, sep, rest = line.partition("deprecations:")
        if sep and "schema" in head and rest.strip():
            problems.append(f"{name}: cloud-init schema deprecations: {rest.strip()}")
    return problems


def _tool_message(output: str) -> str:
    lines = [line.strip() for line in output.splitlines()]
    lines = [line for line in lines if line and line not in ("Error:",)]
    return " ".join(lines) or "failed without a message"


def _check_meta_data(files: dict[str, str]) -> list[str]:
    meta, problems = _yaml_load("meta-data", files["meta-data"])
    if problems:
        return problems
    if not isinstance(meta, dict) or not meta.get("instance-id"):
        return ["meta-data: must be a mapping with an instance-id"]
    return []


def _check_cloud_init(files: dict[str, str]) -> list[str]:
    if problems := _missing(files, "user-data", "meta-data"):
        return problems
    problems = _check_meta_data(files)
    for name in ("user-data", "vendor-data"):
        if name in files:
            problems += _yaml_load(name, files[name])[1]
            problems += _cloud_init_schema(name, files[name])
    return problems


def _load_autoinstall_schema() -> dict[str, Any]:
    try:
        return json.loads(AUTOINSTALL_SCHEMA.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolMissing(
            "autoinstall schema", f"subiquity's autoinstall-schema.json at {AUTOINSTALL_SCHEMA}"
        ) from None


def _check_ubuntu_autoinstall(files: dict[str, str]) -> list[str]:
    if problems := _missing(files, "user-data", "meta-data"):
        return problems
    try:
        import jsonschema
    except ImportError:
        raise ToolMissing("jsonschema", "the PyPI package jsonschema") from None
    schema = _load_autoinstall_schema()

    problems = _check_meta_data(files)
    user_data, yaml_problems = _yaml_load("user-data", files["user-data"])
    if yaml_problems:
        return problems + yaml_problems
    if not files["user-data"].startswith("#cloud-config\n"):
        problems.append("user-data: must start with a '#cloud-config' line")
    autoinstall = user_data.get("autoinstall") if isinstance(user_data, dict) else None
    if not isinstance(autoinstall, dict):
        return [*problems, "user-data: has no 'autoinstall' mapping"]

    validator_class = jsonschema.validators.validator_for(schema)
    for error in validator_class(schema).iter_errors(autoinstall):
        where = ".".join(str(p) for p in error.absolute_path) or "(top)"
        problems.append(f"user-data: autoinstall.{where}: {error.message}")
    unknown = sorted(set(autoinstall) - set(schema["properties"]))
    problems += [f"user-data: autoinstall.{key}: not an autoinstall key" for key in unknown]

    problems += _cloud_init_schema("user-data", files["user-data"])
    target_user_data = autoinstall.get("user-data")
    if isinstance(target_user_data, dict) and target_user_data:
        nested = "#cloud-config\n" + yaml.safe_dump(target_user_data)
        problems += _cloud_init_schema("user-data (autoinstall.user-data)", nested)
    if "vendor-data" in files:
        problems += _yaml_load("vendor-data", files["vendor-data"])[1]
        problems += _cloud_init_schema("vendor-data", files["vendor-data"])
    return problems


# --- preseed -------------------------------------------------------------------------------


def _check_debian_preseed(files: dict[str, str]) -> list[str]:
    if problems := _missing(files, "preseed.cfg"):
        return problems
    tool = _require("debconf-set-selections", "the Debian package debconf")
    with tempfile.TemporaryDirectory(prefix="pureboot-debconf-") as folder:
        conf = Path(folder) / "debconf.conf"
        conf.write_text(_DEBCONF_CONF.format(dir=folder), encoding="utf-8")
        preseed = Path(folder) / "preseed.cfg"
        preseed.write_text(files["preseed.cfg"], encoding="utf-8")
        env = {**os.environ, "DEBCONF_SYSTEMRC": str(conf), "HOME": folder}
        result = _run([tool, "--checkonly", str(preseed)], env=env)
    problems = [
        f"preseed.cfg: {line.strip()}"
        for line in result.stderr.splitlines()
        if line.startswith(("error:", "warning:"))
    ]
    if result.returncode != 0 and not problems:
        problems.append(f"preseed.cfg: debconf-set-selections: {_tool_message(result.stderr)}")
    return problems


# --- shell scripts -------------------------------------------------------------------------


def _shell_checker(name: str) -> Callable[[dict[str, str]], list[str]]:
    def check(files: dict[str, str]) -> list[str]:
        if problems := _missing(files, name):
            return problems
        bash = _require("bash", "the Debian package bash")
        with _as_file(files[name], name) as path:
            result = _run([bash, "-n", str(path)])
            problems = [
                f"{name}: bash -n: {line.replace(str(path), name)}"
                for line in result.stderr.splitlines()
                if line.strip()
            ]
            if result.returncode != 0 and not problems:
                problems.append(f"{name}: bash -n failed (exit {result.returncode})")
            shellcheck = shutil.which("shellcheck")
            if shellcheck and not problems:
                sc = _run(
                    [shellcheck, "--shell=bash", "--severity=warning", "--format=gcc", str(path)]
                )
                problems += [
                    f"{name}: shellcheck: {line.replace(str(path), name)}"
                    for line in sc.stdout.splitlines()
                    if line.strip()
                ]
                if sc.returncode != 0 and not sc.stdout.strip():
                    problems.append(f"{name}: shellcheck: {_tool_message(sc.stderr)}")
        return problems

    return check


# --- Windows ----------------------------------------------------------------------------------


def _check_windows_install(files: dict[str, str]) -> list[str]:
    if problems := _missing(files, "autounattend.xml", "winpeshl.ini", "pureboot.cmd"):
        return problems
    problems = [f"autounattend.xml: {p}" for p in check_unattend(files["autounattend.xml"])]
    for name in ("winpeshl.ini", "pureboot.cmd"):
        if not files[name].strip():
            problems.append(f"{name}: empty")
        elif not files[name].isascii():
            problems.append(f"{name}: WinPE reads it in its code page: ASCII characters only")
    return problems


_CHECKERS: dict[str, Callable[[dict[str, str]], list[str]]] = {
    "kickstart": _check_kickstart,
    "ubuntu_autoinstall": _check_ubuntu_autoinstall,
    "cloud_init": _check_cloud_init,
    "debian_preseed": _check_debian_preseed,
    "arch_bootstrap": _shell_checker("bootstrap.sh"),
    "raspberrypi_os": _shell_checker("firstrun.sh"),
    "windows_install": _check_windows_install,
}
