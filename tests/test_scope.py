"""Scope everything: a user of site A finds none of site B's objects anywhere.

Red team: the admin's approval-request pages were not site-scoped (an Operator
or User of site A saw site B's requests), and a MAC-conflict error named
another site's node. This walks every registered admin model (changelist,
search, facets, add form, every per-object page, history, delete), every
admin autocomplete source, and every API GET operation of the OpenAPI schema,
as each site-scoped role, with objects of every kind in site B. A model or
endpoint added later is walked too; one whose objects hang off a site but that
the walk cannot place fails until it is taught where they live.

What is looked for: any text of site B's objects (every such text carries
``secret-b``, or is site B's MAC) and any site-B primary key in autocomplete
answers; per-object pages must answer exactly as they do for an id that does
not exist (a 404 in the API, not 403: not even existence is revealed). A node
in no site is hidden from these roles just the same.

Scope by role is checked below too: credential metadata (names and kinds only
for names-only readers, in the admin as in the API), the audit trail, other
people's emergency grants and accounts, and changelist filters on the fields
an admin hides.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.test import RequestFactory
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from guardian.shortcuts import assign_perm

from accounts.models import EmergencyGrant
from accounts.roles import ROLES
from agent.models import AgentJob, AgentLogLine, WipeCertificate
from approvals import services as approvals
from approvals.models import ApprovalRequest
from bootserve.models import BootRecord
from configmgmt.models import ConfigRun, Registration
from credentials import services as credentials
from credentials.models import Credential
from dashboard.panels import PANELS
from hypervisors.models import Hypervisor, HypervisorOperation, HypervisorTemplate, VirtualMachine
from nodes import services as node_services
from nodes.models import Migration, Node, Site
from tests.factories import make_node, make_user, make_workflow, sealed
from webhooks.models import Delivery, Subscription
from workflows import services as workflow_services
from workflows.models import OfflineJoin, RunLogLine

pytestmark = pytest.mark.django_db

# The roles that see only the sites granted to them (the others see all sites).
SCOPED_ROLES = tuple(r for r, perms in ROLES.items() if "nodes.access_all_sites" not in perms)
ALL_ROLES = tuple(ROLES)
SECRET = "secret-b"  # every text of site B's objects carries this
B_HOST, B_MAC = "secret-b-db01", "52:54:00:bb:00:01"
CRED_SECRET = "secret-cred"  # a credential's metadata: only credentials.view_credential
MISSING = 987654  # an id no object has


MARKERS = (SECRET, B_MAC)


@pytest.fixture
def world(site_a, settings):
    """Objects of every kind that hangs off a site, in site B (and a few in A)."""
    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    site_b = Site.objects.create(name="secret-b site", slug="secret-b", description=SECRET)
    admin_b, admin_c = make_user("Admin"), make_user("Admin")
    # Site B's own people: a user and a group granted the site.
    make_user("Operator", sites=[site_b], username="secret-b-operator")
    assign_perm("nodes.operate_site", Group.objects.create(name="secret-b-team"), site_b)
    system = node_services.SYSTEM
    node_b = make_node(
        "pending", site=site_b, hostname=B_HOST, macs=[B_MAC], serial="SECRET-B-SERIAL"
    )
    node_services.perform(node_b.pk, "unassign", system)
    node_services.perform(node_b.pk, "assign", system, workflow=make_workflow("wf-shared"))
    _node, run_b, _token = workflow_services.start_install(node_b.pk)  # run, events, a token
    RunLogLine.objects.create(run=run_b, line=f"{SECRET} installer log line")
    # An offline domain join of that install (set-up only: no domain controller here).
    offline_b = OfflineJoin.objects.create(
        node=node_b, run=run_b, domain="secret-b.example", machine_name="SECRET-B-WS"
    )
    # A pending request (reprovision) and a rejected one, with its decision.
    installed_b = make_node("installed", site=site_b, hostname="secret-b-web02")
    with pytest.raises(node_services.ApprovalRequired) as exc:
        node_services.perform(installed_b.pk, "reprovision", node_services.Actor.of(admin_b))
    request_b = approvals.file(exc.value.proposal, admin_b)
    active_b = make_node("active", site=site_b, hostname="secret-b-app03")
    with pytest.raises(node_services.ApprovalRequired) as exc:
        node_services.perform(
            active_b.pk, "retire", node_services.Actor.of(admin_b), reason=f"{SECRET} reason"
        )
    rejected_b = approvals.file(exc.value.proposal, admin_b)
    approvals.reject(rejected_b.pk, admin_c, f"{SECRET} verdict")
    # The admin's own log of a change to a site-B node (history pages, recent actions).
    _log(admin_b, active_b, f"{SECRET} change")
    # Not site-bound, but role-bound: a credential, a request about one, an
    # emergency grant of someone else.
    credential = credentials.create_credential(
        "user:setup",
        {
            "name": "bmc-lab",
            "kind": "bmc",
            "username": f"{CRED_SECRET}-user",
            "scope": f"{CRED_SECRET}-scope",
            "description": f"{CRED_SECRET}-description",
        },
        {"password": "hunter2-xyzzy"},
        approval=sealed("credential.create", "credential:new:bmc-lab", ""),
    )
    approvals.request_credential(
        "credential.change", admin_b, credential, {"username": f"{CRED_SECRET}-new"}, {}
    )
    access = approvals.request_other(
        "access.grant",
        admin_b,
        target_id=str(admin_c.pk),
        target_label=admin_c.get_username(),
        params={"role": "Auditor", "hours": 2},
        reason=f"{SECRET} emergency",
    )
    now = timezone.now()
    grant = EmergencyGrant.objects.create(
        user=admin_c,
        role="Auditor",
        starts_at=now,
        ends_at=now + timedelta(hours=2),
        request=access,
    )
    # A site-B machine being wiped: its agent job, log and a certificate.
    wiping_b = make_node("deprovisioning", site=site_b, hostname="secret-b-old04")
    job_b = AgentJob.objects.create(
        node=wiping_b,
        kind="wipe",
        episode="x",
        steps=[{"name": f"{SECRET} step", "action": "inventory", "status": "pending"}],
    )
    AgentLogLine.objects.create(job=job_b, line=f"{SECRET} agent log line")
    certificate_b = WipeCertificate.objects.create(
        node=wiping_b,
        job=job_b,
        disk_serial="SECRET-B-DISK",
        disk_model=SECRET,
        method="overwrite",
        category="clear",
        document=f'{{"machine": "{SECRET}"}}',
        signature="x",
        key_id="0" * 64,
    )
    # A site-B migration between two site-B machines.
    migration_b = Migration.objects.create(
        source=make_node("migrating", site=site_b, hostname="secret-b-src05"),
        target=make_node("migrating", site=site_b, hostname="secret-b-dst06"),
        reason=f"{SECRET} migration",
        transfer={"iqn": f"iqn.2026-12.org.pureboot:{SECRET.lower()}"},
    )
    # A site-B hypervisor with a VM for a site-B node, a template and a call made to it.
    hypervisor_b = Hypervisor.objects.create(
        name="secret-b-kvm",
        type="libvirt",
        endpoint=f"qemu+ssh://{SECRET}/system",
        site=site_b,
        last_error=f"{SECRET} unreachable",
    )
    vm_b = VirtualMachine.objects.create(
        hypervisor=hypervisor_b,
        node=make_node("pending", site=site_b, hostname="secret-b-vm07"),
        name="secret-b-vm07",
        platform_id=f"{SECRET}-uuid",
        managed=True,
    )
    HypervisorTemplate.objects.create(
        hypervisor=hypervisor_b, platform_id=f"{SECRET}-tmpl", name=f"{SECRET}-tmpl"
    )
    operation_b = HypervisorOperation.objects.create(
        hypervisor=hypervisor_b, vm=vm_b, kind="sync", actor="system", error=f"{SECRET} op"
    )
    # Configuration management: a site-B config run and Salt registration.
    ConfigRun.objects.create(
        node=node_b, workflow_run=run_b, step=0, tool="ansible", output=f"{SECRET} playbook"
    )
    Registration.objects.create(
        node=installed_b, system="salt", name="secret-b-web02", error=f"{SECRET} salt-api"
    )
    # A site-B webhook subscription and a delivery it made.
    hook_b = Subscription.objects.create(
        name="secret-b-hook",
        url=f"https://{SECRET}.example.com/in",
        events=["node.transition"],
        site=site_b,
        secret_ciphertext="x",
        created_by="user:admin-b",
    )
    delivery_b = Delivery.objects.create(
        subscription=hook_b,
        audit_seq=1,
        event_type="node.transition",
        payload={"node": {"hostname": B_HOST}},
        error=f"{SECRET} refused",
    )
    # A machine that booted and is not placed in any site yet.
    orphan = make_node("discovered", hostname="secret-b-orphan")
    node_services.perform(orphan.pk, "assign", system, workflow=make_workflow("wf-orphan"))
    # What site B's machine, the unplaced one and an unknown machine asked at boot.
    boot_b = BootRecord.objects.create(
        protocol="http", client_address="10.0.0.66", mac=B_MAC, node=node_b, site=site_b,
        asked=f"/boot/ipxe?mac={B_MAC}&x={SECRET}", outcome="install",
        answer=f"iPXE script: {SECRET}", node_state="installing",
    )  # fmt: skip
    for node in (orphan, None):
        BootRecord.objects.create(
            protocol="tftp", node=node, mac=B_MAC, asked=f"{SECRET}.cfg", outcome="wait"
        )
    node_a = make_node("discovered", site=site_a, hostname="mine-a01")
    installed_a = make_node("installed", site=site_a, hostname="mine-a02")
    with pytest.raises(node_services.ApprovalRequired) as exc:
        node_services.perform(installed_a.pk, "reprovision", node_services.Actor.of(admin_b))
    approvals.file(exc.value.proposal, admin_b)  # a request the walk may open
    return {
        "site_b": site_b,
        "node_b": node_b,
        "run_b": run_b,
        "offline_b": offline_b,
        "request_b": request_b,
        "node_a": node_a,
        "orphan": orphan,
        "credential": credential,
        "grant": grant,
        "job_b": job_b,
        "boot_b": boot_b,
        "certificate_b": certificate_b,
        "migration_b": migration_b,
        "hypervisor_b": hypervisor_b,
        "vm_b": vm_b,
        "operation_b": operation_b,
        "hook_b": hook_b,
        "delivery_b": delivery_b,
    }


NO_SITE = "no site"  # a node without a site: only all-sites roles see it


def _site_of(obj, depth: int = 3):
    """The site an object hangs off, through its foreign keys (None: not site-bound)."""
    if isinstance(obj, Site):
        return obj
    if isinstance(obj, Node):
        return obj.site or NO_SITE
    if depth == 0:
        return None
    for field in obj._meta.concrete_fields:
        if isinstance(field, models.ForeignKey) and getattr(obj, field.attname) is not None:
            site = _site_of(getattr(obj, field.name), depth - 1)
            if site is not None:
                return site
    return None


def _b_objects(world) -> dict[type, set]:
    """Primary keys of site B's (and site-less nodes') objects, by model (every model)."""
    out: dict[type, set] = {}
    for model in apps.get_models():
        for obj in model._default_manager.all():
            if _site_of(obj) in (world["site_b"], NO_SITE):
                out.setdefault(model, set()).add(obj.pk)
    return out


# Models that hang off a site only through a link their objects never use.
NEVER_SITE_BOUND = {EmergencyGrant: "granted by access requests, which name no node"}


def test_the_world_has_site_b_objects_of_every_model_that_hangs_off_a_site(world):
    """A model added later with a path to a site needs its site-B object below."""
    present = _b_objects(world)
    missing = [
        model._meta.label
        for model in apps.get_models()
        if _hangs_off_a_site(model) and model not in present and model not in NEVER_SITE_BOUND
    ]
    assert not missing, f"add site-B objects of {missing} to the world fixture"


def _log(user, obj, message: str) -> None:
    LogEntry.objects.create(
        user=user,
        content_type=ContentType.objects.get_for_model(obj),
        object_id=str(obj.pk),
        object_repr=str(obj),
        action_flag=CHANGE,
        change_message=message,
    )


def _staff(role, site):
    user = make_user(role, sites=[site])
    user.is_staff = True
    user.save()
    return user


def _secret_in(body: str, markers) -> list[str]:
    lowered = body.lower()
    return [m for m in markers if m.lower() in lowered]


def _object_urls(model_admin, pk, other_pks) -> list[str]:
    """Every admin URL of ``model_admin`` that addresses one object, for object ``pk``."""
    urls = []
    for pattern in model_admin.get_urls():
        names = set(pattern.pattern.regex.groupindex)
        if not pattern.name or not names & {"object_id", "object_pk", "node_id"}:
            continue
        kwargs = {}
        for name in names:
            kwargs[name] = pk if name in {"object_id", "object_pk", "node_id"} else other_pks[name]
        try:
            urls.append(reverse(f"admin:{pattern.name}", kwargs=kwargs))
        except NoReverseMatch:  # e.g. a sub-page that takes other arguments
            continue
    return urls


def _same_answer(client, url: str, missing_url: str, method: str = "get"):
    seen = getattr(client, method)(url)
    blank = getattr(client, method)(missing_url)
    location = seen.get("Location", "").replace(url, missing_url)
    return seen, (seen.status_code, location) == (blank.status_code, blank.get("Location", ""))


@pytest.mark.parametrize("role", SCOPED_ROLES)
def test_every_admin_page_hides_site_b(client, world, site_a, role):
    """Changelists (search, facets), add forms, every per-object page and the index."""
    user = _staff(role, site_a)
    client.force_login(user)
    request = RequestFactory().get("/admin/")
    request.user = user
    markers = MARKERS
    b_pks = _b_objects(world)
    # Once granted site B, this user changed its node: their own log still says so.
    _log(user, world["node_b"], f"{SECRET} edited while granted")
    other_pks = {"user_id": user.pk, "group_id": user.groups.first().pk}
    before = {m: m._default_manager.count() for m in admin.site._registry}
    walked = 0
    for model, model_admin in admin.site._registry.items():
        hidden = (world["site_b"], NO_SITE)
        leaked = [o for o in model_admin.get_queryset(request) if _site_of(o) in hidden]
        assert not leaked, f"{model.__name__} admin shows site B's {leaked}"
        opts = model._meta
        base = f"/admin/{opts.app_label}/{opts.model_name}/"
        # "db01" finds site B's node by a part of its name the page does not echo.
        for url in (base, f"{base}?_facets=1", f"{base}?q=db01", f"{base}add/"):
            resp = client.get(url)
            assert resp.status_code in (200, 302, 403), (url, resp.status_code)
            assert not _secret_in(resp.content.decode(), markers), (url, role)
        for pk in b_pks.get(model, ()):
            for url in _object_urls(model_admin, pk, other_pks):
                missing_url = url.replace(f"/{pk}/", f"/{MISSING}/", 1)
                for method in ("get", "post"):
                    resp, same = _same_answer(client, url, missing_url, method)
                    assert resp.status_code != 200, (method, url)
                    assert same, f"{method} {url} answers unlike an object that does not exist"
                    assert not _secret_in(resp.content.decode(), markers), (method, url)
                walked += 1
        # What the user may see: its pages show nothing of site B either (related
        # choices, inlines, read-only links, history).
        for obj in model_admin.get_queryset(request):
            for url in _object_urls(model_admin, obj.pk, other_pks):
                resp = client.get(url)
                assert not _secret_in(resp.content.decode(), markers), url
    for url in ("/admin/", *{f"/admin/{m._meta.app_label}/" for m in admin.site._registry}):
        assert not _secret_in(client.get(url).content.decode(), markers), url
    assert "mine-a01" in client.get("/admin/nodes/node/").content.decode()  # a real list
    # The approval pages share the API's scope.
    for view in ("awaiting", "mine", "history"):
        page = client.get(f"/approvals/?view={view}")
        assert page.status_code == 200 and not _secret_in(page.content.decode(), markers)
    request_b = world["request_b"].pk
    for url, method in (
        (f"/approvals/{request_b}/", "get"),
        (f"/approvals/{request_b}/decide", "post"),
    ):
        resp, same = _same_answer(client, url, url.replace(str(request_b), str(MISSING)), method)
        assert resp.status_code == 404 and same, (url, resp.status_code)
    assert walked >= 10  # node, site, events, run, requests: change, history, delete, ...
    assert before == {m: m._default_manager.count() for m in admin.site._registry}


@pytest.mark.parametrize("role", SCOPED_ROLES)
def test_every_admin_autocomplete_hides_site_b(client, world, site_a, role):
    """/admin/autocomplete/ for every relation of every model (registered or not)."""
    client.force_login(_staff(role, site_a))
    markers = MARKERS
    b_pks = _b_objects(world)
    answered = 0
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if not (field.is_relation and field.concrete and field.related_model):
                continue
            for term in ("", "secret", B_HOST, B_MAC):
                resp = client.get(
                    "/admin/autocomplete/",
                    {
                        "app_label": model._meta.app_label,
                        "model_name": model._meta.model_name,
                        "field_name": field.name,
                        "term": term,
                    },
                )
                if resp.status_code != 200:
                    assert resp.status_code in (403, 404), (model, field.name, resp.status_code)
                    continue
                answered += 1
                assert not _secret_in(resp.content.decode(), markers), (model, field.name)
                ids = {str(r["id"]) for r in resp.json()["results"]}
                hidden = {str(pk) for pk in b_pks.get(field.related_model, ())}
                assert not ids & hidden, (model, field.name, ids & hidden)
    assert answered  # the walk reached the scoped node and site choices


def _operations(methods=("GET",)) -> list[tuple[str, str, object]]:
    generator = SchemaGenerator()
    generator.parse(None, True)
    return sorted(
        {
            (path, method, view)
            for path, _p, method, view in generator.endpoints
            if method in methods
        },
        key=lambda op: op[:2],
    )


def _detail_url(path: str, world, node=None) -> str | None:
    """``path`` with its parameters naming site B's objects (None: none to name)."""
    node_b, request_b = node or world["node_b"], world["request_b"]
    values = {
        "nodes": {"pk": node_b.pk, "id": node_b.pk, "run": world["run_b"].pk},
        "approvals": {"pk": request_b.pk, "id": request_b.pk},
        "sites": {"slug": world["site_b"].slug},
        # Not site-bound: someone else's grant (its request names no node).
        "emergency-access": {"pk": world["grant"].pk},
        "agent-jobs": {"pk": world["job_b"].pk, "id": world["job_b"].pk},
        "wipe-certificates": {"uuid": world["certificate_b"].uuid},
        "migrations": {"pk": world["migration_b"].pk, "id": world["migration_b"].pk},
        "hypervisors": {"pk": world["hypervisor_b"].pk, "id": world["hypervisor_b"].pk},
        "vms": {"pk": world["vm_b"].pk, "id": world["vm_b"].pk},
        "offline-joins": {"pk": world["offline_b"].pk, "id": world["offline_b"].pk},
        "hypervisor-operations": {"pk": world["operation_b"].pk, "id": world["operation_b"].pk},
        "boots": {"pk": world["boot_b"].pk, "id": world["boot_b"].pk},
        "webhooks": {"pk": world["hook_b"].pk, "id": world["hook_b"].pk},
        "webhooks/deliveries": {"pk": world["delivery_b"].pk, "id": world["delivery_b"].pk},
    }
    resource = path.removeprefix("/api/v1/").split("/")[0]
    if path.startswith("/api/v1/webhooks/deliveries"):
        resource = "webhooks/deliveries"
    if resource not in values:
        return None
    url = path
    for name, value in values[resource].items():
        url = url.replace("{" + name + "}", str(value))
    return None if "{" in url else url


