"""Workflow YAML: the product description's examples parse; bad documents say exactly why."""

import pytest
import yaml

from workflows.definitions import MAX_DOCUMENT_BYTES, DefinitionError, parse
from workflows.registry import TASK_TYPES

from .examples import PRODUCT_OVIRT_VM, PRODUCT_UBUNTU_SERVER, UBUNTU_AUTOINSTALL, UBUNTU_SERVER


def test_examples_parse_with_defaults():
    ubuntu = parse(UBUNTU_SERVER)
    assert ubuntu.name == "ubuntu-2404-server"
    assert [t["type"] for t in ubuntu.tasks] == ["pxe_boot", "ubuntu_autoinstall", "script_run"]
    assert ubuntu.tasks[2]["interpreter"] == "bash"  # default applied
    assert ubuntu.arch == ("x86_64",)  # its boot image is an amd64 ISO
    assert parse(UBUNTU_AUTOINSTALL).arch == ("x86_64",)


@pytest.mark.parametrize(
    "kind",
    [
        "reboot", "chain_boot", "ovirt_vm_configure", "template_sync", "live_migrate",
    ],
)  # fmt: skip
def test_task_types_nothing_runs_yet_are_refused_by_name(kind):
    sample = {"int": 1, "bool": True, "size": "1GB", "list[str]": [], "list[dict]": []}
    task = {"type": kind}
    for param in TASK_TYPES[kind].params:
        if param.required:
            value = param.choices[0] if param.choices else sample.get(param.type, "x")
            task[param.name] = max(value, param.minimum or 0) if param.type == "int" else value
    doc = yaml.safe_dump(
        {"name": "x", "tasks": [{"type": "pxe_boot", "kernel": "/k", "initrd": "/i"}, task]}
    )
    err = _error(doc)
    assert err.path == "tasks[1].type"
    assert f"task type {kind!r} is not available yet" in str(err)
    assert TASK_TYPES[kind].not_built in str(err)


def test_the_product_descriptions_examples_are_refused_naming_what_is_missing():
    err = _error(PRODUCT_UBUNTU_SERVER)
    assert err.path == "tasks[3].type" and "'reboot' is not available yet" in str(err)
    # Without the steps nothing runs: a network install and an image
    # deployment in one workflow are two ways of installing.
    first_two = PRODUCT_UBUNTU_SERVER.split("  - type: script_run")[0]
    err = _error(first_two)
    assert err.path == "tasks[0].type" and "cannot share a workflow with image_deploy" in str(err)
    # The oVirt example: PureBoot creates and starts the VM, but follows it through
    # its network boot, not its guest agent's address, and passes no cloud-init to oVirt.
    err = _error(PRODUCT_OVIRT_VM)
    assert err.path == "tasks[1].wait_for_ip" and "not built" in str(err)
    without_wait = PRODUCT_OVIRT_VM.replace("    wait_for_ip: true\n", "")
    err = _error(without_wait)
    assert err.path == "tasks[2].type" and "'ovirt_vm_configure' is not available yet" in str(err)


@pytest.mark.parametrize(
    "doc,path,words",
    [
        (
            "  - type: script_run\n    script: /x.sh\n",
            "tasks[0].type",
            "after the workflow's installer",
        ),
        ("  - type: package_install\n    packages: [vim]\n", "tasks[0].type", "after the"),
        (
            "  - type: cloud_init\n  - type: package_install\n    packages: [x]\n"
            "    manager: choco\n",
            "tasks[1].manager",
            "'choco' is not run yet",
        ),
        (
            "  - type: cloud_init\n  - type: script_run\n    script: x\n"
            "    interpreter: powershell\n",
            "tasks[1].interpreter",
            "'powershell' is not run yet",
        ),
    ],
)
def test_steps_that_would_never_run_are_refused(doc, path, words):
    err = _error("name: x\ntasks:\n" + doc)
    assert err.path == path and words in str(err)


def test_registry_has_the_required_task_types():
    required = {
        "pxe_boot", "image_deploy", "disk_wipe", "partition", "domain_join", "script_run",
        "package_install", "reboot", "chain_boot", "ubuntu_autoinstall", "debian_preseed",
        "kickstart", "arch_bootstrap", "raspberrypi_os", "cloud_init", "ovirt_vm_create",
        "ovirt_vm_start", "ovirt_vm_configure", "template_sync", "live_migrate",
    }  # fmt: skip
    assert required <= set(TASK_TYPES)
    assert TASK_TYPES["ovirt_vm_create"].runs_on == "controller"
    assert TASK_TYPES["kickstart"].renders == "kickstart"


