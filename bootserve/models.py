"""Boot records: who asked the boot services for what, and what they got.

One row per boot decision (an iPXE script, a ``/api/v1/next`` answer, an
HTTP Boot first stage), per finished or refused TFTP transfer of a boot
file, per bootloader config fetch and per DHCP lease event dnsmasq reports.
Written only by ``bootserve.records`` (``record_boot``; ``record_dhcp_event``
for dnsmasq's lease events); read by the dashboard, the node timeline and
``/api/v1/boots``. The hot path writes at most one row (a recent identical
request is only counted), and ``prune_boot_records`` keeps the table bounded
(PUREBOOT_BOOT_RECORD_DAYS).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

#: Column caps: what a machine asks for is attacker-controlled text.
ASKED_MAX = 255
ANSWER_MAX = 200


class Protocol(models.TextChoices):
    DHCP = "dhcp", "DHCP"
    TFTP = "tftp", "TFTP"
    HTTP = "http", "HTTP"


class Outcome(models.TextChoices):
    """What the machine got; one label each, readable on the dashboard."""

    INSTALL = "install", "Install"
    LOCAL_DISK = "local_disk", "Boot the local disk"
    WAIT = "wait", "Wait"
    DISCOVERED = "discovered", "Discovered"
    AGENT = "agent", "PureBoot agent"
    NO_ANSWER = "no_answer", "No answer"
    FILE_SENT = "file_sent", "File sent"
    NOT_FOUND = "not_found", "Not found"
    REFUSED = "refused", "Refused"
    FAILED = "failed", "Transfer failed"
    DHCP_LEASE = "dhcp_lease", "DHCP lease granted"
    DHCP_RENEW = "dhcp_renew", "DHCP lease renewed"
    DHCP_RELEASE = "dhcp_release", "DHCP lease ended"


class BootRecord(models.Model):
    """One boot request and its answer.

    ``site`` is copied from the node when the row is written, so scoping a
    list to a user's sites needs no join through the node (and a record keeps
    the site it happened at if the node moves). ``repeats`` counts identical
    requests folded into this row within the coalescing window;
    ``suppressed`` counts the requests from the same address left out just
    before this row because that address had passed its per-minute cap.
    """

    created = models.DateTimeField(default=timezone.now, db_index=True)
    last_at = models.DateTimeField(
        default=timezone.now,
        db_index=True,  # retention deletes by it
        help_text="When the last repeat folded into this row arrived.",
    )
    protocol = models.CharField(max_length=8, choices=Protocol.choices)
    client_address = models.GenericIPAddressField(
        null=True, blank=True, help_text="The address the request came from, when known."
    )
    mac = models.CharField(
        max_length=17, blank=True, db_index=True, help_text="Normalised aa:bb:cc:dd:ee:ff."
    )
    node = models.ForeignKey(
        "nodes.Node",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="boot_records",
    )
    site = models.ForeignKey(
        "nodes.Site",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="boot_records",
        help_text="The node's site when the request came (copied for scoping).",
    )
    asked = models.CharField(
        max_length=ASKED_MAX,
        blank=True,
        help_text="What was asked: a path, a TFTP file name, or a DHCP client's "
        "architecture and vendor class (control characters replaced, capped).",
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    answer = models.CharField(
        max_length=ANSWER_MAX, blank=True, help_text="The answer in a few words."
    )
    node_state = models.CharField(
        max_length=32, blank=True, help_text="The node's lifecycle state at that time."
    )
    repeats = models.PositiveIntegerField(
        default=1, help_text="Identical requests this row stands for (at least)."
    )
    suppressed = models.PositiveIntegerField(
        default=0,
        help_text="Requests from this address left out just before this row "
        "(its per-minute cap was reached).",
    )

    class Meta:
        ordering = ("-created", "-id")
        indexes = [
            models.Index(fields=["node", "-created"], name="bootrecord_node_created_idx"),
            models.Index(fields=["site", "-created"], name="bootrecord_site_created_idx"),
        ]

    def __str__(self) -> str:
        who = self.mac or self.client_address or "unknown"
        return f"{self.get_protocol_display()} {who}: {self.get_outcome_display()}"
