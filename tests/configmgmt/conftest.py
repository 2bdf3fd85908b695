import shutil
import sys
from pathlib import Path

import pytest

from accounts.tokens import TokenObtainPairSerializer
from nodes.models import Tag
from tests.factories import make_node, make_user, make_workflow

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The path of a real tool the test runs; the test fails (never skips) without it."""
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if not found:
        pytest.fail(f"{name} is not installed (see the README's test requirements)")
    return found


def access_token(user) -> str:
    return str(TokenObtainPairSerializer.get_token(user).access_token)


@pytest.fixture
def admin_user(db):
    return make_user("Admin", username="alice-admin")


@pytest.fixture
def operator_a(db, site_a):
    return make_user("Operator", sites=[site_a], username="oscar-op")


@pytest.fixture
def fleet(db, site_a, site_b):
    """Two nodes at site A (one installed, tagged), one at site B."""
    workflow = make_workflow("ubuntu-web")
    web = make_node(
        "installed",
        site=site_a,
        hostname="web1.example.net",
        macs=["52:54:00:aa:00:01"],
        metadata={"addresses": ["192.0.2.10"], "secret_note": "hunter2"},
        inventory={
            "memory_bytes": 8 * 1024**3,
            "cpus": {"model": "QEMU Virtual CPU"},
            "disks": [{"path": "/dev/vda", "model": "QEMU", "size": 10**10, "serial": "x"}],
            "network": {"interface": "eth0", "mac": "52:54:00:aa:00:01", "address": "10.0.0.5/24"},
        },
        workflow=workflow,
    )
    web.tags.add(Tag.objects.create(name="front-end-web"))
    db1 = make_node("pending", site=site_a, hostname="db1.example.net")
    other = make_node("installed", site=site_b, hostname="b-secret.example.net")
    return {"web": web, "db": db1, "other": other}