def _with_missing_pk(url: str) -> str:
    """The detail URL with its object's id replaced by one no object has."""
    return "/".join(str(MISSING) if part.isdigit() else part for part in url.split("/"))


def _model_of(view) -> type | None:
    cls = getattr(view, "cls", None) or getattr(view, "view_class", None)
    queryset = getattr(cls, "queryset", None)
    if queryset is not None:
        return queryset.model
    serializer = getattr(cls, "serializer_class", None)
    meta = getattr(serializer, "Meta", None)
    return getattr(meta, "model", None)


def _hangs_off_a_site(model, depth: int = 3) -> bool:
    if model in (Node, Site):
        return True
    if depth == 0:
        return False
    return any(
        _hangs_off_a_site(f.related_model, depth - 1)
        for f in model._meta.concrete_fields
        if isinstance(f, models.ForeignKey)
    )


@pytest.mark.parametrize("role", SCOPED_ROLES)
def test_every_api_list_and_detail_hides_site_b(api, world, site_a, role):
    user = make_user(role, sites=[site_a])
    client = api(user)
    markers = MARKERS
    operations = _operations()
    lists = [p for p, _m, _v in operations if "{" not in p]
    assert "/api/v1/nodes" in lists and "/api/v1/approvals" in lists
    for path in lists:
        for query in ("", "?format=api", "?site=secret-b&node={node}", "?hostname=db01"):
            query = query.format(node=world["node_b"].pk)
            resp = client.get(path + query)
            assert resp.status_code < 500, (path, query, resp.status_code)
            body = resp.content.decode().replace(query, "")  # links echo the query
            assert not _secret_in(body, markers), f"GET {path}{query}"
        described = client.options(path)  # field choices of the create form
        assert not _secret_in(described.content.decode(), markers), f"OPTIONS {path}"
    details = 0
    for path, _method, view in operations:
        if "{" not in path:
            continue
        urls = {_detail_url(path, world, node) for node in (world["node_b"], world["orphan"])}
        if urls == {None}:
            model = _model_of(view)
            assert model is None or not _hangs_off_a_site(model), (
                f"{path} serves {model.__name__}, which hangs off a site: teach this test "
                "which of site B's objects it names"
            )
            continue
        for url in urls:
            resp = client.get(url)
            # 404, not 403: not even the object's existence is revealed. A role
            # refused the whole resource (webhooks) gets 403 for any id alike.
            if resp.status_code == 403:
                blank = client.get(_with_missing_pk(url))
                assert blank.status_code == 403, (url, blank.status_code)
            else:
                assert resp.status_code == 404, (url, resp.status_code)
            assert not _secret_in(resp.content.decode(), markers), url
            details += 1
    assert details >= 7  # node, events, transitions, preview, runs, logs, request, site


