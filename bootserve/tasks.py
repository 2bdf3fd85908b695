"""Thin Celery tasks for the boot path: they take a primary key and call a service."""

from celery import shared_task

from . import dhcp, nfsroot, records


@shared_task(
    name="bootserve.sync_dhcp_host",
    ignore_result=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def sync_dhcp_host(node_id: int) -> None:
    """Write the node's dnsmasq host entry (Rule E); does nothing when DHCP sync is off.

    Queued by nodes.services on the commit of every lifecycle transition.
    """
    dhcp.sync_host(node_id)


@shared_task(
    name="bootserve.sync_nfs_root",
    ignore_result=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def sync_nfs_root(node_id: int) -> str:
    """Make, keep or remove the node's NFS root overlay as its state says, and its export.

    Queued by nodes.transitions on the commit of every lifecycle transition
    while PUREBOOT_NFS_SERVER is set; idempotent (bootserve.nfsroot.sync_node).
    """
    return nfsroot.sync_node(node_id)


@shared_task(name="bootserve.sync_nfs_exports", ignore_result=True)
def sync_nfs_exports() -> bool:
    """Rewrite the ganesha config if anything changed (a lease, a template) and reload it.

    Cheap when nothing changed; meant for a periodic schedule, so a node whose
    DHCP lease moved gets its overlay export for its new address.
    """
    return nfsroot.apply_exports()


@shared_task(name="bootserve.prune_boot_records", ignore_result=True)
def prune_boot_records() -> int:
    """Delete boot records older than PUREBOOT_BOOT_RECORD_DAYS; scheduled hourly by beat."""
    return records.prune()
