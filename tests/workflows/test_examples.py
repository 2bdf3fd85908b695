"""The shipped example workflows import cleanly, and their installers pass their checkers."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from workflows.models import Workflow

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "workflows"

pytestmark = pytest.mark.django_db


def test_examples_import_and_pass_their_checkers():
    out, err = StringIO(), StringIO()
    call_command("import_workflows", str(EXAMPLES), stdout=out, stderr=err)
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert f"{len(files)} changed, 0 unchanged" in out.getvalue()
    assert Workflow.objects.count() == len(files) >= 9
    # The only warnings allowed: boot images this test database has not imported.
    for line in err.getvalue().splitlines():
        assert "no boot image" in line, line


def test_product_description_examples_are_shipped():
    from .examples import OVIRT_VM, UBUNTU_SERVER

    assert (EXAMPLES / "ubuntu-2404-server.yaml").read_text() == UBUNTU_SERVER
    assert (EXAMPLES / "ovirt-ubuntu-vm.yaml").read_text() == OVIRT_VM
