"""A fake Proxmox VE server: the PVE API2 JSON REST interface, in memory.

This is NOT Proxmox VE. No PVE cluster can run on these machines, so the
driver tests talk to this local HTTPS server instead. It follows the PVE 8.x
API (https://pve.proxmox.com/pve-docs/api-viewer/, ``/api2/json/...``) as far
as the driver uses it, closely enough that ``proxmoxer``'s HTTPS backend
works against it unmodified:

- every answer is ``{"data": ...}``; errors put their message in the HTTP
  status line (as ``pveproxy`` does), parameter errors add ``"errors"``;
- ``POST /access/ticket`` issues a ticket; later calls carry it in the
  ``PVEAuthCookie`` cookie and, on writes, the ``CSRFPreventionToken``
  header; API tokens come as ``Authorization: PVEAPIToken=USER@REALM!ID=SECRET``;
- long operations answer a UPID and run as tasks that report ``running``
  and then ``stopped`` with ``exitstatus`` ``OK`` or an error text;
- the messages are PVE's own (``VM 100 is running - destroy failed``,
  ``Configuration file '...' does not exist``, ``VM is locked (clone)``).

Two nodes (``pve1``, ``pve2``) form the cluster ``lab``; storage is defined
cluster-wide (``ceph`` shared, ``local-lvm`` node-local: as in PVE, a clone
from it cannot target the other node). Tests can make the next task of a type
fail half-way (:meth:`FakePVE.fail_task`: a clone or create then leaves a
locked partial VM with a disk, as a worker killed mid-way does) or never
finish (:meth:`FakePVE.hang_task`).

``state`` holds the cluster and its node routes, ``vms`` the QEMU routes,
``server`` the HTTP handler.
"""

from .server import Handler
from .state import GIB, MIB, ApiError, Task, TaskFailed, Vm
from .vms import FakePVE

__all__ = ["GIB", "MIB", "ApiError", "FakePVE", "Handler", "Task", "TaskFailed", "Vm"]
