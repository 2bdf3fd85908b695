#!/usr/bin/env python3
"""Ansible dynamic inventory from PureBoot (standard library only).

    PUREBOOT_URL=https://pureboot.example PUREBOOT_TOKEN=<API access token> \\
        ansible-inventory -i pureboot_inventory.py --list

``--list`` prints ``GET /api/v1/inventory/ansible`` (groups by site, state,
tag and workflow; every host's variables under ``_meta.hostvars``);
``--host NAME`` prints one host's variables. PUREBOOT_TOKEN is a PureBoot
API access token; instead, PUREBOOT_USERNAME and PUREBOOT_PASSWORD get one
from ``POST /api/v1/auth/token`` on every run (access tokens live minutes).
The inventory holds the nodes that user may see. PUREBOOT_CA_FILE names a
CA bundle for a private CA. Any HTTP or network failure is reported on stderr with exit status 1.

Every string in the host variables is printed marked unsafe,
``{"__ansible_unsafe": "..."}`` (the controller already marks them; this
script does it again for any it did not): much of it was reported by the
nodes themselves, and Ansible must never template it.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 30
UNSAFE = "__ansible_unsafe"


def mark_unsafe(value):
    """``value`` with every string, in nested dicts and lists too, marked unsafe for Ansible."""
    if isinstance(value, str):
        return {UNSAFE: value}
    if isinstance(value, dict):
        if set(value) == {UNSAFE}:
            return value
        return {key: mark_unsafe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mark_unsafe(item) for item in value]
    return value


def fail(message: str) -> None:
    print(f"pureboot_inventory: {message}", file=sys.stderr)
    sys.exit(1)


def call(base: str, path: str, token: str = "", body: dict | None = None) -> dict:
    """GET (or POST ``body`` to) ``base + path``; its JSON, or exit naming the failure."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(f"{base}{path}", data=data, headers=headers)
    ca_file = os.environ.get("PUREBOOT_CA_FILE") or None
    context = ssl.create_default_context(cafile=ca_file) if base.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc).get("detail", "")
        except (ValueError, AttributeError):
            detail = ""
        fail(f"{base} answered HTTP {exc.code}" + (f": {detail}" if detail else ""))
    except (urllib.error.URLError, OSError) as exc:
        fail(f"cannot reach {base}: {getattr(exc, 'reason', exc)}")
    except ValueError:
        fail(f"{base} did not answer JSON")
    raise AssertionError("unreachable")


def fetch_inventory() -> dict:
    base = os.environ.get("PUREBOOT_URL", "").strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        fail("set PUREBOOT_URL to the controller's http(s):// address")
    token = os.environ.get("PUREBOOT_TOKEN", "").strip()
    username = os.environ.get("PUREBOOT_USERNAME", "")
    if not token and username:
        credentials = {"username": username, "password": os.environ.get("PUREBOOT_PASSWORD", "")}
        token = str(call(base, "/api/v1/auth/token", body=credentials).get("access", ""))
    if not token:
        fail("set PUREBOOT_TOKEN, or PUREBOOT_USERNAME and PUREBOOT_PASSWORD")
    return call(base, "/api/v1/inventory/ansible", token)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="PureBoot dynamic inventory for Ansible")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--list", action="store_true", help="every group and host")
    group.add_argument("--host", help="one host's variables")
    args = parser.parse_args(argv)
    inventory = fetch_inventory()
    meta = inventory.get("_meta") if isinstance(inventory.get("_meta"), dict) else {}
    hostvars = meta.get("hostvars") if isinstance(meta.get("hostvars"), dict) else {}
    inventory["_meta"] = {**meta, "hostvars": mark_unsafe(hostvars)}
    if args.list:
        json.dump(inventory, sys.stdout)
    else:
        json.dump(inventory.get("_meta", {}).get("hostvars", {}).get(args.host, {}), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
