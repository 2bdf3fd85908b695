"""The node lifecycle, declared once.

Each operator or system action is declared here with its source states,
target state, the permission a person needs, and whether it destroys data.
The Node model's django-fsm transitions, the API's ``/state`` and
``/transitions`` endpoints and the admin's buttons are all driven from this
table, so a rule changes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from .choices import NodeState as S

ALL_STATES: tuple[str, ...] = tuple(S.values)


@dataclass(frozen=True)
class Action:
    """One lifecycle action.

    ``permission`` is the model permission a person needs (on top of access to
    the node's site); ``None`` means only the system (boot path, reports,
    periodic tasks) performs it. ``destructive`` actions destroy data; ``four_eye_states`` (and
    ``four_eye_if_ever_installed``) say when a second person must approve,
    asked of :mod:`pureboot.gate` by ``nodes.services`` under the node's lock.
    """

    name: str
    sources: tuple[str, ...]
    target: str
    label: str
    permission: str | None
    destructive: bool = False
    system_allowed: bool = True
    params: tuple[str, ...] = ()
    # Four-eye: from these states the action needs a second person's approval;
    # and, with ``four_eye_if_ever_installed``, from any state once the machine
    # has ever held a system PureBoot installed (assigning it again reinstalls it).
    four_eye_states: tuple[str, ...] = ()
    four_eye_if_ever_installed: bool = False

    @property
    def system_only(self) -> bool:
        return self.permission is None

    @property
    def may_need_second_person(self) -> bool:
        return bool(self.four_eye_states or self.four_eye_if_ever_installed)

    def needs_second_person(self, state: str, ever_installed: bool) -> bool:
        """Whether doing this to a node in ``state`` needs a second person."""
        return state in self.four_eye_states or (self.four_eye_if_ever_installed and ever_installed)


ASSIGN = Action(
    "assign",
    (S.DISCOVERED, S.FAILED),
    S.PENDING,
    "Assign workflow",
    "nodes.assign_node",
    params=("workflow",),
    four_eye_if_ever_installed=True,
)
UNASSIGN = Action("unassign", (S.PENDING,), S.DISCOVERED, "Unassign", "nodes.assign_node")
START_INSTALL = Action(
    "start_install", (S.PENDING, S.REPROVISION), S.INSTALLING, "Start install", None
)
COMPLETE_INSTALL = Action(
    "complete_install", (S.INSTALLING,), S.INSTALLED, "Complete install", None
)
FAIL = Action("fail", (S.INSTALLING, S.DEPROVISIONING, S.MIGRATING), S.FAILED, "Fail", None)
ACTIVATE = Action("activate", (S.INSTALLED,), S.ACTIVE, "Mark active", "nodes.activate_node")
REPROVISION = Action(
    "reprovision",
    (S.INSTALLED, S.ACTIVE, S.FAILED),
    S.REPROVISION,
    "Reprovision",
    "nodes.reprovision_node",
    destructive=True,
    four_eye_states=(S.INSTALLED, S.ACTIVE, S.FAILED),
)
DEPROVISION = Action(
    "deprovision",
    (S.DISCOVERED, S.INSTALLED, S.ACTIVE, S.FAILED),
    S.DEPROVISIONING,
    "Deprovision (secure erase)",
    "nodes.deprovision_node",
    destructive=True,
    params=("after", "category"),
    four_eye_states=(S.DISCOVERED, S.INSTALLED, S.ACTIVE, S.FAILED),
)
MIGRATE = Action(
    "migrate",
    (S.ACTIVE,),
    S.MIGRATING,
    "Migrate to new hardware",
    "nodes.migrate_node",
    destructive=True,
    params=("target", "disk"),
    four_eye_states=(S.ACTIVE,),
)
# The machine a migration moves to: a discovered node, taken by the migration.
RECEIVE_MIGRATION = Action(
    "receive_migration", (S.DISCOVERED,), S.MIGRATING, "Receive a migration", None
)
# Success: the node (its identity) is active on the new machine...
COMPLETE_MIGRATION = Action(
    "complete_migration", (S.MIGRATING,), S.ACTIVE, "Complete migration", None
)
# ...and the old machine is handed back as discovered, a deprovision request filed for it.
RELEASE_HARDWARE = Action(
    "release_hardware", (S.MIGRATING,), S.DISCOVERED, "Hand back after migration", None
)
# The source stays what it was: its disk was only read.
CANCEL_MIGRATION = Action(
    "cancel_migration", (S.MIGRATING,), S.ACTIVE, "Cancel migration", "nodes.migrate_node"
)
COMPLETE_WIPE = Action("complete_wipe", (S.DEPROVISIONING,), S.RETIRED, "Complete wipe", None)
RETIRE = Action(
    "retire",
    tuple(s for s in ALL_STATES if s != S.RETIRED),
    S.RETIRED,
    "Retire",
    "nodes.retire_node",
    destructive=True,
    # Retiring a machine that holds no installed system destroys nothing.
    four_eye_states=(S.INSTALLED, S.ACTIVE),
)
REDISCOVER = Action("rediscover", (S.RETIRED,), S.DISCOVERED, "Rediscover", "nodes.rediscover_node")
# A VM's node once its VM was deleted (a four-eye request of its own): the
# machine no longer exists, so nothing is left to answer or to destroy.
VM_DELETED = Action(
    "vm_deleted",
    tuple(s for s in ALL_STATES if s != S.RETIRED),
    S.RETIRED,
    "Its VM was deleted",
    None,
)

ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        ASSIGN,
        UNASSIGN,
        START_INSTALL,
        COMPLETE_INSTALL,
        FAIL,
        ACTIVATE,
        REPROVISION,
        DEPROVISION,
        MIGRATE,
        RECEIVE_MIGRATION,
        COMPLETE_MIGRATION,
        RELEASE_HARDWARE,
        CANCEL_MIGRATION,
        COMPLETE_WIPE,
        RETIRE,
        REDISCOVER,
        VM_DELETED,
    )
}

# Changing a node's identities (MACs, system UUID, serial) in these states
# could make another machine boot this node's install, wipe or hand-over:
# it needs a second person. Discovered and retired nodes hold nothing yet/any more.
IDENTITY_GUARDED_STATES: tuple[str, ...] = tuple(
    s for s in ALL_STATES if s not in (S.DISCOVERED, S.RETIRED)
)
IDENTITY_CHANGE = "identity.change"

# Deprovisioning: where the node goes once every disk is wiped and certified,
# and the NIST SP 800-88 category each disk must meet ("best": the strongest
# method the disk offers, Purge where it can, else Clear).
DEPROVISION_AFTER = ("retired", "discovered")
WIPE_CATEGORIES = ("best", "clear", "purge")
# States in which the machine holds a system PureBoot installed.
HOLDS_INSTALLED_SYSTEM: tuple[str, ...] = (
    S.INSTALLED,
    S.ACTIVE,
    S.REPROVISION,
    S.MIGRATING,
    S.DEPROVISIONING,
)

# Custom permissions declared on Node.Meta, one per guarded action family.
NODE_PERMISSIONS = (
    ("assign_node", "Can assign and unassign a workflow"),
    ("activate_node", "Can mark an installed node active"),
    ("reprovision_node", "Can request a reinstall"),
    ("deprovision_node", "Can request a secure erase"),
    ("migrate_node", "Can request or cancel a hardware migration"),
    ("retire_node", "Can retire a node"),
    ("rediscover_node", "Can bring a retired node back as discovered"),
)
