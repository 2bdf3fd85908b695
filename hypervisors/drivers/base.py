"""The hypervisor driver interface, split by capability.

A driver is one module per platform (``libvirt``, ``vmware``, ``proxmox``,
``ovirt``, ``hyperv``) holding one :class:`Driver` subclass. It declares the
capabilities it has in ``capabilities``; the API, the admin and the
dashboard offer only those, and :func:`require` refuses the others with
:class:`Unsupported` naming the driver and the capability.

Drivers speak to one endpoint with one :class:`Connection` and hold no
state of PureBoot's: they never touch the database. Every method may raise

- :class:`TransientError` for what may work when tried again (the endpoint
  unreachable, a timeout, the platform busy, a 5xx); the Celery task retries
  it with backoff;
- :class:`PermanentError` (or a subclass: :class:`AuthenticationFailed`,
  :class:`TLSFailed`, :class:`NotFound`, :class:`QuotaExceeded`,
  :class:`InvalidRequest`) for what will not: the task stores the reason and
  stops.

Messages never contain a secret: drivers build them from the platform's own
error text and the names of what they were asked for.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


class Capability(enum.StrEnum):
    """What a driver can do. ``HEALTH`` and ``INVENTORY`` every driver has."""

    HEALTH = "health"
    INVENTORY = "inventory"
    CREATE_VM = "create_vm"
    CLONE_TEMPLATE = "clone_template"
    POWER = "power"
    DELETE_VM = "delete_vm"
    TEMPLATE_SYNC = "template_sync"
    LIVE_MIGRATE = "live_migrate"
    HA = "ha"


class PowerAction(enum.StrEnum):
    ON = "on"
    OFF = "off"
    REBOOT = "reboot"


class PowerState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    UNKNOWN = "unknown"


class HypervisorError(Exception):
    """A driver call that did not do what was asked. ``str()`` is safe to store and show."""

    code = "hypervisor_error"
    transient = False


class TransientError(HypervisorError):
    """Worth trying again later: unreachable, timed out, busy, a server error."""

    code = "hypervisor_unavailable"
    transient = True


class PermanentError(HypervisorError):
    """Will fail again the same way until someone changes something."""

    code = "hypervisor_refused"


class AuthenticationFailed(PermanentError):
    code = "hypervisor_auth_failed"


class TLSFailed(PermanentError):
    """The endpoint's certificate did not verify against the configured CA."""

    code = "hypervisor_tls_failed"


class NotFound(PermanentError):
    """A named template, VM, host, cluster, network or storage does not exist."""

    code = "hypervisor_not_found"


class QuotaExceeded(PermanentError):
    code = "hypervisor_quota"


class InvalidRequest(PermanentError):
    code = "hypervisor_invalid_request"


class Unsupported(PermanentError):
    """The driver lacks the capability (HTTP 409 in the API)."""

    code = "hypervisor_capability_unsupported"

    def __init__(self, driver: str, capability: Capability | str) -> None:
        super().__init__(f"The {driver} driver cannot {Capability(capability).value}.")
        self.driver = driver
        self.capability = Capability(capability)


@dataclass(frozen=True)
class Connection:
    """Where and how to connect. ``password``/``token`` come from the credential
    store, revealed inside the task that uses them; ``repr`` hides them."""

    endpoint: str
    username: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    verify_tls: bool = True
    ca_pem: str = ""
    timeout: float = 30.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    ok: bool
    version: str = ""
    message: str = ""


@dataclass(frozen=True)
class Host:
    name: str
    cluster: str = ""
    cpus: int = 0
    memory_mib: int = 0
    memory_used_mib: int = 0
    state: str = ""


@dataclass(frozen=True)
class Storage:
    name: str
    total_bytes: int = 0
    free_bytes: int = 0
    kind: str = ""


@dataclass(frozen=True)
class Template:
    """A VM template (or base volume) on the platform, by its platform id."""

    id: str
    name: str
    cpus: int = 0
    memory_mib: int = 0
    disk_bytes: int = 0
    os: str = ""


