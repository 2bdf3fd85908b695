"""Thin Celery tasks for the boot path: they take a primary key and call a service."""

from celery import shared_task

from . import dhcp


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
