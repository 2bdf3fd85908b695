"""Re-encrypt every stored secret under the primary Fernet key."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from approvals import services as approvals
from configmgmt import services as configmgmt
from credentials import keys as fernet_keys
from credentials import services as credentials
from webhooks import services as webhooks


class Command(BaseCommand):
    help = (
        "Re-encrypt every credential secret (and the sealed secrets of pending approval "
        "requests, and the webhooks' signing secrets) under the primary key (the first of "
        "PUREBOOT_FERNET_KEYS, or of the key file). In one transaction; running it "
        "again changes nothing. --new-key first adds a generated key to the key file."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--new-key",
            action="store_true",
            help="Generate a new primary key into the key file, keeping the old keys "
            "for decryption (not with PUREBOOT_FERNET_KEYS set).",
        )

    def handle(self, *args, new_key: bool = False, **options):
        if new_key:
            self._add_key()
        try:
            report = credentials.rotate_keys(
                "system:rotate_keys",
                new_key_added=new_key,
                also=[approvals.rotate_sealed, configmgmt.rotate_sealed, webhooks.rotate_sealed],
            )
        except credentials.UndecryptableSecret as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(report))

    def _add_key(self) -> None:
        if settings.PUREBOOT_FERNET_KEYS_SOURCE == fernet_keys.ENV_VAR:
            raise CommandError(
                "--new-key writes the key file, but PUREBOOT_FERNET_KEYS is set: put the "
                "new key first in PUREBOOT_FERNET_KEYS, restart, and run rotate_keys."
            )
        path = Path(settings.PUREBOOT_FERNET_KEYS_SOURCE)
        keys = [Fernet.generate_key().decode(), *settings.PUREBOOT_FERNET_KEYS]
        try:
            # The old keys stay in the file: if rotation fails below, every
            # secret still decrypts.
            fernet_keys.write_key_file(path, keys)
        except (OSError, ImproperlyConfigured) as exc:
            raise CommandError(f"Cannot write {path}: {exc}") from None
        settings.PUREBOOT_FERNET_KEYS = keys
        self.stdout.write(f"New primary key written to {path} ({len(keys)} keys in the file).")