@dataclass(frozen=True)
class VM:
    id: str
    name: str
    power: PowerState = PowerState.UNKNOWN
    macs: tuple[str, ...] = ()
    cpus: int = 0
    memory_mib: int = 0
    host: str = ""
    ha: bool = False


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...] = ()
    clusters: tuple[str, ...] = ()
    storage: tuple[Storage, ...] = ()
    networks: tuple[str, ...] = ()
    templates: tuple[Template, ...] = ()
    vms: tuple[VM, ...] = ()


@dataclass(frozen=True)
class Disk:
    size_bytes: int
    storage: str = ""
    interface: str = "virtio"


@dataclass(frozen=True)
class Nic:
    network: str
    mac: str
    model: str = "virtio"


@dataclass(frozen=True)
class VMSpec:
    """A VM to create. Every driver sets the first NIC first in the boot order
    (the VM network-boots PureBoot), then the first disk."""

    name: str
    cpus: int
    memory_mib: int
    nics: Sequence[Nic]
    disks: Sequence[Disk] = ()
    template: str = ""
    cluster: str = ""
    host: str = ""
    firmware: str = "bios"  # or "uefi"
    arch: str = "x86_64"  # or "aarch64"
    ha: bool = False


class Driver:
    """One platform's driver. Subclasses set ``name``, ``label``,
    ``capabilities`` and implement the methods of those capabilities."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    # What of a VMSpec beyond CPUs, memory, disks, NICs and template the driver
    # acts on: "cluster", "host", "disk_interface", "nic_model" (a request
    # naming one it does not is refused, not silently done otherwise).
    honours: ClassVar[frozenset[str]] = frozenset()
    # The driver options a hypervisor record may set (name -> help text);
    # any other option is refused when the hypervisor is saved.
    options: ClassVar[dict[str, str]] = {}

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def require(self, capability: Capability) -> None:
        """Raise :class:`Unsupported` unless this driver has ``capability``."""
        if capability not in self.capabilities:
            raise Unsupported(self.label or self.name, capability)

    def close(self) -> None:
        """Log out and drop the connection; never raises."""

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # HEALTH
    def health(self) -> Health:
        """Connect, authenticate and read the platform's version."""
        raise Unsupported(self.name, Capability.HEALTH)

    # INVENTORY
    def inventory(self) -> Inventory:
        """Hosts, clusters, storage, networks, templates and VMs with their power."""
        raise Unsupported(self.name, Capability.INVENTORY)

    def get_vm(self, vm_id: str) -> VM:
        """One VM by its platform id; :class:`NotFound` if it is gone."""
        raise Unsupported(self.name, Capability.INVENTORY)

    # CREATE_VM / CLONE_TEMPLATE
    def create_vm(self, spec: VMSpec) -> VM:
        """Create (not start) the VM, network boot first, with ``spec.nics``' MACs.

        With ``spec.template`` the VM is cloned from that template
        (:class:`NotFound` if it does not exist). A driver that fails half-way
        removes what it made before raising, or names it in the error.
        """
        raise Unsupported(self.name, Capability.CREATE_VM)

    # POWER
    def power(self, vm_id: str, action: PowerAction) -> None:
        """Power on (no-op if running), hard off (no-op if stopped) or reset."""
        raise Unsupported(self.name, Capability.POWER)

    def power_state(self, vm_id: str) -> PowerState:
        raise Unsupported(self.name, Capability.POWER)

    # DELETE_VM
    def delete_vm(self, vm_id: str) -> None:
        """Power off and delete the VM and the disks made for it; :class:`NotFound`
        if it is already gone."""
        raise Unsupported(self.name, Capability.DELETE_VM)

    # TEMPLATE_SYNC
    def templates(self) -> tuple[Template, ...]:
        """The templates VMs can be cloned from (PureBoot records them on sync)."""
        raise Unsupported(self.name, Capability.TEMPLATE_SYNC)

    # LIVE_MIGRATE
    def migrate_vm(self, vm_id: str, host: str) -> None:
        """Move a running VM to ``host`` without stopping it."""
        raise Unsupported(self.name, Capability.LIVE_MIGRATE)

    # HA
    def set_ha(self, vm_id: str, enabled: bool) -> None:
        raise Unsupported(self.name, Capability.HA)
