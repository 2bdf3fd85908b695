"""Thin Celery tasks for workflows: they call services."""

from celery import shared_task

from . import domainjoin, imagefiles, images, services


@shared_task(name="workflows.convert_template_version", ignore_result=True)
def convert_template_version(version_id: int) -> None:
    """qemu-img convert a qcow2/VHDX template version to raw."""
    images.convert_version(version_id)


@shared_task(name="workflows.close_stale_runs", ignore_result=True)
def close_stale_runs() -> int:
    """Close runs whose node left `installing` without a report (their tokens die too)."""
    return services.close_stale_runs()


@shared_task(name="workflows.sweep_incoming", ignore_result=True)
def sweep_incoming() -> int:
    """Delete temporary files interrupted uploads and conversions left behind."""
    return imagefiles.sweep_incoming()


@shared_task(name="workflows.provision_offline_join", ignore_result=True)
def provision_offline_join(join_id: int) -> str:
    """Prestage a Windows install's computer account and make its offline-join blob."""
    return domainjoin.provision_offline_join(join_id)


@shared_task(name="workflows.wipe_offline_joins", ignore_result=True)
def wipe_offline_joins() -> int:
    """Wipe the offline-join blobs of install runs that ended."""
    return domainjoin.sweep_ended()
