"""The four roles and what each may do. README.md ("Roles") shows this matrix.

Roles are Django groups. Site scope is separate: holders of
``nodes.access_all_sites`` see every site; others see only sites granted to
them (or their groups) with guardian's ``nodes.operate_site`` object
permission.
"""

from __future__ import annotations

VIEW_REGISTRY = (
    "nodes.view_node",
    "nodes.view_site",
    "nodes.view_tag",
    "nodes.view_networkinterface",
    "nodes.view_nodeevent",
    "workflows.view_workflow",
    "workflows.view_workflowversion",
    "workflows.view_workflowrun",
    "workflows.view_runlogline",
    "workflows.view_imagetemplate",
    "workflows.view_imagetemplateversion",
    "workflows.view_bootimage",
    "workflows.view_offlinejoin",
    "approvals.view_approvalrequest",
    "agent.view_agentjob",
    "agent.view_agentlogline",
    "agent.view_wipecertificate",
    "nodes.view_migration",
    "hypervisors.view_hypervisor",
    "hypervisors.view_virtualmachine",
    "hypervisors.view_hypervisortemplate",
    "hypervisors.view_hypervisoroperation",
    "configmgmt.view_configrun",
    "configmgmt.view_registration",
)
OPERATE = (
    "nodes.add_node",
    "nodes.change_node",
    "nodes.add_tag",
    "nodes.change_tag",
    "nodes.add_networkinterface",
    "nodes.change_networkinterface",
    "nodes.delete_networkinterface",
    "nodes.assign_node",
    "nodes.activate_node",
    # Destructive actions: holding one lets a person ask for it (and approve
    # someone else's request); it happens only once a second holder approves.
    "nodes.reprovision_node",
    "nodes.deprovision_node",
    "nodes.migrate_node",
    "nodes.retire_node",
    "hypervisors.sync_hypervisor",
    "hypervisors.operate_vm",
    # Asking and approving; a VM is deleted only once a second holder approves.
    "hypervisors.delete_vm",
    # Asking and approving; a computer account leaves the domain only once approved.
    "workflows.remove_computer_account",
)
ADMINISTER = (
    "nodes.add_site",
    "nodes.change_site",
    "nodes.delete_site",
    "nodes.delete_tag",
    "nodes.rediscover_node",
    "nodes.access_all_sites",
    "workflows.add_workflow",
    "workflows.change_workflow",
    "workflows.delete_workflow",
    "workflows.add_imagetemplate",
    "workflows.delete_imagetemplate",
    "systemsettings.view_systemsetting",
    "systemsettings.change_systemsetting",
    "accounts.view_emergencygrant",
    "accounts.grant_emergency_access",
    "accounts.grant_role",
    "audit.clear_auditevent",
    "hypervisors.add_hypervisor",
    "hypervisors.change_hypervisor",
    # Four-eye while nodes are on the hypervisor.
    "hypervisors.delete_hypervisor",
    "webhooks.view_subscription",
    "webhooks.add_subscription",
    "webhooks.change_subscription",
    "webhooks.delete_subscription",
    "webhooks.test_subscription",
    "webhooks.view_delivery",
)
AUDIT = (
    "audit.view_auditevent",
    "nodes.access_all_sites",
    "systemsettings.view_systemsetting",
    "accounts.view_emergencygrant",
    # An admin's request to clear the trail can be approved by an auditor.
    "audit.clear_auditevent",
    "webhooks.view_subscription",
    "webhooks.view_delivery",
)
# Anyone with a role may ask for emergency access for themselves.
EMERGENCY = ("accounts.request_emergency_access",)
# Secrets are never readable through a permission: these cover metadata only.
CREDENTIALS_MANAGE = (
    "credentials.view_credential",
    "credentials.add_credential",
    "credentials.change_credential",
    "credentials.delete_credential",
)
CREDENTIAL_NAMES = ("credentials.view_credential_names",)
CREDENTIAL_METADATA = ("credentials.view_credential",)

# Roles whose holders can approve someone else's four-eye request (every kind's
# permission is held only by these; tests/approvals/test_sock_puppets.py checks
# it). Granting one is itself four-eye once two people can approve.
APPROVER_ROLES = ("Admin", "Operator", "Auditor")

ROLES: dict[str, tuple[str, ...]] = {
    "Admin": VIEW_REGISTRY
    + OPERATE
    + ADMINISTER
    + ("audit.view_auditevent",)
    + CREDENTIALS_MANAGE
    + EMERGENCY,
    "Operator": VIEW_REGISTRY + OPERATE + CREDENTIAL_NAMES + EMERGENCY,
    "Auditor": VIEW_REGISTRY + AUDIT + CREDENTIAL_METADATA + EMERGENCY,
    "User": VIEW_REGISTRY + EMERGENCY,
}


def sync_roles(group_model, permission_model, *, skip_missing: bool = False) -> None:
    """Create the role groups and set each one's permissions exactly.

    Takes the model classes so a data migration can pass its historical models.
    Migrations pass ``skip_missing``: an early roles migration runs before the
    models behind later permissions exist, and a later roles migration (run
    after those models) completes the set.
    """
    for name, perms in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        wanted = []
        for perm in sorted(set(perms)):
            app_label, codename = perm.split(".", 1)
            found = permission_model.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if found is None:
                if skip_missing:
                    continue
                raise permission_model.DoesNotExist(f"permission {perm} does not exist")
            wanted.append(found)
        group.permissions.set(wanted)
