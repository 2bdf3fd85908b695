"""Set up the test OpenID provider's database; run by provider.py.

python op_seed.py setup      JSON on stdin: {"clients": [...], "users": [...]}
python op_seed.py groups USERNAME GROUP...   set a user's groups exactly
"""

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "op_settings")
django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from oidc_provider.models import Client, ResponseType, RSAKey  # noqa: E402


def set_groups(username: str, names: list[str]) -> None:
    user = User.objects.get(username=username)
    user.groups.set([Group.objects.get_or_create(name=n)[0] for n in names])


def setup(spec: dict) -> None:
    call_command("migrate", verbosity=0)
    call_command("creatersakey")
    if not RSAKey.objects.exists():  # the command reports failures without failing
        sys.exit("creatersakey made no key")
    code, _ = ResponseType.objects.get_or_create(value="code", defaults={"description": "code"})
    for c in spec["clients"]:
        client = Client.objects.create(
            name=c["client_id"],
            client_type="confidential",
            client_id=c["client_id"],
            client_secret=c["client_secret"],
            jwt_alg=c.get("jwt_alg", "RS256"),
            _redirect_uris=c["redirect_uri"],
            _scope="openid profile email groups",
            reuse_consent=False,
        )
        client.response_types.add(code)
    for u in spec["users"]:
        user = User.objects.create_user(
            u["username"], email=u.get("email", ""), password=u["password"]
        )
        user.first_name = u.get("first_name", "")
        user.save()
        set_groups(u["username"], u.get("groups", []))


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(json.load(sys.stdin))
    elif sys.argv[1] == "groups":
        set_groups(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")
