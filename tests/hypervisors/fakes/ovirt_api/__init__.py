"""A fake oVirt engine: the engine's v4 REST API (XML) and its SSO, in memory.

This is NOT oVirt. No engine (nor the hosts and storage it manages) can run
on these machines, so the driver tests talk to this local HTTPS server
instead. It follows the oVirt Engine API model 4.5
(https://ovirt.github.io/ovirt-engine-api-model/4.5/) as far as the driver
uses it, closely enough that ``ovirtsdk4`` (ovirt-engine-sdk-python 4.6)
works against it unmodified:

- ``POST /ovirt-engine/sso/oauth/token`` (``grant_type=password``, scope
  ``ovirt-app-api``) answers JSON with an ``access_token``, or the SSO error
  shape ``{"error_code": "access_denied", "error": "Cannot authenticate
  user ..."}``; ``POST /ovirt-engine/services/sso-logout`` revokes a token;
  API calls carry ``Authorization: Bearer TOKEN`` and get 401 without one;
- ``/ovirt-engine/api``: ``GET`` of the root (``product_info``), clusters,
  hosts, storage domains, networks, vNIC profiles, templates, disks and VMs,
  with ``search=`` (``name=web* and status=up``), ``follow=`` (``nics``,
  ``disk_attachments.disk``) and ``max=``; ``POST /vms`` (``clone=true``),
  ``PUT``/``DELETE /vms/{id}``, the ``start``/``stop``/``reset``/``migrate``
  actions (``<action>`` in and out), NICs and disk attachments;
- refusals are ``<fault><reason/><detail/></fault>`` with the engine's
  statuses and words: 409 "Operation Failed" / "[Cannot add VM. ...]" for
  failed validations, 400 "Incomplete parameters", 404 "Entity not found";
- what is asynchronous in the engine is asynchronous here, paced by
  ``delay``: a VM made from a template is ``image_locked`` while its disks
  are copied, then ``down``; ``start`` goes ``wait_for_launch`` ->
  ``powering_up`` -> ``up``; ``stop`` ``powering_down`` -> ``down``; a
  migration ``migrating`` -> ``up`` on the new host; new disks are
  ``locked`` then ``ok``; a removed VM with disks stays ``image_locked``
  until its disks are gone.

Tests plant one-shot refusals with :meth:`EngineState.refuse` and read the
state (``vms``, ``disks``, ``domains``, ``requests``) to check what the driver
did. ``state`` holds the inventory, logins and search, ``vms`` the VM rules,
``render`` the XML, ``server`` the HTTP handler.
"""

from .server import Handler
from .state import BLANK_ID, GIB, MIB, EngineState, Fault, cannot
from .vms import FakeEngine

__all__ = ["BLANK_ID", "GIB", "MIB", "EngineState", "FakeEngine", "Fault", "Handler", "cannot"]
