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
    "approvals.view_approvalrequest",
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
)
ADMINISTER = (
    "nodes.add_site",
    "nodes.change_site",
    "nodes.delete_site",
    "nodes.delete_tag",
    "nodes.reprovision_node",
    "nodes.deprovision_node",
    "nodes.migrate_node",
    "nodes.retire_node",
    "nodes.rediscover_node",
    "nodes.access_all_sites",
    "workflows.add_workflow",
    "workflows.change_workflow",
    "workflows.delete_workflow",
    "workflows.add_imagetemplate",
    "workflows.delete_imagetemplate",
)
AUDIT = ("audit.view_auditevent", "nodes.access_all_sites")

ROLES: dict[str, tuple[str, ...]] = {
    "Admin": VIEW_REGISTRY + OPERATE + ADMINISTER + ("audit.view_auditevent",),
    "Operator": VIEW_REGISTRY + OPERATE,
    "Auditor": VIEW_REGISTRY + AUDIT,
    "User": VIEW_REGISTRY,
}


def sync_roles(group_model, permission_model) -> None:
    """Create the role groups and set each one's permissions exactly.

    Takes the model classes so a data migration can pass its historical models.
    """
    for name, perms in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        wanted = []
        for perm in sorted(set(perms)):
            app_label, codename = perm.split(".", 1)
            wanted.append(
                permission_model.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)
