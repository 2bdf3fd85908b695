"""A Windows workflow is refused when it is saved, naming the field, if Setup could not
install it: parameters Windows refuses, a boot image that is not Windows or lacks the
edition, wimboot not imported, a credential missing or of another kind, a domain join
without a Windows install."""

from __future__ import annotations

import pytest
import yaml
from cryptography.fernet import Fernet

from credentials import services as credentials
from tests.factories import make_user, sealed
from workflows.checks import check_definition
from workflows.definitions import DefinitionError, parse
from workflows.models import BootImage, Workflow

pytestmark = pytest.mark.django_db

IMAGE = "windows-22621-x86_64"
EDITIONS = ["Windows 11 Home", "Windows 11 Education", "Windows 11 Pro"]


@pytest.fixture(autouse=True)
def keys(settings):
    """A fresh key set for each test (never the developer's var/ key)."""
    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    settings.PUREBOOT_WINDOWS_SHARE = "\\\\pureboot.test\\pureboot-boot"


def make_credential(
    name: str, kind: str, username: str = "Administrator", password: str = "pw", scope=None
):
    if scope is None:
        scope = "corp.example.com" if kind == "domain_join" else ""
    return credentials.create_credential(
        "user:setup",
        {"name": name, "kind": kind, "username": username, "scope": scope},
        {"password": password} if password else {},
        approval=sealed("credential.create", f"credential:new:{name}", ""),
    )


@pytest.fixture
def windows_image(db):
    images = [{"index": i + 1, "name": name} for i, name in enumerate(EDITIONS)]
    wim = {"name": "install.wim", "images": images}
    return BootImage.objects.create(
        name=IMAGE,
        family="windows",
        version="10.0.22621",
        arch="x86_64",
        files={"install_wim": wim},
    )


@pytest.fixture
def wimboot(db):
    return BootImage.objects.create(name="wimboot", family="wimboot", arch="x86_64")


@pytest.fixture
def stored(db):
    make_credential("win-local-admin", "windows_admin", password="Adm1n!")
    make_credential("win-key", "product_key", username="key", password="VK7JG-NPHTM-C97JM")
    make_credential("corp-join", "domain_join", username="CORP\\svc-join", password="j0in")
    make_credential("ovirt", "hypervisor", username="admin@internal")


@pytest.fixture
def ready(windows_image, wimboot, stored):
    """A Windows boot image with its editions, wimboot, and the credentials."""


def workflow(install: dict | None = None, *extra: dict, boot: dict | None = None) -> str:
    tasks = [
        {"type": "pxe_boot", "boot_image": IMAGE, **(boot or {})},
        {
            "type": "windows_install",
            "edition": "Windows 11 Pro",
            "admin_credential": "win-local-admin",
            **(install or {}),
        },
        *extra,
    ]
    doc = {"name": "windows-11-pro", "arch": ["x86_64"], "firmware": ["uefi", "bios"]}
    tasks = [{k: v for k, v in task.items() if v is not None} for task in tasks]
    return yaml.safe_dump({**doc, "tasks": tasks})


JOIN = {
    "type": "domain_join",
    "domain": "corp.example.com",
    "mode": "offline",
    "ou": "OU=Workstations,DC=corp,DC=example,DC=com",
    "credential": "corp-join",
}


def check(doc: str):
    return check_definition(parse(doc))


def refusal(doc: str) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        check(doc)
    return caught.value


@pytest.mark.usefixtures("ready")
@pytest.mark.parametrize(
    "doc",
    [
        workflow(),
        workflow({"product_key_credential": "win-key", "computer_name": "KIOSK-7"}, JOIN),
        workflow(
            {"timezone": "W. Europe Standard Time", "locale": "de-DE"},
            {**JOIN, "mode": "online", "ou": ""},
        ),
        workflow(
            {
                "first_logon_commands": ["cmd /c echo ok > C:\\ok.txt"],
                "post_install_powershell": ["Set-TimeZone -Id 'UTC'\n" * 400],
            }
        ),
    ],
)
def test_good_windows_workflows_pass(doc):
    assert check(doc).warnings == []


