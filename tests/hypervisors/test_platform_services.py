"""PureBoot's services against a platform that is not libvirt: the Proxmox VE
fake (tests/hypervisors/fakes/proxmox_api, a fake of the PVE API2 interface:
no Proxmox cluster runs here), reached through the stored credential, the
worker's operation and the driver, as in production. What the node's history
and the operation say when the platform refuses, and that nothing half-made
is left on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from credentials import services as credentials
from hypervisors import services, vms
from hypervisors.choices import Health, OperationStatus, VMStatus
from hypervisors.models import Hypervisor, VirtualMachine
from nodes.choices import EventKind
from nodes.models import Node
from nodes.transitions import SYSTEM, Actor
from tests.factories import make_user, sealed
from tests.hypervisors.fakes.common import TLSFiles, make_tls, serve
from tests.hypervisors.fakes.proxmox_api import FakePVE, Handler

from .conftest import run_queued

pytestmark = pytest.mark.django_db
PASSWORD = "pve-Pa55-NEVER-in-text"


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("pve-services-tls"))


@pytest.fixture
def pve(tls) -> Iterator[tuple[FakePVE, str]]:
    fake = FakePVE(PASSWORD, {})
    fake.add_vm(9000, "pve1", template=True, name="debian-12", cores="2", memory="2048",
                scsi0="local-lvm:8", net0="virtio=BC:24:11:00:00:01,bridge=vmbr0")  # fmt: skip
    with serve(Handler, tls=tls, pve=fake) as (_server, url):
        yield fake, url


def _hypervisor(url: str, tls: TLSFiles, password: str = PASSWORD, settings=None) -> Hypervisor:
    name = f"pve-login-{len(password)}"
    credential = credentials.create_credential(
        "user:setup",
        {"name": name, "kind": "hypervisor", "username": "root@pam", "scope": url},
        {"password": password},
        approval=sealed("credential.create", f"credential:new:{name}", ""),
    )
    return services.create_hypervisor(
        SYSTEM,
        {
            "name": "pve",
            "type": "proxmox",
            "endpoint": url,
            "credential": credential,
            "ca_certificate": tls.ca_pem,
            "options": {"node": "pve1"},
        },
    )


@pytest.fixture(autouse=True)
def _keys(settings):
    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    settings.PUREBOOT_HYPERVISOR_TIMEOUT = 10


def _request(name: str, **kw) -> vms.Request:
    fields = {"name": name, "cpus": 2, "memory_mib": 1024, "disks": [],
              "networks": [{"network": "vmbr0"}], "template": "debian-12"}  # fmt: skip
    fields.update(kw)
    return vms.Request(**fields)


def test_a_vm_from_a_template_on_proxmox(pve, tls):
    fake, url = pve
    hv = _hypervisor(url, tls)
    (sync,) = run_queued()
    assert sync.status == OperationStatus.SUCCEEDED, sync.error
    assert Hypervisor.objects.get(pk=hv.pk).version.startswith("8.2")
    vm = vms.create(hv.pk, Actor.of(make_user("Admin")), _request("web-p1"))
    (create,) = run_queued()
    assert create.status == OperationStatus.SUCCEEDED, create.error
    vm.refresh_from_db()
    made = fake.vms[int(vm.platform_id)]
    assert made.config["name"] == "web-p1" and vm.macs[0].upper() in made.config["net0"].upper()
    assert made.config["boot"].startswith("order=net0")
    assert vm.status == VMStatus.PRESENT and vm.power == "running"


def test_a_template_gone_since_the_sync_fails_the_vm_with_the_reason_on_the_node(pve, tls):
    fake, url = pve
    hv = _hypervisor(url, tls)
    run_queued()
    before = set(fake.vms)
    del fake.vms[9000]  # removed on the platform after PureBoot's last sync
    vm = vms.create(hv.pk, Actor.of(make_user("Admin")), _request("web-p2"))
    (create,) = run_queued()
    assert create.status == OperationStatus.FAILED and create.error_code == "hypervisor_not_found"
    vm.refresh_from_db()
    assert vm.status == VMStatus.FAILED and "debian-12" in vm.error
    node = Node.objects.get(pk=vm.node_id)
    failed = node.events.filter(kind=EventKind.HYPERVISOR, message__startswith="VM creation failed")
    assert failed.count() == 1 and "debian-12" in failed.get().message
    assert set(fake.vms) == before - {9000}  # nothing half-made left on the platform


def test_a_clone_that_fails_half_way_leaves_nothing_and_says_why(pve, tls):
    fake, url = pve
    hv = _hypervisor(url, tls)
    run_queued()
    before = set(fake.vms)
    fake.fail_task("qmclone", "clone failed: storage error half-way")
    vm = vms.create(hv.pk, Actor.of(make_user("Admin")), _request("web-p3"))
    (create,) = run_queued()
    assert create.status == OperationStatus.FAILED
    assert "half-way" in create.error
    assert set(fake.vms) == before
    assert VirtualMachine.objects.get(pk=vm.pk).status == VMStatus.FAILED


def test_bad_credentials_stop_at_once_with_the_reason_and_no_secret(pve, tls):
    _fake, url = pve
    hv = _hypervisor(url, tls, password="wrong-pw-NEVER-in-text")
    (sync,) = run_queued()
    assert sync.status == OperationStatus.FAILED and sync.attempts == 1
    assert sync.error_code == "hypervisor_auth_failed"
    hv.refresh_from_db()
    assert hv.health == Health.FAILED and hv.last_error
    assert "wrong-pw" not in sync.error + hv.last_error


def test_a_certificate_from_another_ca_is_refused(pve, tls, tmp_path):
    _fake, url = pve
    hv = _hypervisor(url, tls)
    other = make_tls(tmp_path / "other")
    Hypervisor.objects.filter(pk=hv.pk).update(ca_certificate=other.ca_pem)
    services.request_sync(hv.pk, SYSTEM)
    ran = run_queued()
    assert ran[-1].status == OperationStatus.FAILED
    assert ran[-1].error_code == "hypervisor_tls_failed"
