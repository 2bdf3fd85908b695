"""import_workflows / export_workflows as an administrator runs them."""

import pytest
from django.core.management import CommandError, call_command

from workflows.models import Workflow, WorkflowVersion

from .examples import CLOUD_VM, UBUNTU_SERVER

# The Ubuntu example names a boot image: it must be imported before the workflow saves.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("ubuntu_boot_image")]


def _run(*args):
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "ubuntu.yaml").write_text(UBUNTU_SERVER)
    sub = tmp_path / "vms"
    sub.mkdir()
    (sub / "cloud.yml").write_text(CLOUD_VM)
    (sub / "notes.txt").write_text("ignored")
    return tmp_path


def test_import_is_idempotent_and_dry_run_saves_nothing(folder):
    out = _run("import_workflows", str(folder), "--dry-run")
    assert "would new" in out and "2 changed" in out
    assert not Workflow.objects.exists()
    out = _run("import_workflows", str(folder))
    assert "2 changed, 0 unchanged" in out
    out = _run("import_workflows", str(folder))
    assert "0 changed, 2 unchanged" in out
    assert WorkflowVersion.objects.count() == 2
    (folder / "ubuntu.yaml").write_text(UBUNTU_SERVER.replace("by PureBoot", "by PureBoot v2"))
    out = _run("import_workflows", str(folder / "ubuntu.yaml"))
    assert "ubuntu-2404-server -> v2" in out


def test_one_bad_file_imports_nothing(folder):
    (folder / "broken.yaml").write_text("name: broken\ntasks:\n  - type: nope\n")
    with pytest.raises(CommandError) as exc:
        _run("import_workflows", str(folder))
    assert "broken.yaml" in str(exc.value) and "tasks[0].type" in str(exc.value)
    assert not Workflow.objects.exists()


def test_missing_path_and_duplicate_names(folder, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        _run("import_workflows", str(tmp_path / "absent"))
    (folder / "copy.yaml").write_text(UBUNTU_SERVER)
    with pytest.raises(CommandError, match="more than one file"):
        _run("import_workflows", str(folder))


def test_export_round_trips(folder, tmp_path):
    _run("import_workflows", str(folder))
    target = tmp_path / "out"
    out = _run("export_workflows", str(target))
    assert "exported 2" in out
    assert (target / "ubuntu-2404-server.yaml").read_text() == UBUNTU_SERVER
    assert (target / "cloud-init-vm.yaml").read_text() == CLOUD_VM
    out = _run("import_workflows", str(target))
    assert "0 changed, 2 unchanged" in out