CASES = {
    "computer name of 16 characters": (
        workflow({"computer_name": "WORKSTATION-0123"}),
        "tasks[1].computer_name",
        "1 to 15 letters",
    ),
    "non-ASCII computer name": (
        workflow({"computer_name": "MÜNCHEN-01"}),
        "tasks[1].computer_name",
        "not a Windows computer name",
    ),
    "computer name of digits": (
        workflow({"computer_name": "12345"}),
        "tasks[1].computer_name",
        "only digits",
    ),
    "computer name ending in a hyphen": (
        workflow({"computer_name": "WEB-"}),
        "tasks[1].computer_name",
        "hyphen",
    ),
    "missing edition": (
        workflow({"edition": None}),
        "tasks[1].edition",
        "is required for windows_install",
    ),
    "edition not in the WIM": (
        workflow({"edition": "Windows 11 Enterprise"}),
        "tasks[1].edition",
        "it holds: 'Windows 11 Home'; 'Windows 11 Education'; 'Windows 11 Pro'",
    ),
    "admin credential missing": (
        workflow({"admin_credential": "nobody"}),
        "tasks[1].admin_credential",
        "no credential 'nobody' is stored: create one of kind windows_admin",
    ),
    "admin credential of the wrong kind": (
        workflow({"admin_credential": "ovirt"}),
        "tasks[1].admin_credential",
        "credential 'ovirt' is of kind hypervisor; this field takes kind windows_admin",
    ),
    "product key of the wrong kind": (
        workflow({"product_key_credential": "win-local-admin"}),
        "tasks[1].product_key_credential",
        "this field takes kind product_key",
    ),
    "join credential of the wrong kind": (
        workflow({}, {**JOIN, "credential": "win-key"}),
        "tasks[2].credential",
        "this field takes kind domain_join",
    ),
    "domain_join without windows_install": (
        yaml.safe_dump(
            {"name": "join", "tasks": [{"type": "pxe_boot", "boot_image": IMAGE}, JOIN]}
        ),
        "tasks[1].type",
        "put a windows_install before it",
    ),
    "domain_join before windows_install": (
        yaml.safe_dump(
            {
                "name": "join",
                "arch": ["x86_64"],
                "firmware": ["uefi"],
                "tasks": [
                    {"type": "pxe_boot", "boot_image": IMAGE},
                    JOIN,
                    {"type": "windows_install", "edition": "x", "admin_credential": "a"},
                ],
            }
        ),
        "tasks[1].type",
        "put a windows_install before it",
    ),
    "domain_join without a credential": (
        workflow({}, {**JOIN, "credential": None}),
        "tasks[2].credential",
        "is required for a offline join",
    ),
    "domain that is not a DNS name": (
        workflow({}, {**JOIN, "domain": "CORP"}),
        "tasks[2].domain",
        "not a DNS domain name",
    ),
    "OU that is not a DN": (
        workflow({}, {**JOIN, "ou": "Workstations"}),
        "tasks[2].ou",
        "not an LDAP distinguished name",
    ),
    "dc that is not a host": (
        workflow({}, {**JOIN, "dc": "dc1 .corp"}),
        "tasks[2].dc",
        "host name",
    ),
    "dc outside the domain (the password would go there)": (
        workflow({}, {**JOIN, "dc": "dc1.evil.example"}),
        "tasks[2].dc",
        "must be a host name in corp.example.com",
    ),
    "dc given as an address": (
        workflow({}, {**JOIN, "dc": "10.0.0.5"}),
        "tasks[2].dc",
        "must be a host name in corp.example.com",
    ),
    "join credential scoped to another domain": (
        workflow({}, {**JOIN, "domain": "evil.example", "ou": ""}),
        "tasks[2].credential",
        "used only for the domain its scope names",
    ),
    "time zone with a slash": (
        workflow({"timezone": "Europe/Berlin"}),
        "tasks[1].timezone",
        "Windows time zone id",
    ),
    "locale in Linux form": (
        workflow({"locale": "de_DE.UTF-8"}),
        "tasks[1].locale",
        "Windows language tag",
    ),
    "disk out of range": (workflow({"disk": 64}), "tasks[1].disk", "at most 63"),
    "package_install in a Windows install": (
        workflow({}, {"type": "package_install", "packages": ["git"], "manager": "winget"}),
        "tasks[2].type",
        "use windows_install's first_logon_commands",
    ),
    "script_run in a Windows install": (
        workflow({}, {"type": "script_run", "script": "Get-Date", "interpreter": "powershell"}),
        "tasks[2].type",
        "post_install_powershell",
    ),
    "kernel and initrd instead of a boot image": (
        workflow(boot={"boot_image": None, "kernel": "/k", "initrd": "/i"}),
        "tasks[0].boot_image",
        "WinPE through wimboot",
    ),
}


