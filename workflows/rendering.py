"""Installer configuration rendering: the files a node is served for its installer task.

Templates live in ``templates/installers/<task type>/`` and are rendered by a
``SandboxedEnvironment`` with ``StrictUndefined``: a template cannot reach
Python internals, and a variable that the context lacks is an error naming it,
never an empty string in a root password line.

Nothing is escaped automatically (these are YAML, shell, kickstart and
debconf files, not HTML). Every value from the context goes through the
filter for the syntax it lands in instead:

``yaml_quote``
    a YAML double-quoted scalar (``json.dumps`` plus escapes for the few
    characters JSON leaves raw that YAML would read as a line break or reject);
``to_yaml``
    any JSON-like value as one line of YAML flow style (operator-supplied
    cloud-config);
``shell_quote``
    ``shlex.quote``: one shell word, whatever it contains;
``ks_quote``
    one kickstart argument (kickstart lines are split with ``shlex``, so it is
    ``shell_quote`` after ``oneline``);
``preseed_value``
    a debconf value, which runs to the end of its line: ``oneline``, and no
    trailing backslash (debconf-set-selections would join the next line);
``oneline``
    refuses values with a line break, for line-oriented formats;
``package``
    refuses anything but a package name (letters, digits and ``@^_+.:*=/~<>-``,
    not starting with ``-`` unless ``allow_exclude=True``, kickstart's exclusion):
    a name is also an argument of apt-get, pacman or a kickstart section line;
``b64``
    base64 of the UTF-8 text, to carry operator scripts through formats that
    cannot quote them (a ``%end`` line would close a kickstart ``%post``);
``json``
    compact JSON (report bodies);
``fqdn``
    ``node.hostname`` plus ``.node.domain`` when there is one;
``urlsplit``
    ``urllib.parse.urlsplit`` (mirror host and path for debconf).

The windows_install templates (autounattend.xml, winpeshl.ini, pureboot.cmd)
have their own filters and globals (``xml``, ``win_password``, ``ps_encoded``,
``cmd_safe``, ``ps_quote``, ``cmd_report``, ``first_logon``, ...), described in
``workflows.windows_render``; winpeshl.ini and pureboot.cmd are served with
CRLF line ends.

``report(status, progress, message, tool="curl", attempts=1, delay=10)`` is a
template global that returns the shell command by which the node reports its
progress to ``install.report_url`` with its ``install.token``; it always ends
in ``|| true`` so that a controller outage never fails an installation. With
``attempts`` above 1 it is a loop (``for attempt in 1 2 ...; do <request> &&
break; ...; sleep <delay>; done || true``) that repeats the request after any
failure, for a network that may not be up yet; each request then has no
retries of its own.

The first boot (``installed -> active``)
    The controller accepts ``{"status": "active"}`` with the install's token for
    24 hours after the ``installed`` report. Installers after which the
    installed system boots from its disk (ubuntu_autoinstall, kickstart,
    debian_preseed, arch_bootstrap) write, through the macros of
    ``_shared/first_boot.j2``, a one-shot unit ``pureboot-first-boot.service``
    (after ``network-online.target``, wanted by ``multi-user.target``) into the
    installed system and enable it; it runs ``/usr/local/sbin/pureboot-first-boot``
    (mode 700: it holds the token), which sends the report with a few attempts,
    then the unit disables itself and removes both files. cloud_init and
    raspberrypi_os already finish on the installed system's first boot, after
    the network is up: they send ``active`` right after ``installed``.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment

from . import windows_render

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "installers"

# The files served for each installer task type: served name -> template.
INSTALLER_FILES: dict[str, dict[str, str]] = {
    "ubuntu_autoinstall": {
        "user-data": "ubuntu_autoinstall/user-data.j2",
        "meta-data": "nocloud/meta-data.j2",
        "vendor-data": "nocloud/vendor-data.j2",
    },
    "debian_preseed": {"preseed.cfg": "debian_preseed/preseed.cfg.j2"},
    "kickstart": {"ks.cfg": "kickstart/ks.cfg.j2"},
    "arch_bootstrap": {"bootstrap.sh": "arch_bootstrap/bootstrap.sh.j2"},
    "raspberrypi_os": {"firstrun.sh": "raspberrypi_os/firstrun.sh.j2"},
    "cloud_init": {
        "user-data": "cloud_init/user-data.j2",
        "meta-data": "nocloud/meta-data.j2",
        "vendor-data": "nocloud/vendor-data.j2",
    },
    "windows_install": {
        "autounattend.xml": "windows_install/autounattend.xml.j2",
        "winpeshl.ini": "windows_install/winpeshl.ini.j2",
        "pureboot.cmd": "windows_install/pureboot.cmd.j2",
    },
}

# The file the installer runs or reads its answers from; it carries the progress reports.
MAIN_FILE: dict[str, str] = {
    "ubuntu_autoinstall": "user-data",
    "debian_preseed": "preseed.cfg",
    "kickstart": "ks.cfg",
    "arch_bootstrap": "bootstrap.sh",
    "raspberrypi_os": "firstrun.sh",
    "cloud_init": "user-data",
    "windows_install": "pureboot.cmd",
}

# Files WinPE reads with Windows line ends (cmd.exe mis-reads labels in LF-only batch files).
CRLF_FILES = frozenset({"winpeshl.ini", "pureboot.cmd"})

# cloud-config keys the cloud_init template writes itself. An operator's
# params.user_data may extend the list-valued ones; any other collision is refused
# rather than silently resolved by whichever duplicate key the YAML parser keeps.
CLOUD_INIT_MERGED_KEYS = frozenset({"packages", "bootcmd", "runcmd"})
CLOUD_INIT_OWN_KEYS = frozenset(
    {
        "hostname",
        "fqdn",
        "locale",
        "keyboard",
        "timezone",
        "users",
        "ssh_pwauth",
        "chpasswd",
        "package_update",
        "apt",
    }
)

KICKSTART_DISTROS = ("fedora", "rocky", "alma")

# Characters that str.splitlines() (pykickstart), Perl's line reading (debconf)
# or a shell would take as the end of a line.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# What YAML (PyYAML, as cloud-init and subiquity use) cannot hold raw inside a
# double-quoted scalar: non-printables, and characters it reads as line breaks.
_YAML_UNSAFE = re.compile(
    "[^\x09\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\u2028\u2029\ufeff]"
)

_PACKAGE = re.compile(r"[A-Za-z0-9@^_+.:*=/~<>-]{1,200}")
# Login names as useradd and Debian's adduser accept them by default.
_USERNAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class _OneLineDumper(yaml.SafeDumper):
    """Double-quotes every string: escapes line breaks instead of folding them."""


_OneLineDumper.add_representer(
    str, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
)


class RenderError(Exception):
    """An installer configuration cannot be rendered from this context."""


class _ValueRefused(Exception):
    """A filter refused a value; render_installer reports it as a RenderError."""


# --- filters -------------------------------------------------------------------------------


def _text(value: Any, what: str) -> str:
    if value is None or isinstance(value, dict | list | tuple):
        raise _ValueRefused(f"{what} needs text, got {type(value).__name__}")
    return str(value)


def yaml_quote(value: Any) -> str:
    """``value`` as a YAML double-quoted scalar; numbers and booleans stay as they are."""
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    quoted = json.dumps(_text(value, "yaml_quote"), ensure_ascii=False)

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    return _YAML_UNSAFE.sub(escape, quoted)


def to_yaml(value: Any) -> str:
    """Any JSON-like value as YAML flow style on one line, every string double-quoted."""
    dumped = yaml.dump(
        value,
        Dumper=_OneLineDumper,
        default_flow_style=True,
        width=float("inf"),
        allow_unicode=False,
        sort_keys=False,
    )
    # A bare scalar is dumped as a document with an end marker ("null\n...\n").
    return dumped.removesuffix("\n...\n").strip()


def shell_quote(value: Any) -> str:
    return shlex.quote(_text(value, "shell_quote"))


def oneline(value: Any) -> str:
    text = _text(value, "oneline")
    if _LINE_BREAKS.search(text) or "\x00" in text:
        raise _ValueRefused(f"a line break is not allowed here: {text[:60]!r}")
    return text


def ks_quote(value: Any) -> str:
    return shlex.quote(oneline(value))


def preseed_value(value: Any) -> str:
    text = oneline(value)
    if text.endswith("\\"):
        raise _ValueRefused(f"a debconf value must not end in a backslash: {text[:60]!r}")
    return text


def package(value: Any, allow_exclude: bool = False) -> str:
    text = _text(value, "package")
    if not _PACKAGE.fullmatch(text) or (text.startswith("-") and not allow_exclude):
        raise _ValueRefused(f"not a package name: {text[:60]!r}")
    return text


def b64(value: Any) -> str:
    return base64.b64encode(_text(value, "b64").encode()).decode("ascii")


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def fqdn(node: Any) -> str:
    return f"{node['hostname']}.{node['domain']}" if node["domain"] else node["hostname"]


# --- globals -------------------------------------------------------------------------------


@jinja2.pass_context
def report(
    ctx: jinja2.runtime.Context,
    status: str,
    progress: int,
    message: str,
    tool: str = "curl",
    attempts: int = 1,
    delay: int = 10,
) -> str:
    """The shell command that reports progress to the controller; it never fails.

    ``attempts`` above 1: a POSIX sh loop that repeats the request after any
    failure (no network yet, a name that does not resolve yet, an error from the
    controller), pausing ``delay`` seconds between attempts.
    """
    install = ctx["install"]
    # Reports sit inside kickstart sections and debconf lines: one line, always.
    oneline(install["token"])
    oneline(install["report_url"])
    if not (isinstance(attempts, int) and 1 <= attempts <= 20):
        raise _ValueRefused(f"report: attempts must be 1 to 20, got {attempts!r}")
    if not (isinstance(delay, int) and 0 <= delay <= 300):
        raise _ValueRefused(f"report: delay must be 0 to 300 seconds, got {delay!r}")
    body = to_json({"status": status, "progress": progress, "logs": [message]})
    auth = shell_quote(f"Authorization: Node {install['token']}")
    url = shell_quote(install["report_url"])
    if tool == "curl":
        # A loop does the retrying itself; one request must not multiply the wait.
        retry = "--retry 3 " if attempts == 1 else ""
        command = (
            f"curl -fsS --max-time 20 {retry}-o /dev/null -X POST -H {auth} "
            f"-H 'Content-Type: application/json' --data {shell_quote(body)} {url}"
        )
    elif tool == "wget":  # busybox wget in the Debian installer
        command = (
            f"wget -q -T 20 -O /dev/null --header {auth} "
            f"--header 'Content-Type: application/json' --post-data {shell_quote(body)} {url}"
        )
    else:
        raise _ValueRefused(f"report: unknown tool {tool!r}")
    if attempts == 1:
        return f"{command} || true"
    numbers = " ".join(str(n) for n in range(1, attempts + 1))
    return (
        f"for attempt in {numbers}; do {command} && break; "
        f'[ "$attempt" = {attempts} ] || sleep {delay}; done || true'
    )


def kickstart_syntax(distro: str, version: Any) -> str:
    """pykickstart's syntax version for a distribution release (``#version=`` line).

    Rocky Linux and AlmaLinux N use Anaconda from RHEL N (``RHELN``); Fedora N
    uses ``FN``. pykickstart decides at check time whether it knows that name.
    """
    major = str(version).strip().split(".")[0]
    if not major.isdigit():
        raise _ValueRefused(f"params.version must start with a release number, got {version!r}")
    if distro == "fedora":
        return f"F{int(major)}"
    if distro in ("rocky", "alma"):
        return f"RHEL{int(major)}"
    raise _ValueRefused(
        f"params.distro must be one of {', '.join(KICKSTART_DISTROS)}, got {distro!r}"
    )


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        yaml_quote=yaml_quote,
        to_yaml=to_yaml,
        shell_quote=shell_quote,
        ks_quote=ks_quote,
        preseed_value=preseed_value,
        oneline=oneline,
        package=package,
        b64=b64,
        json=to_json,
        fqdn=fqdn,
        urlsplit=urlsplit,
        **windows_render.FILTERS,
    )
    env.globals.update(
        **windows_render.GLOBALS,
        report=report,
        kickstart_syntax=kickstart_syntax,
        cloud_init_merged_keys=sorted(CLOUD_INIT_MERGED_KEYS),
    )
    return env


# --- checks that need Python, before any template runs ---------------------------------------


def _check_context(task_type: str, context: dict[str, Any]) -> None:
    if task_type == "windows_install":
        windows_render.check_context(context)
        return
    params = context["params"]
    node = context["node"]
    username = params["username"]
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise _ValueRefused(f"params.username is not a login name: {str(username)[:40]!r}")
    if task_type == "kickstart":
        kickstart_syntax(params["distro"], params["version"])
    elif task_type == "arch_bootstrap":
        if node["arch"] not in ("x86_64", "aarch64"):
            raise _ValueRefused(f"Arch Linux has no {node['arch']} port here")
        if node["arch"] == "aarch64" and node["firmware"] != "uefi":
            raise _ValueRefused("Arch Linux on aarch64 is installed on UEFI firmware only")
    elif task_type == "cloud_init":
        extra = params["user_data"]
        if not isinstance(extra, dict):
            raise _ValueRefused("params.user_data must be a mapping")
        clash = sorted(set(extra) & CLOUD_INIT_OWN_KEYS)
        if clash:
            raise _ValueRefused(
                f"params.user_data.{clash[0]} is set by PureBoot from the task's parameters; "
                "set that parameter instead"
            )
        for key in CLOUD_INIT_MERGED_KEYS & set(extra):
            if not isinstance(extra[key], list):
                raise _ValueRefused(f"params.user_data.{key} must be a list")


def render_installer(task_type: str, context: dict[str, Any]) -> dict[str, str]:
    """Render the files a node is served for ``task_type``: file name -> content.

    Raises RenderError for an unknown task type, a variable missing from
    ``context`` (the message names it), or a value that cannot be written safely
    in its file (a line break in a kickstart argument, an unknown distro).
    """
    try:
        files = INSTALLER_FILES[task_type]
    except KeyError:
        known = ", ".join(INSTALLER_FILES)
        raise RenderError(f"{task_type}: not an installer task type (known: {known})") from None
    env = environment()
    try:
        _check_context(task_type, context)
        rendered = {name: env.get_template(path).render(context) for name, path in files.items()}
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{task_type}: {exc.message}") from exc
    except KeyError as exc:  # a missing key read by Python code (filters, _check_context)
        raise RenderError(f"{task_type}: context has no {exc.args[0]!r}") from exc
    except (_ValueRefused, windows_render.RefusedValue) as exc:
        raise RenderError(f"{task_type}: {exc}") from exc
    except jinja2.TemplateError as exc:
        raise RenderError(f"{task_type}: template error: {exc}") from exc
    return {
        name: text.replace("\r\n", "\n").replace("\n", "\r\n") if name in CRLF_FILES else text
        for name, text in rendered.items()
    }
