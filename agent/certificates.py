"""Wipe certificates: issuing, rendering and verifying them.

One certificate per disk, issued the moment the agent's verified result for
that disk arrives. The document names the machine, the disk, the method
and its NIST SP 800-88 category, the passes, the verification, when it ran,
who asked for the wipe and who approved it, and the audit event recorded for
it (its sequence number and hash, so the certificate points into the
tamper-evident trail). It is canonical JSON (sorted keys, no spaces) signed
with PureBoot's Ed25519 key; ``manage.py verify_certificate`` checks both.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from audit import services as audit
from audit.models import AuditEvent
from nodes.models import Node

from . import signing
from .models import AgentJob, WipeCertificate

FORMAT = "pureboot-wipe-certificate/1"
STANDARD = "NIST SP 800-88 Rev. 1"


def canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def machine(node: Node) -> dict[str, Any]:
    return {
        "node": node.pk,
        "hostname": node.hostname,
        "serial": node.serial,
        "system_uuid": str(node.system_uuid) if node.system_uuid else "",
        "vendor": node.vendor,
        "model": node.model,
        "macs": sorted(node.interfaces.values_list("mac", flat=True)),
        "site": node.site.slug if node.site_id else "",
    }


def issue(
    job: AgentJob, node: Node, step: dict[str, Any], result: dict[str, Any]
) -> WipeCertificate:
    """Record, sign and store the certificate for one wiped disk (in the caller's transaction)."""
    params = step["params"]
    disk = params["disk"]
    cert_id = uuid.uuid4()
    event = audit.record(
        actor=f"node:{node.pk}",
        action="node.wipe_certified",
        object_type="nodes.node",
        object_id=node.pk,
        details={
            "certificate": str(cert_id),
            "disk_serial": disk.get("serial") or "",
            "disk_model": disk.get("model") or "",
            "method": params["method"],
            "category": params["category"],
            "verification": result["verification"].get("mode"),
        },
    )
    verification = result["verification"]
    key = signing.private_key()
    kid = signing.key_id(key.public_key())
    document = {
        "format": FORMAT,
        "certificate": str(cert_id),
        "issued_at": timezone.now().isoformat(),
        "issuer": {"product": "PureBoot", "key_id": kid},
        "machine": machine(node),
        "disk": {
            "name": disk.get("name"),
            "model": disk.get("model") or "",
            "serial": disk.get("serial") or "",
            "size_bytes": disk.get("size"),
            "transport": disk.get("transport") or "",
            "rotational": bool(disk.get("rotational")),
        },
        "sanitization": {
            "standard": STANDARD,
            "method": params["method"],
            "description": params["description"],
            "category": params["category"],
            "passes": params["passes"],
            "started_at": step.get("started_at"),
            "ended_at": step.get("ended_at"),
            "tool_output": str(result.get("output", ""))[-2000:],
        },
        "verification": {
            "mode": verification.get("mode"),
            "expect": verification.get("expect"),
            "bytes_read": verification.get("bytes_read"),
            "regions": verification.get("regions"),
            "result": "passed",
            "detail": str(verification.get("detail", ""))[:1000],
            # Where the agent's verified result came from (see README: the
            # PXE trust model): the address on the provisioning network.
            "reported_from": step.get("reported_from", ""),
        },
        "request": job.params.get("request", {}),
        "audit": {"seq": event.seq, "hash": event.hash},
    }
    text = canonical(document)
    signature = signing.sign(key, text.encode("ascii"))
    return WipeCertificate.objects.create(
        uuid=cert_id,
        node=node,
        job=job,
        disk_serial=(disk.get("serial") or "")[:128],
        disk_model=(disk.get("model") or "")[:128],
        method=params["method"],
        category=params["category"],
        document=text,
        signature=signature,
        key_id=kid,
    )


def export(cert: WipeCertificate) -> dict[str, Any]:
    """The certificate as one JSON file: the signed document text, its signature, the key."""
    public = signing.known_public_key(cert.key_id)
    return {
        "document": cert.document,
        "signature": cert.signature,
        "key_id": cert.key_id,
        "public_key": signing.public_pem(public).decode("ascii") if public else "",
    }


@dataclass
class Verdict:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


def verify(data: Any, *, public_pem: bytes | None = None, check_audit: bool = True) -> Verdict:
    """Check an exported certificate: its signature, and its audit event in this installation."""
    verdict = Verdict()
    if not isinstance(data, dict) or not isinstance(data.get("document"), str):
        verdict.fail("not a PureBoot wipe certificate (no signed document)")
        return verdict
    text = data["document"]
    try:
        document = json.loads(text)
    except ValueError:
        verdict.fail("the signed document is not JSON")
        return verdict
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        verdict.fail(f"unknown certificate format (expected {FORMAT})")
        return verdict
    kid = str((document.get("issuer") or {}).get("key_id", ""))
    if public_pem is not None:
        try:
            public = signing.load_public(public_pem)
        except signing.SigningKeyError as exc:
            verdict.fail(str(exc))
            return verdict
        if signing.key_id(public) != kid:
            verdict.fail("the certificate names another signing key than the one given")
    else:
        public = signing.known_public_key(kid)
        if public is None:
            verdict.fail(f"signing key {kid[:16]}… is not one this PureBoot has used")
            return verdict
    if not signing.verify(public, text.encode("ascii", "replace"), str(data.get("signature", ""))):
        verdict.fail("the signature does not match the document: it was altered or not signed here")
        return verdict
    verdict.facts.append(f"signature valid (Ed25519 key {kid[:16]}…)")
    if check_audit:
        _check_audit(document, verdict)
    return verdict


def _check_audit(document: dict[str, Any], verdict: Verdict) -> None:
    ref = document.get("audit") or {}
    event = AuditEvent.objects.filter(seq=ref.get("seq")).first()
    if event is None:
        verdict.fail(
            f"audit event #{ref.get('seq')} is not in this trail (cleared? verify the "
            "export that holds it with `manage.py audit_verify --export FILE`)"
        )
        return
    if event.hash != ref.get("hash"):
        verdict.fail(f"audit event #{event.seq} has another hash than the certificate names")
        return
    if (event.details or {}).get("certificate") != document.get("certificate"):
        verdict.fail(f"audit event #{event.seq} is about another certificate")
        return
    report = audit.verify_chain()
    if not report.intact:
        verdict.fail(f"the audit trail does not verify: {report}")
        return
    verdict.facts.append(f"audit event #{event.seq} matches; {report}")


def render_html(cert: WipeCertificate) -> str:
    """The certificate for people: every field of the signed document, escaped."""
    return render_to_string(
        "agent/certificate.html", {"doc": json.loads(cert.document), "cert": cert}
    )