@pytest.mark.parametrize("role", SCOPED_ROLES)
def test_every_api_write_to_site_b_answers_as_if_it_did_not_exist(api, world, site_a, role):
    """POST/PATCH/DELETE on site B's objects: the same answer as for a missing id, no change."""
    client = api(make_user(role, sites=[site_a]))
    before = {m: list(m._default_manager.values()) for m in (Node, ApprovalRequest, Site)}
    walked = 0
    for path, method, _view in _operations(("POST", "PATCH", "PUT", "DELETE")):
        url = _detail_url(path, world) if "{" in path else None
        if url is None:
            continue
        missing = re.sub(r"\{[^}]+\}", str(MISSING), path)
        send = getattr(client, method.lower())
        seen, blank = send(url, {}, format="json"), send(missing, {}, format="json")
        assert seen.status_code == blank.status_code, (method, url, seen.status_code, blank)
        assert seen.status_code in (403, 404, 405), (method, url, seen.status_code)
        assert not _secret_in(seen.content.decode(), MARKERS), (method, url)
        walked += 1
    assert walked >= 5  # node PATCH/DELETE/state/approve, request approve/reject/cancel
    assert before == {m: list(m._default_manager.values()) for m in before}


def test_the_api_conflict_error_does_not_name_a_hidden_node(api, world, site_a):
    user = make_user("Operator", sites=[site_a])
    node_a, node_b = world["node_a"], world["node_b"]
    client = api(user)
    patched = client.patch(
        f"/api/v1/nodes/{node_a.pk}", {"interfaces": [{"mac": B_MAC}]}, format="json"
    )
    created = client.post(
        "/api/v1/nodes",
        {"hostname": "mine-a03", "site": site_a.slug, "interfaces": [{"mac": B_MAC}]},
        format="json",
    )
    for resp in (patched, created):
        assert resp.status_code == 400, resp.content
        body = resp.content.decode().replace(B_MAC, "")
        assert not re.search(rf"\bnode\s*#?{node_b.pk}\b", body) and SECRET not in body, body


