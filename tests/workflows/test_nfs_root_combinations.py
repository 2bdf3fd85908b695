"""What may share a workflow with nfs_root: the controller's steps and a first-boot
configuration (raspberrypi_os, with script_run folded into it); nothing that boots,
installs or writes a disk. Each refusal names the task and says why."""

from __future__ import annotations

import pytest

from workflows.definitions import DefinitionError, parse

HEAD = "name: pi\narch: [aarch64]\nfirmware: [pi]\ntasks:\n"
NFS = "  - type: nfs_root\n    root: rpi-os\n"
PI = "  - type: raspberrypi_os\n    username: ops\n"
SCRIPT = "  - type: script_run\n    script: echo hi >/etc/motd\n"
VM = (
    "  - type: vm_create\n    memory: 1024\n    disks:\n      - size: 8GiB\n"
    "    networks:\n      - name: default\n"
)
PXE = "  - type: pxe_boot\n    kernel: /k\n    initrd: /i\n"
DEPLOY = "  - type: image_deploy\n    image: raspios\n"
WIPE = "  - type: disk_wipe\n"
LAYOUT = "  - type: partition\n    partitions: [{role: root, size: rest}]\n"
PACKAGES = "  - type: package_install\n    packages: [htop]\n"
ANY_ARCH = "name: pi\narch: [aarch64]\ntasks:\n"  # for installers that do not run on a Pi


@pytest.mark.parametrize(
    "tasks, types",
    [
        pytest.param(NFS, ["nfs_root"], id="nfs_root-alone"),
        pytest.param(NFS + PI, ["nfs_root", "raspberrypi_os"], id="with-raspberrypi_os"),
        pytest.param(
            NFS + PI + SCRIPT, ["nfs_root", "raspberrypi_os", "script_run"], id="with-its-script"
        ),
        pytest.param(VM + NFS + PI, ["vm_create", "nfs_root", "raspberrypi_os"], id="in-a-vm"),
    ],
)
def test_nfs_root_takes_a_first_boot_configuration_and_controller_steps(tasks, types):
    assert [t["type"] for t in parse(HEAD + tasks).tasks] == types


INSTALLERS = {
    "ubuntu_autoinstall": "  - type: ubuntu_autoinstall\n",
    "debian_preseed": "  - type: debian_preseed\n",
    "kickstart": "  - type: kickstart\n    distro: rocky\n    version: '9'\n    repo_url: http://m/\n",
    "arch_bootstrap": "  - type: arch_bootstrap\n",
    "cloud_init": "  - type: cloud_init\n",
}
NO_INSTALLER = "a diskless node runs no installer; raspberrypi_os is the one configuration"


@pytest.mark.parametrize(
    "doc, path, message",
    [
        pytest.param(
            HEAD + NFS + PXE,
            "tasks[1].type",
            "pxe_boot cannot share a workflow with nfs_root: nfs_root is the diskless node's "
            "network boot, now and at every boot",
            id="pxe_boot",
        ),
        pytest.param(
            HEAD + NFS + DEPLOY,
            "tasks[1].type",
            "image_deploy cannot share a workflow with nfs_root: nfs_root is the diskless "
            "node's network boot",
            id="image_deploy",
        ),
        pytest.param(
            HEAD + WIPE + NFS,
            "tasks[0].type",
            "disk_wipe cannot share a workflow with nfs_root: a diskless node has no disk",
            id="disk_wipe",
        ),
        pytest.param(
            HEAD + NFS + LAYOUT,
            "tasks[1].type",
            "partition cannot share a workflow with nfs_root: a diskless node has no disk",
            id="partition",
        ),
        pytest.param(
            HEAD + NFS + PI + PACKAGES,
            "tasks[2].type",
            "package_install cannot share a workflow with nfs_root: a diskless node's root file "
            "system is read-only over NFS; install the packages in the template",
            id="package_install",
        ),
        pytest.param(
            HEAD + NFS + PI + "    packages: [htop]\n",
            "tasks[1].packages",
            "a diskless node cannot install packages: its root file system is read-only over "
            "NFS; install them in the template (manage.py import_rootfs)",
            id="raspberrypi_os-packages",
        ),
        pytest.param(
            HEAD + PI + NFS,
            "tasks[0].type",
            "raspberrypi_os configures the NFS root the node boots: put it after nfs_root",
            id="raspberrypi_os-first",
        ),
        pytest.param(
            HEAD + NFS + SCRIPT,
            "tasks[1].type",
            "script_run runs inside the installer: put it after the workflow's installer task",
            id="script_run-without-raspberrypi_os",
        ),
        pytest.param(
            HEAD + NFS + NFS,
            "tasks[1].type",
            "a workflow boots one NFS root",
            id="two-nfs-roots",
        ),
        pytest.param(
            HEAD + NFS + PI + INSTALLERS["ubuntu_autoinstall"],
            "tasks",
            "a workflow has at most one installer task; found raspberrypi_os, ubuntu_autoinstall",
            id="raspberrypi_os-and-another-installer",
        ),
        *(
            pytest.param(
                ANY_ARCH + NFS + task,
                "tasks[1].type",
                f"{kind} cannot share a workflow with nfs_root: {NO_INSTALLER}",
                id=kind,
            )
            for kind, task in INSTALLERS.items()
        ),
    ],
)
def test_combinations_that_make_no_sense_on_a_diskless_node_are_refused(doc, path, message):
    with pytest.raises(DefinitionError) as caught:
        parse(doc)
    assert caught.value.path == path
    assert caught.value.message.startswith(message), caught.value.message
