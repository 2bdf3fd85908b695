"""oVirt SDK objects to base.py's dataclasses (hosts, storage, templates), and
the engine's VM statuses as base.py's power states."""

from __future__ import annotations

from ovirtsdk4 import types

from .. import base

_MIB = 1024**2
_BLANK = "00000000-0000-0000-0000-000000000000"
_S = types.VmStatus
_RUNNING = {_S(s) for s in "up powering_up wait_for_launch reboot_in_progress migrating".split()}
_RUNNING |= {_S.POWERING_DOWN, _S.SAVING_STATE, _S.RESTORING_STATE}
# A suspended (hibernated) VM resumes where it was: paused, not stopped.
_POWER = {_S.DOWN: base.PowerState.STOPPED, _S.PAUSED: base.PowerState.PAUSED}
_POWER |= {_S.SUSPENDED: base.PowerState.PAUSED} | dict.fromkeys(_RUNNING, base.PowerState.RUNNING)


def _cpus(cpu: types.Cpu | None) -> int:
    topology = cpu.topology if cpu else None
    if topology is None:
        return 0
    return (topology.cores or 1) * (topology.sockets or 1) * (topology.threads or 1)


def _host(h: types.Host, clusters: dict[str, str]) -> base.Host:
    memory = h.memory or 0
    # "Used" is what the scheduler can no longer place on the host.
    used = max(0, memory - (h.max_scheduling_memory or 0))
    cluster = clusters.get(h.cluster.id, "") if h.cluster else ""
    state = h.status.value if h.status else ""
    return base.Host(h.name, cluster, _cpus(h.cpu), memory // _MIB, used // _MIB, state)


def _storage(d: types.StorageDomain) -> base.Storage:
    kind = d.storage.type.value if d.storage and d.storage.type else ""
    return base.Storage(d.name, (d.available or 0) + (d.used or 0), d.available or 0, kind)


def _template(t: types.Template) -> base.Template:
    disks = sum(a.disk.provisioned_size or 0 for a in t.disk_attachments or () if a.disk)
    os_type = (t.os.type or "") if t.os else ""
    return base.Template(t.id, t.name, _cpus(t.cpu), (t.memory or 0) // _MIB, disks, os_type)


def _version(template: types.Template) -> int:
    return (template.version.version_number or 0) if template.version else 0