def test_the_admin_conflict_error_does_not_name_a_hidden_node(client, world, site_a):
    user = _staff("Operator", site_a)
    client.force_login(user)
    node_a, node_b = world["node_a"], world["node_b"]
    iface = node_a.interfaces.get()
    resp = client.post(
        f"/admin/nodes/node/{node_a.pk}/change/",
        {
            "hostname": node_a.hostname,
            "site": site_a.pk,
            "arch": node_a.arch,
            "firmware": node_a.firmware,
            "metadata": "{}",
            "interfaces-TOTAL_FORMS": "1",
            "interfaces-INITIAL_FORMS": "1",
            "interfaces-MIN_NUM_FORMS": "0",
            "interfaces-MAX_NUM_FORMS": "1000",
            "interfaces-0-id": iface.pk,
            "interfaces-0-node": node_a.pk,
            "interfaces-0-mac": B_MAC,
            "interfaces-0-name": "",
        },
        follow=True,
    )
    body = resp.content.decode().replace(B_MAC, "")
    assert node_a.interfaces.get().mac == iface.mac  # nothing moved
    assert "already" in body  # refused, and said so
    assert not re.search(rf"node {node_b.pk}\b|/node/{node_b.pk}/", body) and SECRET not in body


@pytest.mark.parametrize("role", ALL_ROLES)
def test_no_changelist_filter_probes_a_field_the_admin_hides(client, world, site_a, role):
    """``?<hidden field>__startswith=…`` would read a hidden value one character at a time."""
    user = _staff(role, site_a)
    client.force_login(user)
    request = RequestFactory().get("/admin/")
    request.user = user
    probed = []
    for model, model_admin in admin.site._registry.items():
        if not model_admin.has_view_or_change_permission(request):
            continue
        hidden = {
            *(model_admin.get_exclude(request) or ()),
            *getattr(model_admin, "hidden_fields", ()),
        }
        opts = model._meta
        for name in sorted(hidden):
            resp = client.get(f"/admin/{opts.app_label}/{opts.model_name}/?{name}__startswith=0")
            assert resp.status_code == 400, f"{opts.label}: filtering on hidden {name} answered"
            probed.append(f"{opts.label}.{name}")
    # The install token's nonce and a request's sealed secrets for every role;
    # a credential's metadata for names-only readers.
    assert {"workflows.WorkflowRun.token_nonce", "approvals.ApprovalRequest.sealed"} <= set(probed)
    if not user.has_perm("credentials.view_credential"):
        assert user.has_perm("credentials.view_credential_names") == (
            "credentials.Credential.username" in probed
        )