def _error(text) -> DefinitionError:
    with pytest.raises(DefinitionError) as exc:
        parse(text)
    return exc.value


def test_yaml_syntax_error_has_line_and_column():
    err = _error("name: x\ntasks:\n  - type: reboot\n   bad: [unclosed\n")
    assert err.line is not None and err.line >= 3
    assert err.column is not None
    assert "YAML syntax error" in str(err) and f"line {err.line}" in str(err)


def test_unknown_task_type_lists_known_ones():
    err = _error("name: x\ntasks:\n  - type: reboot\n  - type: frobnicate\n")
    assert err.path == "tasks[1].type"
    assert "frobnicate" in err.message and "pxe_boot" in err.message and "kickstart" in err.message


@pytest.mark.parametrize(
    "tasks,path,words",
    [
        (
            "  - type: reboot\n  - type: reboot\n  - type: image_deploy\n",
            "tasks[2].image",
            "required",
        ),
        ("  - type: reboot\n    delay: soon\n", "tasks[0].delay", "whole number"),
        ("  - type: reboot\n    delay: 99999\n", "tasks[0].delay", "at most 3600"),
        ("  - type: reboot\n    colour: red\n", "tasks[0].colour", "unknown parameter"),
        ("  - type: disk_wipe\n    category: magnets\n", "tasks[0].category", "one of"),
        ("  - type: package_install\n    packages: {a: 1}\n", "tasks[0].packages", "list"),
        (
            "  - type: ovirt_vm_start\n    wait_for_ip: yes please\n",
            "tasks[0].wait_for_ip",
            "true or false",
        ),
        ("  - type: ovirt_vm_create\n    template: t\n", "tasks[0].memory", "required"),
        ("  - just a string\n", "tasks[0]", "mapping"),
    ],
)
def test_parameter_errors_name_their_path(tasks, path, words):
    err = _error("name: x\ntasks:\n" + tasks)
    assert err.path == path, str(err)
    assert words in err.message


@pytest.mark.parametrize(
    "doc,path",
    [
        ("tasks:\n  - type: reboot\n", "name"),
        ("name: Bad Name\ntasks:\n  - type: reboot\n", "name"),
        ("name: x\n", "tasks"),
        ("name: x\ntasks: []\n", "tasks"),
        ("name: x\ncolour: red\ntasks:\n  - type: reboot\n", "colour"),
        ("name: x\narch: [sparc]\ntasks:\n  - type: reboot\n", "arch[0]"),
        ("name: x\nfirmware: []\ntasks:\n  - type: reboot\n", "firmware"),
    ],
)
def test_top_level_errors(doc, path):
    assert _error(doc).path == path


def test_two_installers_refused():
    doc = (
        "name: x\ntasks:\n  - type: cloud_init\n  - type: kickstart\n    distro: rocky\n"
        "    version: '9'\n    repo_url: http://m/\n"
    )
    assert "at most one installer" in _error(doc).message


def test_installer_arch_mismatch_refused():
    doc = "name: x\narch: [x86_64]\ntasks:\n  - type: raspberrypi_os\n"
    assert "aarch64" in _error(doc).message


def test_alias_bomb_refused_quickly():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    doc = "\n".join(lines) + "\nname: x\ntasks:\n  - type: reboot\n"
    assert "expands to more than" in _error(doc).message


def test_oversized_document_refused():
    doc = "name: x\ndescription: " + "a" * (MAX_DOCUMENT_BYTES + 1) + "\ntasks: []\n"
    assert "larger than" in _error(doc).message


@pytest.mark.parametrize(
    "doc",
    ["", "---\n", "[1, 2]", "just text", b"\xff\xfe", "name: x\x00\n", "[" * 200 + "]" * 200],
)
def test_junk_is_a_definition_error(doc):
    with pytest.raises(DefinitionError):
        parse(doc)


def test_python_object_tags_are_refused():
    assert "YAML" in str(_error("name: !!python/object/apply:os.system [echo hi]\ntasks: []\n"))


