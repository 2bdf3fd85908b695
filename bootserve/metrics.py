"""Boot-path counters for Prometheus: decisions by outcome and protocol, DHCP host-file syncs.

The decision counter is incremented by whoever answers the machine: the
``/boot/ipxe`` view and its fast path (``ipxe``), ``/api/v1/next``
(``next``, read-only), the HTTP GRUB of an ARM64 UEFI HTTP Boot (``grub_http``)
in the web process; the TFTP daemon counts its own PXELINUX and GRUB config
decisions and Raspberry Pi boot requests (``pxelinux``, ``grub``, ``pi``) in
its registry (``bootserve.tftp_metrics``, same metric name).
One labelled increment per answer: the hot path stays a dictionary look-up.

The outcome is the decision's kind (``wait``, ``install``, ``local``,
``agent``, ``ignore``): what the machine was told, not the step performed.
"""

from __future__ import annotations

from prometheus_client import Counter

from .engine import Kind
from .tftp_metrics import DECISIONS_HELP, DECISIONS_LABELS, DECISIONS_NAME

# The protocols this process answers (the TFTP daemon counts pxelinux, grub, pi).
WEB_PROTOCOLS = ("ipxe", "next", "grub_http")

BOOT_DECISIONS = Counter(DECISIONS_NAME, DECISIONS_HELP, DECISIONS_LABELS)

DHCP_SYNCS = Counter(
    "pureboot_dhcp_host_syncs",
    "dnsmasq host-directory syncs: one node's entry after a transition (node), or every "
    "node's (rebuild).",
    ["scope"],
)
DHCP_FILES_WRITTEN = Counter(
    "pureboot_dhcp_host_files_written",
    "dnsmasq host files replaced because their content changed.",
)

# Every series exists from the start, at zero (rate() sees the first answer).
for _protocol in WEB_PROTOCOLS:
    for _kind in Kind:
        BOOT_DECISIONS.labels(_protocol, _kind.value)
for _scope in ("node", "rebuild"):
    DHCP_SYNCS.labels(_scope)


def count_decision(protocol: str, outcome: str) -> None:
    """Count one answered boot decision."""
    BOOT_DECISIONS.labels(protocol, outcome).inc()
