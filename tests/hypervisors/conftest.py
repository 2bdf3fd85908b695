"""Helpers for the hypervisor tests: a libvirt test-driver hypervisor and
running the queued operations as a worker would."""

from __future__ import annotations

import uuid

import libvirt
import pytest

from hypervisors import operations, services
from hypervisors.choices import OperationStatus
from hypervisors.models import HypervisorOperation
from nodes.transitions import SYSTEM

# libvirt's own test driver: one in-memory host per process, shared by every
# connection, with a storage pool "default-pool" and a network "default".
TEST_URI = "test:///default"


@pytest.fixture(scope="session", autouse=True)
def _test_driver_alive():
    """libvirt frees the test driver's host when its last connection closes: one
    connection held for the session keeps it, as a real hypervisor keeps running."""
    conn = libvirt.open(TEST_URI)
    yield conn
    conn.close()


def driver_state(conn) -> tuple[set[str], set[str]]:
    """The test driver's VMs and volumes now (to remove what a test adds)."""
    pool = conn.storagePoolLookupByName("default-pool")
    return {d.UUIDString() for d in conn.listAllDomains()}, set(pool.listVolumes())


def forget_new(conn, before: tuple[set[str], set[str]]) -> None:
    """Remove the VMs and volumes made since ``before``."""
    domains, volumes = before
    for domain in conn.listAllDomains():
        if domain.UUIDString() not in domains:
            if domain.isActive():
                domain.destroy()
            domain.undefine()
    pool = conn.storagePoolLookupByName("default-pool")
    for name in set(pool.listVolumes()) - volumes:
        pool.storageVolLookupByName(name).delete(0)


@pytest.fixture(autouse=True)
def _forget_test_driver_vms(_test_driver_alive):
    """The test driver's host outlives a test: remove the VMs and volumes it made."""
    before = driver_state(_test_driver_alive)
    yield
    forget_new(_test_driver_alive, before)


def run_queued(max_rounds: int = 5) -> list[HypervisorOperation]:
    """Run every queued operation as the worker's task does (on-commit tasks do
    not fire inside a test's transaction, nor in-process on the Redis leg)."""
    ran = []
    for _ in range(max_rounds):
        queued = list(HypervisorOperation.objects.filter(status=OperationStatus.QUEUED))
        if not queued:
            break
        for operation in queued:
            operations.run(operation.pk)
            ran.append(HypervisorOperation.objects.get(pk=operation.pk))
    return ran


@pytest.fixture
def template_volume():
    """A template volume in the test driver's pool, removed afterwards."""
    conn = libvirt.open(TEST_URI)
    pool = conn.storagePoolLookupByName("default-pool")
    name = f"tmpl-{uuid.uuid4().hex[:8]}"
    volume = pool.createXML(
        f"<volume><name>{name}</name><capacity unit='MiB'>64</capacity></volume>", 0
    )
    yield name
    try:
        volume.delete(0)
    except libvirt.libvirtError:
        pass
    conn.close()


@pytest.fixture
def libvirt_hypervisor(db):
    hypervisor = services.create_hypervisor(
        SYSTEM,
        {
            "name": f"lv-{uuid.uuid4().hex[:6]}",
            "type": "libvirt",
            "endpoint": TEST_URI,
            "options": {"template_pool": "default-pool", "storage_pool": "default-pool"},
        },
    )
    return hypervisor
