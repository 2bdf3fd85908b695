"""The fake engine's HTTP side: the SSO endpoints (JSON) and ``/ovirt-engine/api``
(XML), bearer tokens, the routes, ``search``/``follow``/``max``, and faults."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..common import RestHandler
from . import render
from .render import parse
from .state import Fault, missing
from .vms import FakeEngine

_PREFIX = "/ovirt-engine/api"
_SSO_TOKEN = "/ovirt-engine/sso/oauth/token"
_SSO_LOGOUT = "/ovirt-engine/services/sso-logout"


def _searchable(engine: FakeEngine, kind: str) -> Callable[[Any], dict[str, str]]:
    """The fields ``search=`` may name, per collection."""

    def cluster_name(cluster_id: str) -> str:
        return engine.clusters[cluster_id].name if cluster_id in engine.clusters else ""

    def host_name(host_id: str) -> str:
        return engine.hosts[host_id].name if host_id in engine.hosts else ""

    return {
        "clusters": lambda c: {"name": c.name, "id": c.id},
        "hosts": lambda h: {
            "name": h.name,
            "id": h.id,
            "status": h.status,
            "cluster": cluster_name(h.cluster),
        },
        "storagedomains": lambda d: {"name": d.name, "id": d.id, "type": d.type},
        "networks": lambda n: {"name": n.name, "id": n.id, "datacenter": "Default"},
        "vnicprofiles": lambda p: {"name": p.name, "id": p.id},
        "templates": lambda t: {"name": t.name, "id": t.id},
        "vms": lambda v: {
            "name": v.name,
            "id": v.id,
            "status": v.status,
            "cluster": cluster_name(v.cluster),
            "host": host_name(v.host),
        },
    }[kind]


class Handler(RestHandler):
    """Serves the engine in ``self.server.engine`` (a :class:`FakeEngine`)."""

    def serve(self, method: str) -> None:
        engine: FakeEngine = self.server.engine  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        path = unquote(url.path).rstrip("/")
        body = self.body()
        with engine.lock:
            engine.requests.append((method, path + (f"?{url.query}" if url.query else "")))
            if path in (_SSO_TOKEN, _SSO_LOGOUT):
                if method != "POST":
                    self._reply(405, b"", "text/plain")
                    return
                form = dict(parse_qsl(body.decode(), keep_blank_values=True))
                sso = engine.sso_token if path == _SSO_TOKEN else engine.sso_logout
                code, answer = sso(form)
                self._reply(code, json.dumps(answer).encode(), "application/json")
                return
            if not path.startswith(_PREFIX):
                self._reply(404, b"<html><body>Not Found</body></html>", "text/html")
                return
            if engine.user_of(self.headers.get("Authorization", "")) is None:
                self._reply(401, b"", "text/plain")
                return
            engine.bodies.append(body.decode())
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            try:
                engine.tick()
                engine.check_refusals(method, path)
                code, element = self._route(engine, method, path[len(_PREFIX) :], query, body)
            except Fault as exc:
                code, element = exc.code, render.fault(exc)
        self._reply(code, render.document(element), "application/xml;charset=UTF-8")

    def _reply(self, code: int, raw: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    # --- routes -------------------------------------------------------------------------

    def _route(
        self, engine: FakeEngine, method: str, path: str, query: dict[str, str], body: bytes
    ) -> tuple[int, ET.Element]:
        parts = [p for p in path.split("/") if p]
        follow = set(filter(None, query.get("follow", "").split(",")))
        if not parts:
            if method != "GET":
                raise Fault(405, "Method not allowed", "Not allowed")
            return 200, render.api_root(engine)
        kind, rest = parts[0], parts[1:]
        if kind == "vms":
            return self._vms(engine, method, rest, query, body, follow)
        if method != "GET":
            raise Fault(405, "Method not allowed", "Not allowed")
        tables: dict[str, tuple[dict[str, Any], str, Callable[[Any], ET.Element]]] = {
            "clusters": (engine.clusters, "clusters", render.cluster),
            "hosts": (engine.hosts, "hosts", render.host),
            "storagedomains": (engine.domains, "storage_domains", render.storage_domain),
            "networks": (engine.networks, "networks", render.network),
            "vnicprofiles": (engine.profiles, "vnic_profiles", render.vnic_profile),
            "templates": (
                engine.templates,
                "templates",
                lambda t: render.template(engine, t, follow),
            ),
            "disks": (engine.disks, "disks", render.disk),
        }
        if kind not in tables:
            raise Fault(404, f"No such collection '{kind}'", "Not found")
        table, tag, draw = tables[kind]
        if not rest:
            items = self._listed(engine, kind, list(table.values()), query)
            return 200, render.collection(tag, [draw(obj) for obj in items])
        obj = table.get(rest[0])
        if obj is None:
            raise missing(kind, f"id={rest[0]}")
        if len(rest) == 1:
            return 200, draw(obj)
        if kind == "templates" and rest[1:] == ["nics"]:
            return 200, render.collection(
                "nics", [render.nic(n, "templates", obj.id) for n in obj.nics]
            )
        if kind == "templates" and rest[1:] == ["diskattachments"]:
            deep = "disk" in follow
            items = [
                render.attachment(engine, a, "templates", obj.id, deep) for a in obj.attachments
            ]
            return 200, render.collection("disk_attachments", items)
        raise Fault(404, f"No such resource '{path}'", "Not found")

    def _listed(
        self, engine: FakeEngine, kind: str, items: list[Any], query: dict[str, str]
    ) -> list[Any]:
        if query.get("search"):
            items = engine.search(items, query["search"], _searchable(engine, kind))
        if query.get("max"):
            items = items[: int(query["max"])]
        return items

    def _vms(
        self,
        engine: FakeEngine,
        method: str,
        rest: list[str],
        query: dict[str, str],
        body: bytes,
        follow: set[str],
    ) -> tuple[int, ET.Element]:
        if not rest:
            if method == "GET":
                items = self._listed(engine, "vms", list(engine.vms.values()), query)
                return 200, render.collection("vms", [render.vm(engine, v, follow) for v in items])
            if method == "POST":
                clone = query.get("clone") == "true"
                vm = engine.add_vm_from(parse(body, "vm"), clone)
                return 201, render.vm(engine, vm, set())
            raise Fault(405, "Method not allowed", "Not allowed")
        vm = engine.vm(rest[0])
        sub = rest[1:]
        if not sub:
            if method == "GET":
                return 200, render.vm(engine, vm, follow)
            if method == "PUT":
                return 200, render.vm(engine, engine.update_vm(vm, parse(body, "vm")), set())
            if method == "DELETE":
                engine.remove_vm(vm, query.get("detach_only") == "true")
                return 200, render.action()
        elif len(sub) == 1 and method == "POST" and sub[0] not in ("nics", "diskattachments"):
            engine.act(vm, sub[0], parse(body, "action"))
            return 200, render.action()
        elif sub[0] == "nics":
            return self._nics(engine, vm, method, sub[1:], body)
        elif sub[0] == "diskattachments":
            return self._attachments(engine, vm, method, sub[1:], body, follow)
        raise Fault(405, "Method not allowed", "Not allowed")

    def _nics(
        self, engine: FakeEngine, vm: Any, method: str, rest: list[str], body: bytes
    ) -> tuple[int, ET.Element]:
        if not rest:
            if method == "GET":
                return 200, render.collection(
                    "nics", [render.nic(n, "vms", vm.id) for n in vm.nics]
                )
            if method == "POST":
                return 201, render.nic(engine.add_nic(vm, parse(body, "nic")), "vms", vm.id)
            raise Fault(405, "Method not allowed", "Not allowed")
        nic = next((n for n in vm.nics if n.id == rest[0]), None)
        if nic is None:
            raise missing("VmNetworkInterface", f"id={rest[0]}")
        if method == "GET":
            return 200, render.nic(nic, "vms", vm.id)
        if method == "PUT":
            return 200, render.nic(engine.update_nic(vm, nic, parse(body, "nic")), "vms", vm.id)
        if method == "DELETE":
            engine.remove_nic(vm, nic)
            return 200, render.action()
        raise Fault(405, "Method not allowed", "Not allowed")

    def _attachments(
        self,
        engine: FakeEngine,
        vm: Any,
        method: str,
        rest: list[str],
        body: bytes,
        follow: set[str],
    ) -> tuple[int, ET.Element]:
        deep = "disk" in follow
        if not rest:
            if method == "GET":
                items = [render.attachment(engine, a, "vms", vm.id, deep) for a in vm.attachments]
                return 200, render.collection("disk_attachments", items)
            if method == "POST":
                made = engine.add_attachment(vm, parse(body, "disk_attachment"))
                return 201, render.attachment(engine, made, "vms", vm.id, False)
            raise Fault(405, "Method not allowed", "Not allowed")
        found = next((a for a in vm.attachments if a.disk == rest[0]), None)
        if found is None:
            raise missing("DiskAttachment", f"id={rest[0]}")
        if method == "GET":
            return 200, render.attachment(engine, found, "vms", vm.id, deep)
        raise Fault(405, "Method not allowed", "Not allowed")
