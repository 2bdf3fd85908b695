"""The fake's Hyper-V host: switches, drives, VHDX files and VMs in memory, and
what each reviewed script does to them.

Each ``script_<name>`` method does what ``hyperv_scripts/<name>.ps1`` does
with the Hyper-V cmdlets, step by step, and returns what the script prints
(the hashtables it builds, as ``ConvertTo-Json`` writes them). Each cmdlet
step is recorded in ``calls`` and can be made to fail with :meth:`fail`, as
a real host fails when a disk fills up or a switch is missing.
"""

from __future__ import annotations

import fnmatch
import ntpath
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

GIB = 1024**3
MIB = 1024**2
_NEW_VHDX_FILE = 4 * MIB  # a new dynamic or differencing VHDX on disk


class PSError(Exception):
    """A terminating PowerShell error: its category and message, as the
    scripts' ``trap`` reports them (``PUREBOOT|<category>|<message>``)."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category
        self.message = message

    def text(self) -> str:
        if self.message.startswith("PUREBOOT|"):
            return self.message
        return f"PUREBOOT|{self.category}|{self.message}"


@dataclass
class Vhd:
    path: str
    size: int  # virtual size
    file_size: int
    kind: str = "Dynamic"
    parent: str = ""


@dataclass
class Adapter:
    name: str
    switch: str
    mac: str
    legacy: bool = False


@dataclass
class HardDrive:
    controller: str
    number: int
    location: int
    path: str


@dataclass
class VirtualMachine:
    id: str
    name: str
    generation: int
    path: str
    memory: int
    cpus: int = 1
    dynamic_memory: bool = True
    state: str = "Off"
    adapters: list[Adapter] = field(default_factory=list)
    drives: list[HardDrive] = field(default_factory=list)
    boot_order: list[Adapter | HardDrive] = field(default_factory=list)  # generation 2
    startup_order: list[str] = field(default_factory=list)  # generation 1
    secure_boot: str = "On"
    starts: int = 0
    resets: int = 0


class _Params(dict):
    """The script's ``$p``: reading a key the script never reads is a bug in the fake."""

    def __init__(self, text: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.text = text

    def _check(self, key: str) -> None:
        if f"$p.{key}" not in self.text:
            raise AssertionError(f"the fake reads $p.{key}, which the script does not")

    def __getitem__(self, key: str) -> Any:
        self._check(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._check(key)
        return super().get(key, default)


class FakeHyperV:
    """One Hyper-V host's state; every method is called under ``lock``."""

    def __init__(self, name: str = "HYPERV01") -> None:
        self.lock = threading.Lock()
        self.name = name
        self.caption = "Microsoft Windows Server 2022 Datacenter"
        self.version = "10.0.20348"
        self.cpus = 32
        self.memory = 256 * GIB
        self.free_memory = 200 * GIB
        self.cluster = ""
        self.vm_path = "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V"
        self.vhd_path = "C:\\Users\\Public\\Documents\\Hyper-V\\Virtual Hard Disks"
        self.drives: dict[str, list[int]] = {"C:\\": [500 * GIB, 300 * GIB]}  # size, free
        self.switches: dict[str, str] = {}
        self.folders: set[str] = set()
        self.files: dict[str, Vhd] = {}  # by lower-case path: Windows paths ignore case
        self.vms: dict[str, VirtualMachine] = {}
        self.calls: list[str] = []
        self.faults: dict[str, PSError] = {}
        self.text = ""  # the script being run

    # --- set-up helpers for tests -------------------------------------------

    def fail(self, cmdlet: str, message: str, category: str = "NotSpecified") -> None:
        """Make every later ``cmdlet`` step fail with ``message``."""
        self.faults[cmdlet] = PSError(category, message)

    def add_file(self, path: str, size: int, file_size: int | None = None) -> Vhd:
        vhd = Vhd(path, size, file_size if file_size is not None else size // 4)
        self._consume(path, vhd.file_size)
        self.files[path.lower()] = vhd
        self.folders.add(ntpath.dirname(path).lower())
        return vhd

    def add_vm(self, name: str, state: str = "Off", generation: int = 2, **kw: Any) -> str:
        vm = VirtualMachine(str(uuid.uuid4()), name, generation, self.vm_path, 2 * GIB, **kw)
        vm.state = state
        self.vms[vm.id] = vm
        return vm.id

    def file(self, path: str) -> Vhd | None:
        return self.files.get(path.lower())

    # --- cmdlet steps --------------------------------------------------------

    def run(self, script: str, text: str, params: dict[str, Any]) -> Any:
        """What reviewed script ``script`` (its ``text``) does with ``params``."""
        self.text = text
        return getattr(self, f"script_{script}")(_Params(text, params))

    def _cmdlet(self, name: str) -> None:
        # The model mirrors the script: a step the script does not take is a bug here.
        if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", self.text):
            raise AssertionError(f"the fake models {name}, which the script does not call")
        self.calls.append(name)
        if name in self.faults:
            raise self.faults[name]

    def _drive(self, path: str) -> list[int]:
        root = ntpath.splitdrive(path)[0].upper() + "\\"
        if root not in self.drives:
            raise PSError(
                "ObjectNotFound",
                f"Cannot find drive. A drive with the name '{root[0]}' does not exist.",
            )
        return self.drives[root]

    def _consume(self, path: str, size: int) -> None:
        drive = self._drive(path)
        if drive[1] < size:
            raise PSError(
                "NotSpecified",
                f"Failed to create the virtual hard disk. The system failed to create '{path}': "
                "There is not enough space on the disk. (0x80070070).",
            )
        drive[1] -= size

    def _vm(self, vm_id: Any) -> VirtualMachine | None:
        """``Get-VM -Id ... -ErrorAction SilentlyContinue``."""
        self._cmdlet("Get-VM")
        try:
            key = str(uuid.UUID(str(vm_id)))
        except ValueError:
            # A binding error, which -ErrorAction does not silence.
            raise PSError(
                "InvalidArgument",
                f"Cannot bind parameter 'Id'. Cannot convert value \"{vm_id}\" to type "
                '"System.Guid". Error: "Guid should contain 32 digits with 4 dashes '
                '(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."',
            ) from None
        return self.vms.get(key)

    def _found(self, vm_id: Any) -> VirtualMachine:
        vm = self._vm(vm_id)
        if vm is None:
            raise PSError("NotFound", f"PUREBOOT|NotFound|no VM with id {vm_id}")
        return vm

    def _projection(self, vm: VirtualMachine) -> dict[str, Any]:
        """The scripts' ``V`` function."""
        return {
            "id": vm.id,
            "name": vm.name,
            "state": vm.state,
            "cpus": vm.cpus,
            "memory": vm.memory,
            "host": self.name,
            "gen": vm.generation,
            "ha": False,
            "macs": [a.mac for a in vm.adapters],
        }

    def _start(self, vm: VirtualMachine) -> None:
        self._cmdlet("Start-VM")
        if self.free_memory < vm.memory:
            raise PSError(
                "NotSpecified",
                f"'{vm.name}' failed to start. Not enough memory in the system to start the "
                f"virtual machine {vm.name}.",
            )
        self.free_memory -= vm.memory
        vm.state = "Running"
        vm.starts += 1

    def _turn_off(self, vm: VirtualMachine) -> None:
        self._cmdlet("Stop-VM")
        if vm.state == "Running":
            self.free_memory += vm.memory
        vm.state = "Off"

    def _remove_vm(self, vm: VirtualMachine) -> None:
        self._cmdlet("Remove-VM")
        if vm.state == "Running":
            self.free_memory += vm.memory
        del self.vms[vm.id]

    def _remove_item(self, path: str) -> None:
        self._cmdlet("Remove-Item")
        vhd = self.files.pop(path.lower(), None)
        if vhd is None:
            raise PSError("ObjectNotFound", f"Cannot find path '{path}' because it does not exist.")
        self._drive(path)[1] += vhd.file_size

    def _new_vhd(self, path: str, size: int = 0, parent: str = "") -> None:
        self._cmdlet("New-VHD")
        if path.lower() in self.files:
            raise PSError(
                "NotSpecified",
                f"Failed to create the virtual hard disk. The system failed to create '{path}': "
                "The file exists. (0x80070050).",
            )
        if parent:
            size = self.files[parent.lower()].size
        elif size < 3 * MIB:
            raise PSError("InvalidArgument", "The size of the virtual hard disk is too small.")
        self._consume(path, _NEW_VHDX_FILE)
        kind = "Differencing" if parent else "Dynamic"
        self.files[path.lower()] = Vhd(path, size, _NEW_VHDX_FILE, kind, parent)

    def _copy(self, source: str, path: str) -> None:
        self._cmdlet("Copy-Item")
        template = self.files[source.lower()]
        self._consume(path, template.file_size)
        self.files[path.lower()] = Vhd(path, template.size, template.file_size, template.kind)

    def _add_drive(self, vm: VirtualMachine, controller: str, path: str) -> None:
        self._cmdlet("Add-VMHardDiskDrive")
        if path.lower() not in self.files:
            raise PSError("ObjectNotFound", f"The system cannot find the file '{path}'.")
        used = {(d.controller, d.number, d.location) for d in vm.drives}
        if vm.generation == 1:
            used.add(("IDE", 1, 0))  # New-VM puts a DVD drive there
            slots = [("IDE", n, loc) for n in (0, 1) for loc in (0, 1)]
        else:
            slots = [("SCSI", 0, loc) for loc in range(64)]
        free = [s for s in slots if s[0] == controller and s not in used]
        if not free:
            raise PSError(
                "InvalidOperation",
                f"No free location on the {controller} controllers of '{vm.name}'.",
            )
        drive = HardDrive(controller, free[0][1], free[0][2], path)
        vm.drives.append(drive)
        if vm.generation == 2:
            vm.boot_order.append(drive)

    def _add_adapter(self, vm: VirtualMachine, switch: str, mac: str, legacy: bool) -> Adapter:
        self._cmdlet("Add-VMNetworkAdapter")
        if switch not in self.switches:
            raise PSError(
                "InvalidArgument",
                f'Hyper-V was unable to find a virtual switch with name "{switch}".',
            )
        if not re.fullmatch(r"[0-9A-Fa-f]{12}", mac) or int(mac[:2], 16) & 1:
            raise PSError("InvalidArgument", f"Invalid MAC address '{mac}'.")
        if legacy and vm.generation == 2:
            raise PSError(
                "InvalidOperation", "Generation 2 virtual machines do not support legacy adapters."
            )
        name = "Legacy Network Adapter" if legacy else "Network Adapter"
        adapter = Adapter(name, switch, mac.upper(), legacy)
        vm.adapters.append(adapter)
        if vm.generation == 2:
            vm.boot_order.append(adapter)
        return adapter

    # --- the scripts ---------------------------------------------------------

    def script_health(self, p: dict[str, Any]) -> Any:
        self._cmdlet("Get-VMHost")
        return {"host": self.name, "os": self.caption, "version": self.version}

    def script_inventory(self, p: dict[str, Any]) -> Any:
        self._cmdlet("Get-VMHost")
        return {
            "host": {
                "name": self.name,
                "cpus": self.cpus,
                "memory": self.memory,
                "free": self.free_memory // 1024 * 1024,  # FreePhysicalMemory is in KiB
                "cluster": self.cluster,
            },
            "drives": [{"name": r, "size": s, "free": f} for r, (s, f) in self.drives.items()],
            "switches": [{"name": n, "type": t} for n, t in self.switches.items()],
            "vms": [self._projection(vm) for vm in self.vms.values()],
        }

    def script_templates(self, p: dict[str, Any]) -> Any:
        folder = str(p.get("dir") or "")
        self._cmdlet("Get-ChildItem")
        if folder.rstrip("\\").lower() not in self.folders:
            raise PSError(
                "ObjectNotFound", f"Cannot find path '{folder}' because it does not exist."
            )
        found = []
        for vhd in sorted(self.files.values(), key=lambda v: v.path.lower()):
            directory, leaf = ntpath.split(vhd.path)
            if directory.lower() == folder.rstrip("\\").lower() and leaf.lower().endswith(".vhdx"):
                self._cmdlet("Get-VHD")
                found.append({"name": leaf, "size": vhd.size, "file": vhd.file_size})
        return {"templates": found}

    def script_get_vm(self, p: dict[str, Any]) -> Any:
        return self._projection(self._found(p.get("id")))

    def script_power(self, p: dict[str, Any]) -> Any:
        vm = self._found(p.get("id"))
        running = vm.state == "Running"
        action = p.get("action")
        if action == "on":
            if not running:
                self._start(vm)
        elif action == "off":
            if vm.state != "Off":
                self._turn_off(vm)
        elif action == "reboot":
            if running:
                self._cmdlet("Restart-VM")
                vm.resets += 1
            else:
                self._start(vm)
        else:
            raise PSError(
                "InvalidArgument", f"PUREBOOT|InvalidArgument|unknown power action {action}"
            )
        return self._projection(self._found(p.get("id")))

    def script_delete_vm(self, p: dict[str, Any]) -> Any:
        vm = self._found(p.get("id"))
        if vm.state != "Off":
            self._turn_off(vm)
        self._cmdlet("Get-VMHardDiskDrive")
        ours = [
            d.path
            for d in vm.drives
            if fnmatch.fnmatch(ntpath.basename(d.path).lower(), f"{vm.id}-disk*.vhdx")
        ]
        self._remove_vm(vm)
        for path in ours:
            self._remove_item(path)
        return {"id": vm.id, "removed": ours}

    def script_create_vm(self, p: dict[str, Any]) -> Any:
        source = ""
        if p.get("template"):
            source = ntpath.join(p["template_dir"], p["template"])
            self._cmdlet("Test-Path")
            if source.lower() not in self.files:
                raise PSError(
                    "NotFound",
                    f"PUREBOOT|NotFound|no template {p['template']} in {p['template_dir']}",
                )
        vhd_dir = p.get("vhd_path") or self.vhd_path
        vm: VirtualMachine | None = None
        made: list[str] = []
        try:
            vm = self._new_vm(p)
            self._cmdlet("Set-VMProcessor")
            if not 1 <= int(p["cpus"]) <= min(self.cpus, 240):
                raise PSError(
                    "InvalidArgument",
                    f"Failed to modify device 'Processor'. '{vm.name}' cannot have "
                    f"{p['cpus']} virtual processors: the host has {self.cpus}.",
                )
            vm.cpus = int(p["cpus"])
            self._cmdlet("Set-VMMemory")
            vm.dynamic_memory, vm.memory = False, int(p["memory"])
            self._cmdlet("Remove-VMNetworkAdapter")
            vm.boot_order = [d for d in vm.boot_order if not isinstance(d, Adapter)]
            vm.adapters = []
            controller = "IDE" if vm.generation == 1 else "SCSI"
            for index, disk in enumerate(p.get("disks") or []):
                path = ntpath.join(disk.get("dir") or vhd_dir, f"{vm.id}-disk{index}.vhdx")
                if index == 0 and source:
                    if p.get("clone") == "copy":
                        self._copy(source, path)
                    else:
                        self._new_vhd(path, parent=source)
                else:
                    self._new_vhd(path, size=int(disk.get("size") or 0))
                made.append(path)
                self._add_drive(vm, controller, path)
            first: Adapter | None = None
            for nic in p.get("nics") or []:
                legacy = p["gen"] == 1 and first is None
                adapter = self._add_adapter(vm, nic["switch"], nic["mac"], legacy)
                first = first or adapter
            if vm.generation == 2:
                self._set_firmware(vm, str(p.get("secure_boot")), first)
            else:
                self._cmdlet("Set-VMBios")
                vm.startup_order = ["LegacyNetworkAdapter", "IDE", "CD", "Floppy"]
        except PSError as error:
            try:
                if vm is not None:
                    self._remove_vm(vm)
                for path in made:
                    self._remove_item(path)
            except PSError as cleanup:
                raise PSError(
                    "Leftover",
                    f"PUREBOOT|Leftover|{error.message}; cleaning up failed too "
                    f"({cleanup.message}): VM {vm.id if vm else ''} and disks "
                    f"{', '.join(made)} may be left",
                ) from None
            raise
        self._cmdlet("Get-VM")
        return self._projection(vm)

    def _new_vm(self, p: dict[str, Any]) -> VirtualMachine:
        self._cmdlet("New-VM")
        if p.get("gen") not in (1, 2):
            raise PSError("InvalidArgument", "The generation of a virtual machine must be 1 or 2.")
        memory = int(p.get("memory") or 0)
        if memory % (2 * MIB) or memory < 32 * MIB:
            raise PSError(
                "InvalidArgument",
                f"Failed to modify device 'Memory'. Invalid startup memory amount assigned for "
                f"'{p.get('name')}'. The amount of memory must be a multiple of 2 MB, "
                "32 MB or more.",
            )
        vm = VirtualMachine(
            str(uuid.uuid4()), str(p["name"]), p["gen"], p.get("vm_path") or self.vm_path, memory
        )
        # New-VM always adds one unconnected adapter, and a DVD drive to generation 1.
        default = Adapter("Network Adapter", "", "000000000000")
        vm.adapters.append(default)
        if vm.generation == 2:
            vm.boot_order.append(default)
        else:
            vm.startup_order = ["CD", "IDE", "LegacyNetworkAdapter", "Floppy"]
        self.vms[vm.id] = vm
        return vm

    def _set_firmware(self, vm: VirtualMachine, secure_boot: str, first: Adapter | None) -> None:
        self._cmdlet("Set-VMFirmware")
        if secure_boot not in ("On", "Off"):
            raise PSError("InvalidArgument", f'Cannot convert value "{secure_boot}" to OnOffState.')
        if first is None:
            raise PSError("InvalidArgument", "Cannot bind argument to parameter 'FirstBootDevice'.")
        vm.secure_boot = secure_boot
        vm.boot_order.remove(first)
        vm.boot_order.insert(0, first)
