"""Write the dnsmasq configuration for one boot network."""

from __future__ import annotations

import argparse
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bootserve import dhcp
from pureboot.files import atomic_write

FULL_ONLY = ("dhcp_range", "netmask", "router", "dns", "lease_time", "script")
OPTION_NAMES = {
    "dhcp_range": "--range",
    "netmask": "--netmask",
    "router": "--router",
    "dns": "--dns",
    "lease_time": "--lease-time",
    "proxy_subnet": "--proxy-subnet",
    "script": "--script",
}


class Command(BaseCommand):
    help = (
        "Write a dnsmasq configuration for one boot network: full DHCP (--range, --router, "
        "--dns) or proxy DHCP beside an existing server (--proxy-subnet); first stage by "
        "client type; only machines that need the network are answered (Rule E). Defaults "
        "come from the PUREBOOT_DHCP_* settings. The result is checked with dnsmasq --test."
    )

    def add_arguments(self, parser):
        parser.add_argument("--interface", help="the boot network's interface, e.g. br0")
        parser.add_argument("--mode", choices=dhcp.MODES)
        parser.add_argument(
            "--bios-loader",
            choices=tuple(dhcp.BIOS_LOADERS),
            help="BIOS first stage: ipxe (undionly.kpxe, default) or pxelinux (lpxelinux.0)",
        )
        parser.add_argument("--range", dest="dhcp_range", metavar="START,END")
        parser.add_argument("--netmask")
        parser.add_argument("--router", metavar="IP")
        parser.add_argument("--dns", metavar="IP[,IP...]")
        parser.add_argument("--lease-time", metavar="TIME", help="e.g. 1h, 30m, infinite")
        parser.add_argument(
            "--proxy-subnet",
            metavar="NETWORK/PREFIX",
            help="proxy mode: the subnet the existing DHCP server leases, e.g. 10.0.0.0/24",
        )
        parser.add_argument(
            "--tftp-server", metavar="IP", help="the PureBoot TFTP daemon (next-server)"
        )
        parser.add_argument(
            "--http-base", metavar="URL", help="the controller as machines reach it"
        )
        parser.add_argument(
            "--hostsdir", help="dnsmasq's dhcp-hostsdir (default: PUREBOOT_DHCP_HOSTSDIR)"
        )
        parser.add_argument(
            "--discovery",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="answer unknown machines that network-boot (default: PUREBOOT_DISCOVERY)",
        )
        parser.add_argument(
            "--ipv6-ra", action="store_true", default=None, help="send IPv6 router adverts"
        )
        parser.add_argument("--log-dhcp", action="store_true", help="log every DHCP exchange")
        parser.add_argument(
            "--leasefile",
            help="dnsmasq's lease file, read by /boot/http (default: PUREBOOT_DHCP_LEASEFILE)",
        )
        parser.add_argument(
            "--script",
            metavar="PATH",
            help="full mode: the executable dnsmasq runs on each lease event (dhcp-script), "
            "e.g. a wrapper of `manage.py record_dhcp_event` (default: PUREBOOT_DHCP_SCRIPT)",
        )
        parser.add_argument("--output", "-o", help="write here instead of standard output")
        parser.add_argument(
            "--no-check",
            action="store_true",
            help="skip dnsmasq --test (for a configuration made for another host)",
        )

    def handle(self, *args, **options):
        net = self._network(options)
        hostsdir = options["hostsdir"] or dhcp.configured_hostsdir()
        if not hostsdir:
            raise CommandError("--hostsdir is required (PUREBOOT_DHCP_HOSTSDIR is not set)")
        try:
            text = dhcp.render_config(net, hostsdir)
            if not options["no_check"]:
                dhcp.check_config(text)
        except (dhcp.DhcpConfigError, dhcp.DnsmasqMissing) as exc:
            raise CommandError(str(exc)) from None
        self._check_mode(net, Path(hostsdir))
        self._check_leasefile(net)
        if options["output"]:
            _write(Path(options["output"]), text)
            self.stderr.write(f"wrote {options['output']}")
        else:
            self.stdout.write(text, ending="")

    def _network(self, options) -> dhcp.BootNetwork:
        given = {k for k, v in options.items() if v is not None}
        mode = options["mode"] or dhcp.configured_mode()
        wrong = FULL_ONLY if mode == "proxy" else ("proxy_subnet",)
        misplaced = [OPTION_NAMES[name] for name in wrong if name in given]
        if misplaced:
            raise CommandError(f"{', '.join(misplaced)}: not used in {mode} mode")
        overrides = {"mode": mode}
        if options["dhcp_range"] is not None:
            parts = [p.strip() for p in options["dhcp_range"].split(",")]
            if len(parts) != 2 or not all(parts):
                raise CommandError(
                    f"--range {options['dhcp_range']!r}: use START,END, "
                    "e.g. 10.99.0.100,10.99.0.200"
                )
            overrides["range_start"], overrides["range_end"] = parts
        if options["dns"] is not None:
            overrides["dns"] = dhcp.split_list(options["dns"])
        for name in (
            "interface",
            "netmask",
            "router",
            "lease_time",
            "proxy_subnet",
            "tftp_server",
            "http_base",
            "discovery",
            "ipv6_ra",
            "leasefile",
            "bios_loader",
            "script",
        ):
            if options[name] is not None:
                overrides[name] = options[name]
        overrides["log_dhcp"] = bool(options["log_dhcp"])
        return dhcp.BootNetwork.from_settings(**overrides)

    def _check_mode(self, net: dhcp.BootNetwork, hostsdir: Path) -> None:
        """The entries PureBoot writes follow PUREBOOT_DHCP_MODE; they must match this config."""
        configured = dhcp.configured_hostsdir()
        if configured is None:
            self.stderr.write(
                f"note: PUREBOOT_DHCP_HOSTSDIR is not set, so nothing keeps {hostsdir} in step "
                f"with the lifecycle: set it to {hostsdir}, then run `manage.py dhcp_sync`"
            )
            return
        if hostsdir.resolve() != configured.resolve():
            self.stderr.write(
                f"note: PureBoot keeps {configured} (PUREBOOT_DHCP_HOSTSDIR) in step with the "
                f"lifecycle, not {hostsdir}; `manage.py dhcp_sync --hostsdir {hostsdir}` fills it"
            )
            return
        setting = dhcp.configured_mode()
        if net.mode != setting:
            raise CommandError(
                f"PUREBOOT_DHCP_MODE is {setting}, so the host entries in {hostsdir} are "
                f"written for {setting} mode; set PUREBOOT_DHCP_MODE={net.mode} (then run "
                "dhcp_sync) or use --mode " + setting
            )

    def _check_leasefile(self, net: dhcp.BootNetwork) -> None:
        """/boot/http recognises UEFI HTTP Boot clients by the lease file it is configured with."""
        setting = settings.PUREBOOT_DHCP_LEASEFILE
        if net.mode == "full" and net.leasefile != setting:
            written = net.leasefile or "dnsmasq's default lease file"
            self.stderr.write(
                "note: UEFI HTTP Boot clients are recognised by their lease in "
                f"PUREBOOT_DHCP_LEASEFILE ({setting or 'not set'}), not in {written}: "
                "set it to the same path"
            )


def _write(path: Path, text: str) -> None:
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc}") from None