def test_recent_actions_name_only_objects_the_user_may_open(client, world, site_a):
    """The index's "Recent actions": one's own entries, minus what is out of scope now."""
    operator = _staff("Operator", site_a)
    _log(operator, world["node_a"], "edited in scope")
    _log(operator, world["node_b"], f"{SECRET} edited while granted")
    client.force_login(operator)
    index = client.get("/admin/").content.decode()
    assert world["node_a"].hostname in index and SECRET not in index
    # An all-sites admin still sees their entries, deletions included.
    boss = _staff("Admin", site_a)
    _log(boss, world["node_b"], "edited")
    LogEntry.objects.create(
        user=boss,
        content_type=ContentType.objects.get_for_model(Site),
        object_id=str(MISSING),
        object_repr="gone-site",
        action_flag=DELETION,
    )
    client.force_login(boss)
    index = client.get("/admin/").content.decode()
    assert B_HOST in index and "gone-site" in index


# --- role scope: credentials, audit, emergency grants --------------------------


def test_credential_names_only_holders_see_names_and_kinds_only(client, api, world, site_a):
    """The admin mirrors the API: names and kinds for view_credential_names, nothing more."""
    operator = _staff("Operator", site_a)
    assert operator.has_perm("credentials.view_credential_names")
    assert not operator.has_perm("credentials.view_credential")
    credential = world["credential"]
    client.force_login(operator)
    listed = client.get("/admin/credentials/credential/")
    assert listed.status_code == 200
    body = listed.content.decode()
    assert credential.name in body and credential.get_kind_display() in body
    assert CRED_SECRET not in body
    page = client.get(f"/admin/credentials/credential/{credential.pk}/change/")
    assert page.status_code == 200 and credential.name in page.content.decode()
    for sub in ("change", "history", "delete"):
        url = f"/admin/credentials/credential/{credential.pk}/{sub}/"
        resp = client.get(url)
        assert CRED_SECRET not in resp.content.decode(), url
    assert client.get("/admin/credentials/credential/add/").status_code == 403
    # Neither the search box nor a filter finds a credential by what is hidden.
    searched = client.get(f"/admin/credentials/credential/?q={CRED_SECRET}-user")
    assert credential.name not in searched.content.decode().replace(f"{CRED_SECRET}-user", "")
    for name in ("username", "scope", "description"):
        probe = client.get(f"/admin/credentials/credential/?{name}__startswith={CRED_SECRET}")
        assert probe.status_code == 400, name
    api_body = api(operator).get(f"/api/v1/credentials/{credential.pk}").content.decode()
    assert credential.name in api_body and CRED_SECRET not in api_body
    # Nor does the API sort by what it hides: the order would tell it.
    newer = Credential.objects.create(name="a-newer", kind="bmc", username="u")
    Credential.objects.filter(pk=credential.pk).update(updated_at=newer.updated_at - timedelta(1))
    names = [
        c["name"]
        for c in api(operator).get("/api/v1/credentials?ordering=updated_at").data["results"]
    ]
    assert names == ["a-newer", credential.name]  # by name, as if not asked
    auditor = make_user("Auditor")
    names = [
        c["name"]
        for c in api(auditor).get("/api/v1/credentials?ordering=updated_at").data["results"]
    ]
    assert names == [credential.name, "a-newer"]


