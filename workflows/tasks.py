"""Thin Celery tasks for workflows: they call services."""

from celery import shared_task

from . import images


@shared_task(name="workflows.convert_template_version", ignore_result=True)
def convert_template_version(version_id: int) -> None:
    """qemu-img convert a qcow2/VHDX template version to raw."""
    images.convert_version(version_id)
