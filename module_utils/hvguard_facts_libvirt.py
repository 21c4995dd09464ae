# SPDX-License-Identifier: Apache-2.0
"""hvguard_facts, virtualisation area: libvirt daemons, units, domains, pools, QEMU
processes, bridges and LVM."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Any

from ansible.module_utils.hvguard_facts_base import UNIT_DIRS, FactsBase

LIBVIRT_DAEMONS = (
    "libvirtd",
    "virtqemud",
    "virtproxyd",
    "virtlogd",
    "virtlockd",
    "virtnetworkd",
    "virtstoraged",
    "virtnodedevd",
    "virtsecretd",
    "virtnwfilterd",
    "virtinterfaced",
)
LIBVIRT_UNITS = (
    "libvirtd.service",
    "libvirtd.socket",
    "libvirtd-ro.socket",
    "libvirtd-admin.socket",
    "libvirtd-tls.socket",
    "libvirtd-tcp.socket",
    "virtproxyd.service",
    "virtproxyd.socket",
    "virtproxyd-ro.socket",
    "virtproxyd-admin.socket",
    "virtproxyd-tls.socket",
    "virtproxyd-tcp.socket",
    "virtqemud.service",
    "virtqemud.socket",
    "virtqemud-ro.socket",
    "virtqemud-admin.socket",
    "virtlogd.service",
    "virtlogd.socket",
    "virtlockd.service",
    "virtlockd.socket",
)
# Which <source> attribute names an interface's source, by interface type.
_IFACE_SOURCE = {
    "network": ("network",),
    "bridge": ("bridge",),
    "direct": ("dev",),
    "hostdev": (),
    "user": (),
    "ethernet": (),
    "vhostuser": ("path",),
}
_ANY_SOURCE = ("bridge", "network", "dev")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.:+@-]+\Z")
_SEPARATOR = "---hvguard-section---"
PROBE_RETRIES = 2  # extra `virsh uri` tries while a socket-activated libvirtd starts
# Executables that run a VM: what a reboot would kill besides libvirt's own domains.
_QEMU_NAMES = re.compile(r"^(qemu-system-|qemu-kvm)")


class LibvirtFacts(FactsBase):
    """Collectors that ask libvirt (read-only batches of virsh), systemd and /proc."""

    # -- libvirt -------------------------------------------------------------------------
    def libvirt_facts(self, init: str) -> dict[str, Any]:
        daemons = [name for name in LIBVIRT_DAEMONS if self.find_binary(name)]
        running_daemons = self.running_processes(set(LIBVIRT_DAEMONS))
        units = self.unit_facts(init)
        has_libvirtd = "libvirtd" in daemons
        has_virtqemud = "virtqemud" in daemons
        present = has_libvirtd or has_virtqemud
        facts: dict[str, Any] = {
            "present": present,
            "version": None,
            "daemon_mode": daemon_mode(has_libvirtd, has_virtqemud, init, units, running_daemons),
            "layouts_available": (["monolithic"] if has_libvirtd else [])
            + (["modular"] if has_virtqemud else []),
            "daemons": daemons,
            "daemons_running": sorted(running_daemons),
            "running": False,
            "uri": self.uri,
            "conf_dir": "/etc/libvirt",
            "units": units,
            "pools": [],
            "domains": [],
            "error": None,
        }
        if not present:
            return facts
        facts["version"] = self.libvirt_version(daemons)
        if (
            init == "systemd"
            and not running_daemons
            and not any(state["active"] for state in units.values())
        ):
            # Connecting would socket-activate a stopped daemon: gathering must not start it.
            facts["error"] = "no libvirt daemon or socket unit is active"
            return facts
        self.libvirt_runtime(facts)
        return facts

    def running_processes(self, names: set[str]) -> set[str]:
        found = set()
        for pid in self.listdir("/proc"):
            if pid.isdigit():
                comm = (self.read(f"/proc/{pid}/comm") or "").strip()
                if comm in names:
                    found.add(comm)
        return found

    def unit_facts(self, init: str) -> dict[str, dict[str, bool | None]]:
        found = [
            unit
            for unit in LIBVIRT_UNITS
            if any(self.exists(f"{unit_dir}/{unit}") for unit_dir in UNIT_DIRS)
        ]
        units: dict[str, dict[str, bool | None]] = {
            unit: {"enabled": None, "active": None} for unit in found
        }
        if init != "systemd" or not found:
            return units
        # One systemctl call for all units; blocks come back in argument order.
        result = self.run(
            "systemctl", "show", "--property=Id,LoadState,UnitFileState,ActiveState", *found
        )
        if result.rc != 0:
            self.warnings.append(f"systemctl show failed: {result.err.strip()}")
            return units
        for block in parse_systemctl_show(result.out):
            unit = block.get("Id")
            if unit in units and block.get("LoadState") != "not-found":
                units[unit] = {
                    "enabled": block.get("UnitFileState") in ("enabled", "enabled-runtime"),
                    "active": block.get("ActiveState") in ("active", "reloading"),
                }
        return units

    def libvirt_version(self, daemons: list[str]) -> str | None:
        for name in [d for d in ("libvirtd", "virtqemud") if d in daemons] + ["virsh"]:
            result = self.run(name, "--version")
            found = re.search(r"(\d+\.\d+\.\d+)", result.out) if result.rc == 0 else None
            if found:
                return found.group(1)
        return None

    def virsh_batch(self, commands: list[str]) -> list[str] | None:
        """Run virsh commands in one process; one output string per command."""
        script = f"; echo {_SEPARATOR}; ".join(commands)
        result = self.run("virsh", "-q", "-c", self.uri, script)
        if result.rc != 0 and _SEPARATOR not in result.out:
            return None
        # With -q virsh's echo prints no newline: split on the marker, not on lines.
        sections = result.out.split(_SEPARATOR)
        return sections if len(sections) == len(commands) else None

    def libvirt_runtime(self, facts: dict[str, Any]) -> None:
        queries = [
            "list --all --name",
            "list --name --state-running",
            "list --name --state-paused",
            "list --name --state-shutoff",
            "list --all --name --persistent",
            "pool-list --all --name",
            "pool-list --name",
        ]
        # A socket-activated libvirtd that exited idle (Debian: --timeout 120) starts on this
        # first call; on a slow host that takes longer than one timeout. Ask again before
        # calling libvirt unreachable: the roles fail closed on that answer.
        probe = self.run("virsh", "-q", "-c", self.uri, "uri")
        for _retry in range(PROBE_RETRIES):
            if probe.rc == 0:
                break
            probe = self.run("virsh", "-q", "-c", self.uri, "uri")
        if probe.rc != 0:
            facts["error"] = (probe.err or probe.out).strip() or f"virsh exited {probe.rc}"
            return
        sections = self.virsh_batch(queries)
        if sections is None:
            facts["error"] = "virsh batch query failed"
            return
        facts["running"] = True
        names = [names_of(section) for section in sections]
        all_domains, running, paused, shutoff, persistent, pools, active_pools = names
        xml = self.dump_xml(
            [("dumpxml", name) for name in all_domains if self.with_domains]
            + [("pool-dumpxml", name) for name in pools]
        )
        domain_xml = xml[: len(all_domains)] if self.with_domains else [None] * len(all_domains)
        pool_xml = xml[len(all_domains) :] if self.with_domains else xml
        thin_vgs = self.thin_vgs() if pools else set()
        facts["pools"] = [
            pool_facts(name, text, name in active_pools, thin_vgs)
            for name, text in zip(pools, pool_xml, strict=True)
        ]
        facts["domains"] = [
            self.domain_facts(name, text, running, paused, shutoff, persistent)
            for name, text in zip(all_domains, domain_xml, strict=True)
        ]

    def dump_xml(self, items: list[tuple[str, str]]) -> list[str | None]:
        """XML of each (verb, name): one batch, or one virsh per item if the batch fails."""
        if not items:
            return []
        sections = self.virsh_batch([f"{verb} {quote(name)}" for verb, name in items])
        if sections is not None:
            return [section.strip() or None for section in sections]
        self.warnings.append("virsh batch dump failed; dumping one object at a time")
        result: list[str | None] = []
        for verb, name in items:
            single = self.run("virsh", "-q", "-c", self.uri, verb, name)
            result.append(single.out.strip() or None if single.rc == 0 else None)
        return result

    def thin_vgs(self) -> set[str]:
        result = self.run("lvs", "--noheadings", "--separator", "|", "-o", "vg_name,lv_attr")
        vgs = set()
        for line in result.out.splitlines() if result.rc == 0 else []:
            parts = [part.strip() for part in line.split("|")]
            if len(parts) == 2 and parts[1].startswith("t"):
                vgs.add(parts[0])
        return vgs

    def domain_facts(
        self,
        name: str,
        xml_text: str | None,
        running: list[str],
        paused: list[str],
        shutoff: list[str],
        persistent: list[str],
    ) -> dict[str, Any]:
        if name in running:
            state = "running"
        elif name in paused:
            state = "paused"
        elif name in shutoff:
            state = "shutoff"
        else:
            state = "other"
        facts: dict[str, Any] = {"name": name, "state": state, "persistent": name in persistent}
        facts.update(self.process_facts(name, state))
        if xml_text is not None:
            facts.update(domain_xml_facts(xml_text))
            emulator = facts.get("qemu_binary")
            try:
                mtime = os.stat(self.path(emulator)).st_mtime if emulator else None
            except OSError:
                mtime = None
            facts["qemu_binary_mtime"] = int(mtime) if mtime is not None else None
        return facts

    def process_facts(self, name: str, state: str) -> dict[str, Any]:
        pidfile = f"{self.qemu_run_dir}/{name}.pid"
        pid = self.read_int(pidfile) if state != "shutoff" else None
        if pid is not None and not self.exists(f"/proc/{pid}"):
            pid = None
        started = self.process_start(pid) if pid else None
        deleted = None
        if pid:
            try:
                deleted = os.readlink(self.path(f"/proc/{pid}/exe")).endswith(" (deleted)")
            except OSError:
                deleted = None
        return {"qemu_pid": pid, "qemu_started": started, "qemu_binary_deleted": deleted}

    def process_start(self, pid: int) -> int | None:
        stat = self.read(f"/proc/{pid}/stat") or ""
        btime = re.search(r"^btime (\d+)$", self.read("/proc/stat") or "", re.MULTILINE)
        fields = stat.rsplit(")", 1)[-1].split()
        if not btime or len(fields) < 20:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return int(btime.group(1)) + int(fields[19]) // ticks

    # -- qemu, network, lvm --------------------------------------------------------------
    def qemu_facts(self) -> dict[str, Any]:
        binaries = []
        for directory in ("/usr/bin", "/usr/local/bin", "/usr/libexec"):
            for entry in self.listdir(directory):
                # libexec holds RHEL's qemu-kvm, and on Debian a Xen helper copy: skip that.
                wanted = entry == "qemu-kvm" or (
                    entry.startswith("qemu-system-") and directory != "/usr/libexec"
                )
                if wanted:
                    binaries.append(f"{directory}/{entry}")
        version = None
        preferred = sorted(binaries, key=lambda b: not b.endswith(("x86_64", "qemu-kvm")))
        for binary in preferred[:1]:
            result = self.run(os.path.basename(binary), "--version")
            found = re.search(r"version (\d+\.\d+(?:\.\d+)?)", result.out)
            version = found.group(1) if found else None
        return {
            "present": bool(binaries),
            "version": version,
            "binaries": binaries,
            "processes": self.qemu_processes(),
        }

    def qemu_processes(self) -> list[dict[str, Any]]:
        """Live QEMU emulators by executable, argv[0] or comm (zombies hold nothing)."""
        found = []
        for pid in self.listdir("/proc"):
            if not pid.isdigit():
                continue
            stat = self.read(f"/proc/{pid}/stat") or ""
            fields = stat.rsplit(")", 1)[-1].split()
            if not fields or fields[0] in ("Z", "X"):
                continue
            try:
                exe = os.readlink(self.path(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
            except OSError:
                exe = ""
            argv0 = (self.read(f"/proc/{pid}/cmdline") or "").split("\0", 1)[0]
            comm = (self.read(f"/proc/{pid}/comm") or "").strip()
            names = [os.path.basename(exe), os.path.basename(argv0), comm]
            name = next((n for n in names if _QEMU_NAMES.match(n)), None)
            if name:
                found.append({"pid": int(pid), "name": name, "exe": exe or None})
        return found

    def network_facts(self) -> dict[str, Any]:
        bridges = [
            {"name": name, "ports": self.listdir(f"/sys/class/net/{name}/brif")}
            for name in self.listdir("/sys/class/net")
            if self.exists(f"/sys/class/net/{name}/bridge")
        ]
        ovs_present = self.find_binary("ovs-vsctl") is not None
        ovs_bridges: list[str] = []
        if ovs_present:
            result = self.run("ovs-vsctl", "--timeout=5", "list-br")
            ovs_bridges = names_of(result.out) if result.rc == 0 else []
        return {
            "bridges": bridges,
            "ovs": {"present": ovs_present, "bridges": ovs_bridges},
            "tcp_listen_ports": listening_ports(
                [self.read("/proc/net/tcp") or "", self.read("/proc/net/tcp6") or ""]
            ),
        }

    def lvm_facts(self) -> dict[str, Any]:
        present = self.find_binary("lvm") is not None
        conf = "/etc/lvm/lvm.conf" if self.exists("/etc/lvm/lvm.conf") else None
        return {"present": present, "conf": conf}


def listening_ports(proc_net_tcp: list[str]) -> list[int]:
    """TCP ports in LISTEN state (st 0A) from the text of /proc/net/tcp and /proc/net/tcp6."""
    ports: set[int] = set()
    for text in proc_net_tcp:
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 4 and fields[3] == "0A" and ":" in fields[1]:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def parse_systemctl_show(text: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in text.strip().split("\n\n"):
        block = {}
        for line in chunk.splitlines():
            key, _, value = line.partition("=")
            block[key] = value
        if block:
            blocks.append(block)
    return blocks


def names_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def quote(name: str) -> str:
    """Quote a name for a virsh batch command line."""
    if _SAFE_NAME.match(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def daemon_mode(
    has_libvirtd: bool,
    has_virtqemud: bool,
    init: str,
    units: dict[str, dict[str, bool | None]],
    running: set[str],
) -> str:
    if has_virtqemud:
        if not has_libvirtd:
            return "modular"
        if init == "systemd":
            if any(
                (units.get(unit) or {}).get("enabled")
                for unit in ("virtqemud.socket", "virtqemud.service")
            ):
                return "modular"
        elif "virtqemud" in running and "libvirtd" not in running:
            return "modular"
    if has_libvirtd:
        return "monolithic"
    return "none"


def _attr(element: ET.Element | None, *names: str) -> str | None:
    if element is None:
        return None
    for name in names:
        if element.get(name) is not None:
            return element.get(name)
    return None


def domain_xml_facts(text: str) -> dict[str, Any]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return {
            "uuid": None,
            "memory_backing": {"nosharepages": False},
            "disks": [],
            "interfaces": [],
        }
    disks = []
    for disk in root.findall("./devices/disk"):
        source = disk.find("source")
        pool_volume = None
        if source is not None and source.get("pool"):
            pool_volume = f"{source.get('pool')}/{source.get('volume')}"
        disks.append(
            {
                "target": _attr(disk.find("target"), "dev"),
                "source": _attr(source, "file", "dev", "name", "dir") or pool_volume,
                "type": disk.get("type"),
                "format": _attr(disk.find("driver"), "type"),
                "device": disk.get("device", "disk"),
            }
        )
    interfaces = [
        {
            "type": iface.get("type"),
            "source": _attr(
                iface.find("source"), *_IFACE_SOURCE.get(iface.get("type"), _ANY_SOURCE)
            ),
            # The bridge the tap is on (live XML names it for type=network too).
            "bridge": _attr(iface.find("source"), "bridge"),
            "target_dev": _attr(iface.find("target"), "dev"),
            "mac": _attr(iface.find("mac"), "address"),
            "model": _attr(iface.find("model"), "type"),
        }
        for iface in root.findall("./devices/interface")
    ]
    return {
        "uuid": root.findtext("uuid"),
        "qemu_binary": root.findtext("./devices/emulator"),
        "memory_backing": {"nosharepages": root.find("./memoryBacking/nosharepages") is not None},
        "disks": disks,
        "interfaces": interfaces,
    }


def pool_facts(name: str, text: str | None, active: bool, thin_vgs: set[str]) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "name": name,
        "type": None,
        "active": active,
        "target": None,
        "source_device": None,
        "source_name": None,
        "thin": False,
    }
    if text is None:
        return facts
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return facts
    facts["type"] = root.get("type")
    facts["target"] = root.findtext("./target/path")
    facts["source_device"] = _attr(root.find("./source/device"), "path")
    facts["source_name"] = root.findtext("./source/name")
    if facts["type"] == "logical":
        facts["thin"] = (facts["source_name"] or name) in thin_vgs
    return facts