@pytest.mark.usefixtures("ready")
@pytest.mark.parametrize(("doc", "path", "message"), CASES.values(), ids=CASES.keys())
def test_bad_windows_workflows_are_refused_naming_the_field(doc, path, message):
    error = refusal(doc)
    assert error.path == path, error
    assert message in error.message


def test_the_boot_image_must_be_windows(wimboot, stored):
    BootImage.objects.create(name=IMAGE, family="ubuntu", version="24.04", arch="x86_64")
    error = refusal(workflow())
    assert error.path == "tasks[0].boot_image"
    assert "windows_install boots a Windows boot image" in error.message


def test_the_boot_image_must_be_of_the_workflow_arch(wimboot, stored):
    BootImage.objects.create(
        name=IMAGE, family="windows", arch="aarch64", files={"install_wim": {"images": []}}
    )
    error = refusal(workflow())
    assert error.path == "tasks[0].boot_image"
    assert "is for aarch64" in error.message


def test_wimboot_must_be_imported(windows_image, stored):
    error = refusal(workflow())
    assert error.path == "tasks[0].boot_image"
    assert "https://github.com/ipxe/wimboot/releases" in error.message
    assert "manage.py import_wimboot /path/to/wimboot" in error.message


def test_an_image_imported_without_its_editions_is_refused(wimboot, stored):
    BootImage.objects.create(name=IMAGE, family="windows", arch="x86_64", files={})
    error = refusal(workflow())
    assert error.path == "tasks[1].edition"
    assert f"manage.py import_iso PATH_OR_URL --name {IMAGE} --replace" in error.message


def test_a_credential_without_a_password_is_refused(windows_image, wimboot):
    make_credential("win-local-admin", "windows_admin", password="")
    error = refusal(workflow())
    assert error.path == "tasks[1].admin_credential"
    assert "has no password" in error.message


@pytest.mark.usefixtures("windows_image", "wimboot")
def test_a_join_account_setup_cannot_read_is_refused_by_the_checker():
    make_credential("win-local-admin", "windows_admin")
    make_credential("corp-join", "domain_join", username="CORP\\jöin")
    error = refusal(workflow({}, {**JOIN, "mode": "online"}))
    assert error.path == "tasks[1]"
    assert "Credentials/Username: Setup takes ASCII characters only here" in error.message


@pytest.mark.usefixtures("ready")
def test_save_through_the_api(api):
    client = api(make_user("Admin"))
    resp = client.post("/api/v1/workflows", {"content": workflow({}, JOIN)}, format="json")
    assert resp.status_code == 201, resp.content
    bad = workflow({"admin_credential": "ovirt"})
    bad = bad.replace("windows-11-pro", "bad")
    resp = client.post("/api/v1/workflows", {"content": bad}, format="json")
    assert resp.status_code == 400
    assert resp.json()["error"]["path"] == "tasks[1].admin_credential"
    assert not Workflow.objects.filter(name="bad").exists()
    # Neither the stored secrets nor the placeholders leak into the answer.
    assert "Adm1n!" not in resp.content.decode() and "SAMPLE-PASSWORD" not in resp.content.decode()


def test_a_windows_workflow_is_refused_while_no_share_serves_install_wim(ready, settings):
    settings.PUREBOOT_WINDOWS_SHARE = ""
    with pytest.raises(DefinitionError) as refused:
        check_definition(parse(workflow()))
    assert refused.value.path == "tasks[0].boot_image"
    assert "PUREBOOT_WINDOWS_SHARE is not set" in str(refused.value)
    assert "manage.py smb_config" in str(refused.value)