def test_pxe_boot_takes_a_boot_image_or_kernel_and_initrd():
    assert parse("name: x\ntasks:\n  - type: pxe_boot\n    boot_image: ubuntu-24.04\n")
    err = _error("name: x\ntasks:\n  - type: pxe_boot\n    kernel: /k\n")
    assert err.path == "tasks[0].initrd" and "boot_image" in err.message


@pytest.mark.parametrize(
    "doc,path",
    [
        ("name: x\ntasks:\n  - type: reboot\n    1: a\n    b: c\n", "tasks[0]"),
        ("name: x\ntasks:\n  - type: [1]\n", "tasks[0].type"),
        ("name: x\ntasks:\n  - type: reboot\n    delay: !!binary aGk=\n", "tasks[0].delay"),
        ("name: x\ntasks:\n  - type: reboot\n    delay: .inf\n", "tasks[0].delay"),
    ],
)
def test_odd_yaml_values_are_definition_errors(doc, path):
    assert _error(doc).path == path


def test_dates_stay_text():
    doc = "name: x\ntasks:\n  - type: cloud_init\n    user_data: {built: 2024-01-01}\n"
    assert parse(doc).tasks[0]["user_data"] == {"built": "2024-01-01"}


def test_firmware_specific_installer_needs_matching_workflow_firmware():
    doc = "name: x\narch: [aarch64]\ntasks:\n  - type: raspberrypi_os\n"
    err = _error(doc)
    assert err.path == "tasks[0].type" and "firmware" in err.message


def test_a_kernel_given_as_its_url_path_is_refused_with_the_right_form():
    """Red team: such a kernel rendered as /boot/files/boot/files/..., a file that is not there."""
    err = _error(
        "name: x\ntasks:\n  - type: pxe_boot\n    kernel: /boot/files/u/vmlinuz\n    initrd: u/i\n"
    )
    assert err.path == "tasks[0].kernel" and "'u/vmlinuz'" in str(err)


PXE = "  - type: pxe_boot\n    kernel: /k\n    initrd: /i\n"
VM_STEP = """\
  - type: vm_create
    memory: 1024
    disks:
      - size: 8GiB
    networks:
      - name: default
"""


@pytest.mark.parametrize(
    "doc,path,words",
    [
        # The VM is made before anything boots: its step comes first, once.
        (PXE + VM_STEP, "tasks[1].type", "first"),
        (VM_STEP + VM_STEP, "tasks[1].type", "creates one VM"),
        (VM_STEP.replace("      - name: default\n", "      - name: default\n        vlan: 7\n"),
         "tasks[0].networks[0].vlan", "unknown"),
        (VM_STEP.replace("size: 8GiB", "size: lots"), "tasks[0].disks[0].size", "a size"),
        (VM_STEP.replace("    networks:\n      - name: default\n", ""), "tasks[0].networks",
         "network"),
        ("  - type: ovirt_vm_start\n", "tasks[0].type", "ovirt_vm_create"),
        (VM_STEP.replace("vm_create", "ovirt_vm_create") + "  - type: ovirt_vm_start\n"
         "    wait_for_ip: true\n", "tasks[1].wait_for_ip", "not built"),
    ],
)  # fmt: skip
def test_vm_steps_are_checked_at_save(doc, path, words):
    err = _error("name: x\ntasks:\n" + doc)
    assert err.path == path, str(err)
    assert words in str(err)


@pytest.mark.parametrize(
    "doc,path",
    [
        ('name: x\ntasks:\n  - type: script_run\n    script: "\\ud800"\n', "tasks[0].script"),
        (
            "name: x\ntasks:\n  - type: windows_install\n    post_install_powershell:\n"
            '      - "a\\udfffb"\n',
            "tasks[0].post_install_powershell[0]",
        ),
        ('name: x\n"k\\ud801": 1\ntasks: []\n', "(top level)"),
    ],
)
def test_a_lone_surrogate_anywhere_is_refused_with_its_place(doc, path):
    """No character: it would fail as JSON, UTF-8 or UTF-16 (a PowerShell script) later."""
    with pytest.raises(DefinitionError, match="lone surrogate") as refused:
        parse(doc)
    assert refused.value.path == path