@pytest.mark.parametrize("role", SCOPED_ROLES)
def test_role_bound_objects_stay_with_their_role(client, api, world, site_a, role):
    """Credential metadata, the audit trail and others' emergency grants."""
    user = _staff(role, site_a)
    client.force_login(user)
    markers = [CRED_SECRET, SECRET]
    for url in (
        "/admin/credentials/credential/",
        f"/admin/credentials/credential/{world['credential'].pk}/change/",
        "/admin/audit/auditevent/",
        "/admin/accounts/emergencygrant/",
        f"/admin/accounts/emergencygrant/{world['grant'].pk}/change/",
        "/approvals/?view=history",
    ):
        assert not _secret_in(client.get(url).content.decode(), markers), url
    for url in ("/api/v1/credentials", "/api/v1/emergency-access", "/api/v1/audit"):
        assert not _secret_in(api(user).get(url).content.decode(), markers), url
    assert api(user).get("/api/v1/audit").status_code == 403
    grant = api(user).get(f"/api/v1/emergency-access/{world['grant'].pk}")
    assert grant.status_code == 404


@pytest.mark.parametrize("role", ALL_ROLES)
def test_asking_for_someone_elses_access_does_not_tell_who_exists(api, world, site_a, role):
    """Without the grant permission, an existing, a disabled and a missing account
    get one answer (it named the missing ones, and said which were disabled)."""
    user = make_user(role, sites=[site_a])
    disabled = make_user("User", username="secret-b-disabled")
    disabled.is_active = False
    disabled.save()
    client = api(user)
    answers = set()
    for name in ("secret-b-operator", "secret-b-disabled", "secret-b-nobody"):
        for query in ("", "?dry_run=1"):
            resp = client.post(
                f"/api/v1/emergency-access{query}",
                {"user": name, "role": "Auditor", "hours": 1, "reason": "cover"},
                format="json",
            )
            answers.add((resp.status_code, resp.content.decode().replace(name, "<name>")))
    if user.has_perm("accounts.grant_emergency_access"):
        assert len(answers) > 1  # an administrator is told what is wrong with the name
    else:
        assert len(answers) == 1 and answers.pop()[0] == 403


@pytest.mark.parametrize("role", SCOPED_ROLES)
def test_the_dashboard_and_node_history_hide_site_b(client, world, site_a, role):
    """The dashboard page, each live fragment and the node history pages."""
    client.force_login(_staff(role, site_a))
    for url in ("/admin/dashboard/", *(f"/admin/dashboard/panel/{n}/" for n in PANELS)):
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert not _secret_in(resp.content.decode(), MARKERS), (url, role)
    for node in (world["node_b"], world["orphan"]):
        url = f"/admin/dashboard/nodes/{node.pk}/history/"
        resp, same = _same_answer(client, url, url.replace(str(node.pk), str(MISSING)))
        assert resp.status_code == 404 and same, url
    resp = client.get(f"/admin/dashboard/nodes/{world['node_a'].pk}/history/")
    assert resp.status_code == 200 and not _secret_in(resp.content.decode(), MARKERS)
