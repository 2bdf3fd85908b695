"""``manage.py verify_certificate FILE``: check a wipe certificate's signature and audit entry."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from agent import certificates

MAX_BYTES = 1024 * 1024


class Command(BaseCommand):
    help = (
        "Verify an exported wipe certificate (GET /api/v1/wipe-certificates/{uuid}/export): "
        "its Ed25519 signature and, unless --signature-only, the audit event it names and the "
        "audit trail's hash chain in this installation."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the certificate JSON file")
        parser.add_argument(
            "--public-key",
            help="PEM file of the public key to check against (default: the keys this "
            "PureBoot has signed with)",
        )
        parser.add_argument(
            "--signature-only",
            action="store_true",
            help="check only the signature (e.g. on a machine without this PureBoot's audit trail)",
        )

    def handle(self, *args, file, public_key, signature_only, **options):
        data = self._load(Path(file))
        pem = self._read(Path(public_key)) if public_key else None
        verdict = certificates.verify(data, public_pem=pem, check_audit=not signature_only)
        if not verdict.ok:
            raise CommandError(f"{file}: NOT VALID: " + "; ".join(verdict.problems))
        document = json.loads(data["document"])
        disk, machine = document["disk"], document["machine"]
        self.stdout.write(
            self.style.SUCCESS(
                f"{file}: valid. Certificate {document['certificate']}: disk "
                f"{disk['model']} {disk['serial']} ({disk['size_bytes']} bytes) of node "
                f"{machine['node']} {machine['hostname']} sanitized by "
                f"{document['sanitization']['method']} "
                f"({document['sanitization']['category']}), verified "
                f"{document['verification']['mode']}."
            )
        )
        for fact in verdict.facts:
            self.stdout.write(f"  {fact}")

    def _read(self, path: Path) -> bytes:
        try:
            if path.stat().st_size > MAX_BYTES:
                raise CommandError(f"{path}: larger than {MAX_BYTES} bytes; not a certificate")
            return path.read_bytes()
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from None

    def _load(self, path: Path):
        try:
            return json.loads(self._read(path))
        except ValueError:
            raise CommandError(f"{path}: not JSON") from None
