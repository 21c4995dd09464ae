#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: gather everything the hvguard roles decide on, in one read-only call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hvguard_facts
short_description: Gather hypervisor facts for hvguard (OS, kernel, boot, memory, libvirt, QEMU)
description:
  - Returns C(ansible_facts.hvguard), one dictionary with everything the hvguard roles decide
    on, gathered from C(/proc), C(/sys), C(/etc) and the C(virsh) command line client (no
    libvirt Python binding needed).
  - Never changes anything. Missing commands and files are tolerated; a host without libvirt
    gets C(libvirt.present=false) and empty lists.
  - All libvirt queries go through at most two C(virsh) processes (batch mode), each bounded
    by C(timeout).
  - "Top-level keys: C(os) (family, distribution, version, major_version, codename, pkg_mgr,
    init), C(kernel) (release, cmdline, params), C(boot) (loader, grub_dropin_dir,
    update_cmd), C(memory) (ksm, ksmtuned, swap, thp), C(libvirt) (present, version,
    daemon_mode, layouts_available, daemons, daemons_running, running, uri, conf_dir, units,
    pools, domains), C(qemu) (present, version, binaries), C(network) (bridges, ovs),
    C(lvm) (present, conf)."
  - C(libvirt.daemon_mode) is C(modular) when C(virtqemud) is installed and either its units
    are enabled (systemd), it runs (other init), or C(libvirtd) is not installed;
    C(monolithic) when C(libvirtd) is installed otherwise; C(none) without either.
  - C(libvirt.units) maps each libvirt unit file found to C({enabled, active}); both are
    null when the host does not run systemd.
  - Swap devices are resolved through device-mapper, partitions and loop devices; a device
    that is an encrypting cryptsetup mapping (dm UUID C(CRYPT-PLAIN-), C(CRYPT-LUKS1-),
    C(CRYPT-LUKS2-), ...; not C(VERITY), C(INTEGRITY) or C(SUBDEV)), or whose every lower
    device is encrypted, is C(encrypted=true, backing=dm-crypt); C(zram) devices are
    C(type=zram, backing=zram); anything else, or anything that cannot be resolved, is plain.
  - C(qemu.processes) lists every running QEMU system emulator (C(pid), C(name), C(exe)),
    whether libvirt started it or not (what a host reboot would kill).
  - Domains carry C(name), C(uuid), C(state) (C(running), C(paused), C(shutoff) or
    C(other)), C(persistent), C(qemu_pid), C(qemu_binary), C(qemu_binary_mtime),
    C(qemu_started) (epoch seconds), C(qemu_binary_deleted) (QEMU was upgraded after the
    domain started), C(memory_backing.nosharepages), C(disks) and C(interfaces).
version_added: "0.1.0"
author: hvguard contributors
options:
  domains:
    description:
      - Include per-domain details from the domain XML (disks, interfaces, memory backing).
        With C(false) domains are still listed with name, state and persistence.
    type: bool
    default: true
  timeout:
    description: Seconds each external command (virsh, qemu, systemctl, lvs) may take.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
notes:
  - Reading libvirt state needs root (C(qemu:///system)). Without access,
    C(libvirt.running) is false and C(libvirt.error) says why.
  - On systemd hosts C(virsh) is only called when a libvirt daemon runs or one of its units
    is active, so gathering never socket-activates a stopped daemon. An active socket unit
    does start the daemon on connect, as any libvirt client would.
"""

EXAMPLES = r"""
- name: Gather hvguard facts
  hvguard_facts:

- name: Only host-level facts, quickly
  hvguard_facts:
    domains: false
    timeout: 5

- name: Show the libvirt layout
  ansible.builtin.debug:
    msg: "{{ hvguard.libvirt.daemon_mode }} {{ hvguard.libvirt.version }}"
"""

RETURN = r"""
ansible_facts:
  description: The facts, under the single key C(hvguard).
  returned: always
  type: complex
  contains:
    hvguard:
      description: See the module description for the keys.
      type: dict
      returned: always
      sample:
        os: {family: Debian, distribution: Debian, version: "12", major_version: "12",
             codename: bookworm, pkg_mgr: apt, init: systemd}
        kernel: {release: 6.1.0-13-amd64, cmdline: "BOOT_IMAGE=/vmlinuz ro quiet",
                 params: {BOOT_IMAGE: /vmlinuz, ro: true, quiet: true}}
        boot: {loader: grub, grub_dropin_dir: /etc/default/grub.d, update_cmd: update-grub}
        memory:
          ksm: {present: true, run: 0, pages_shared: 0, merge_across_nodes: 1}
          ksmtuned: {installed: false}
          swap: [{device: /dev/dm-1, name: /dev/mapper/swap, type: partition,
                  size_kb: 999420, encrypted: true, backing: dm-crypt}]
          thp: {enabled: madvise, defrag: madvise}
        libvirt:
          present: true
          version: 9.0.0
          daemon_mode: monolithic
          layouts_available: [monolithic]
          daemons: [libvirtd, virtlogd, virtlockd]
          daemons_running: [libvirtd, virtlogd]
          running: true
          uri: qemu:///system
          conf_dir: /etc/libvirt
          units: {libvirtd.service: {enabled: true, active: true},
                  libvirtd-tls.socket: {enabled: false, active: false}}
          pools: [{name: default, type: dir, active: true, target: /var/lib/libvirt/images,
                   source_device: null, source_name: null, thin: false}]
          domains: [{name: vm1, uuid: 8f1a..., state: running, persistent: true,
                     qemu_pid: 4242, memory_backing: {nosharepages: true},
                     disks: [{target: vda, source: /var/lib/libvirt/images/vm1.qcow2,
                              type: file, format: qcow2, device: disk}],
                     interfaces: [{type: bridge, source: br0, target_dev: vnet0,
                                   mac: "52:54:00:12:34:56", model: virtio}]}]
        qemu: {present: true, version: 7.2.22, binaries: [/usr/bin/qemu-system-x86_64],
               processes: [{pid: 4242, name: qemu-system-x86_64,
                            exe: /usr/bin/qemu-system-x86_64}]}
        network: {bridges: [{name: br0, ports: [eth0, vnet0]}],
                  ovs: {present: false, bridges: []}}
        lvm: {present: true, conf: /etc/lvm/lvm.conf}
"""

import os
import re
import shlex
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import AnsibleModule

URI = "qemu:///system"
SBIN_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/libexec")
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
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
FAMILIES = {
    "debian": "Debian",
    "ubuntu": "Debian",
    "rhel": "RedHat",
    "centos": "RedHat",
    "fedora": "RedHat",
    "rocky": "RedHat",
    "almalinux": "RedHat",
    "ol": "RedHat",
    "sles": "Suse",
    "suse": "Suse",
    "opensuse": "Suse",
    "opensuse-leap": "Suse",
    "opensuse-tumbleweed": "Suse",
    "arch": "Archlinux",
}
DISTRIBUTIONS = {
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "rhel": "RedHat",
    "centos": "CentOS",
    "fedora": "Fedora",
    "rocky": "Rocky",
    "almalinux": "AlmaLinux",
    "ol": "OracleLinux",
    "sles": "SLES",
    "opensuse-leap": "openSUSE Leap",
    "opensuse-tumbleweed": "openSUSE Tumbleweed",
    "arch": "Archlinux",
}
PKG_MGRS = (("apt-get", "apt"), ("dnf", "dnf"), ("yum", "yum"), ("zypper", "zypper"))
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
# dm UUIDs cryptsetup gives its mappings: CRYPT-<type>-... Only these types encrypt;
# VERITY (hash tree), INTEGRITY (checksums) and SUBDEV (the integrity layer under LUKS2)
# do not, so swap on them is plain.
_ENCRYPTING_DM_UUID = re.compile(r"^CRYPT-(PLAIN|LUKS1|LUKS2|LOOPAES|TCRYPT|BITLK|FVAULT2)-")
# Executables that run a VM: what a reboot would kill besides libvirt's own domains.
_QEMU_NAMES = re.compile(r"^(qemu-system-|qemu-kvm)")


@dataclass
class CmdResult:
    rc: int
    out: str
    err: str


def run_command(argv: list[str], timeout: int) -> CmdResult:
    """Run argv; a missing binary is rc 127 and a timeout rc 124, never an exception."""
    env = dict(os.environ, LC_ALL="C", LANG="C")
    env.pop("LIBVIRT_DEFAULT_URI", None)
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError as exc:
        return CmdResult(127, "", str(exc))
    except PermissionError as exc:
        return CmdResult(126, "", str(exc))
    except subprocess.TimeoutExpired:
        return CmdResult(124, "", f"{argv[0]}: timed out after {timeout}s")
    return CmdResult(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Gatherer:
    """Reads the host below ``root`` (``/`` in production, a fake tree in tests)."""

    root: str = "/"
    timeout: int = 10
    with_domains: bool = True
    uri: str = URI  # tests point this at libvirt's test:///default driver
    qemu_run_dir: str = "/run/libvirt/qemu"  # where qemu:///system keeps <domain>.pid
    runner: Callable[[list[str], int], CmdResult] = run_command
    warnings: list[str] = field(default_factory=list)

    # -- filesystem helpers --------------------------------------------------------------
    def path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def read(self, path: str) -> str | None:
        try:
            with open(self.path(path), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    def read_int(self, path: str) -> int | None:
        text = self.read(path)
        try:
            return int(text.strip()) if text is not None else None
        except ValueError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(self.path(path))

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

    def find_binary(self, name: str) -> str | None:
        """Host path of an installed binary (searched below root in the usual dirs)."""
        for directory in SBIN_DIRS:
            candidate = f"{directory}/{name}"
            if os.access(self.path(candidate), os.X_OK):
                return candidate
        return None

    def command(self, name: str) -> str | None:
        """What to execute for ``name``: PATH first (tests put fakes there), then sbin."""
        for directory in os.environ.get("PATH", "").split(os.pathsep) + list(SBIN_DIRS):
            candidate = os.path.join(directory or ".", name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        return None

    def run(self, name: str, *args: str) -> CmdResult:
        executable = self.command(name)
        if executable is None:
            return CmdResult(127, "", f"{name}: not installed")
        return self.runner([executable, *args], self.timeout)

    # -- sections ------------------------------------------------------------------------
    def os_facts(self) -> dict[str, Any]:
        release = parse_os_release(self.read("/etc/os-release") or "")
        ids = [release.get("ID", "").lower(), *release.get("ID_LIKE", "").lower().split()]
        family = next((FAMILIES[i] for i in ids if i in FAMILIES), None)
        version = release.get("VERSION_ID") or None
        pkg_mgr = next(
            (mgr for binary, mgr in PKG_MGRS if self.find_binary(binary) is not None), None
        )
        ident = ids[0]
        return {
            "family": family or (ident.capitalize() if ident else None),
            "distribution": DISTRIBUTIONS.get(ident, ident.capitalize() or None),
            "version": version,
            "major_version": version.split(".")[0] if version else None,
            "codename": release.get("VERSION_CODENAME") or None,
            "pkg_mgr": pkg_mgr,
            # sd_booted(): systemd is PID 1 exactly when this directory exists.
            "init": "systemd" if self.exists("/run/systemd/system") else "other",
        }

    def kernel_facts(self) -> dict[str, Any]:
        cmdline = (self.read("/proc/cmdline") or "").strip()
        release = (self.read("/proc/sys/kernel/osrelease") or "").strip() or None
        return {"release": release, "cmdline": cmdline, "params": parse_cmdline(cmdline)}

    def boot_facts(self, family: str | None) -> dict[str, Any]:
        grub = (
            self.exists("/etc/default/grub")
            or self.exists("/boot/grub/grub.cfg")
            or self.exists("/boot/grub2/grub.cfg")
        )
        if grub:
            dropin = (
                "/etc/default/grub.d"
                if family == "Debian" or self.exists("/etc/default/grub.d")
                else None
            )
            if self.find_binary("update-grub"):
                update = "update-grub"
            elif self.find_binary("grub2-mkconfig"):
                update = "grub2-mkconfig -o /boot/grub2/grub.cfg"
            else:
                update = None
            return {"loader": "grub", "grub_dropin_dir": dropin, "update_cmd": update}
        for loader_dir in ("/boot/efi/loader", "/efi/loader", "/boot/loader"):
            if self.exists(f"{loader_dir}/entries") or self.exists(f"{loader_dir}/loader.conf"):
                return {"loader": "systemd-boot", "grub_dropin_dir": None, "update_cmd": None}
        return {"loader": "none", "grub_dropin_dir": None, "update_cmd": None}

    def memory_facts(self) -> dict[str, Any]:
        ksm_dir = "/sys/kernel/mm/ksm"
        thp_dir = "/sys/kernel/mm/transparent_hugepage"
        ksmtuned = self.find_binary("ksmtuned") is not None or any(
            self.exists(f"{unit_dir}/ksmtuned.service") for unit_dir in UNIT_DIRS
        )
        return {
            "ksm": {
                "present": self.exists(ksm_dir),
                "run": self.read_int(f"{ksm_dir}/run"),
                "pages_shared": self.read_int(f"{ksm_dir}/pages_shared"),
                "merge_across_nodes": self.read_int(f"{ksm_dir}/merge_across_nodes"),
            },
            "ksmtuned": {"installed": ksmtuned},
            "swap": self.swap_facts(),
            "thp": {
                "enabled": selected_word(self.read(f"{thp_dir}/enabled")),
                "defrag": selected_word(self.read(f"{thp_dir}/defrag")),
            },
        }

    def swap_facts(self) -> list[dict[str, Any]]:
        result = []
        for line in (self.read("/proc/swaps") or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) < 3:
                continue
            name = unescape_mount(fields[0])
            size = int(fields[2]) if fields[2].isdigit() else None
            result.append(self.swap_entry(name, fields[1], size))
        return result

    def swap_entry(self, name: str, kind: str, size_kb: int | None) -> dict[str, Any]:
        block = self.block_of_file(name) if kind == "file" else self.block_name(name)
        if block and block.startswith("zram"):
            return {
                "device": name,
                "name": name,
                "type": "zram",
                "size_kb": size_kb,
                "encrypted": False,
                "backing": "zram",
            }
        encrypted = bool(block) and self.is_crypt(block, frozenset())
        return {
            "device": f"/dev/{block}" if block and kind != "file" else name,
            "name": name,
            "type": "file" if kind == "file" else "partition",
            "size_kb": size_kb,
            "encrypted": encrypted,
            "backing": "dm-crypt" if encrypted else "plain",
        }

    def block_name(self, device: str) -> str | None:
        """Kernel block name (``dm-1``, ``sda2``, ``zram0``) of a /dev path."""
        target = os.path.realpath(self.path(device))
        dev_root = os.path.realpath(self.path("/dev"))
        if target.startswith(dev_root + os.sep):
            name = os.path.relpath(target, dev_root)
            if "/" not in name:
                return name
        return os.path.basename(device) or None

    def block_of_file(self, path: str) -> str | None:
        """Block device holding a swap file, through /sys/dev/block/MAJ:MIN."""
        try:
            st = os.stat(self.path(path))
        except OSError:
            return None
        link = self.path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
        real = os.path.realpath(link)
        return os.path.basename(real) if os.path.exists(real) else None

    def is_crypt(self, block: str, seen: frozenset[str]) -> bool:
        """True when ``block`` is an encrypting mapping or sits only on encrypted devices.

        Every lower device must be encrypted (an LV spanning a plain and an encrypted PV puts
        pages on the plain one in the clear); a loop device is judged by its backing file.
        Anything that cannot be resolved counts as plain.
        """
        if block in seen:
            return False
        seen = seen | {block}
        uuid = self.read(f"/sys/class/block/{block}/dm/uuid") or ""
        if _ENCRYPTING_DM_UUID.match(uuid):
            return True
        lower = self.listdir(f"/sys/class/block/{block}/slaves")
        parent = self.partition_parent(block)
        if parent:
            lower.append(parent)
        backing = (self.read(f"/sys/class/block/{block}/loop/backing_file") or "").strip()
        if backing:
            backing_block = self.block_of_file(backing)
            lower.append(backing_block or "")
        return bool(lower) and all(name and self.is_crypt(name, seen) for name in lower)

    def partition_parent(self, block: str) -> str | None:
        if not self.exists(f"/sys/class/block/{block}/partition"):
            return None
        real = os.path.realpath(self.path(f"/sys/class/block/{block}"))
        return os.path.basename(os.path.dirname(real))

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
        return {"bridges": bridges, "ovs": {"present": ovs_present, "bridges": ovs_bridges}}

    def lvm_facts(self) -> dict[str, Any]:
        present = self.find_binary("lvm") is not None
        conf = "/etc/lvm/lvm.conf" if self.exists("/etc/lvm/lvm.conf") else None
        return {"present": present, "conf": conf}

    def gather(self) -> dict[str, Any]:
        os_facts = self.os_facts()
        return {
            "os": os_facts,
            "kernel": self.kernel_facts(),
            "boot": self.boot_facts(os_facts["family"]),
            "memory": self.memory_facts(),
            "libvirt": self.libvirt_facts(os_facts["init"]),
            "qemu": self.qemu_facts(),
            "network": self.network_facts(),
            "lvm": self.lvm_facts(),
        }


# -- pure parsers --------------------------------------------------------------------------
def parse_os_release(text: str) -> dict[str, str]:
    result = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            try:
                parts = shlex.split(value)
            except ValueError:
                parts = [value.strip("\"'")]
            result[key.strip()] = parts[0] if parts else ""
    return result


def parse_cmdline(cmdline: str) -> dict[str, str | bool]:
    """Kernel parameters: ``key=value`` -> value, bare ``key`` -> True (last one wins)."""
    try:
        words = shlex.split(cmdline)
    except ValueError:
        words = cmdline.split()
    params: dict[str, str | bool] = {}
    for word in words:
        if word == "--":
            break  # the rest goes to init
        key, sep, value = word.partition("=")
        params[key] = value if sep else True
    return params


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


def selected_word(text: str | None) -> str | None:
    if text is None:
        return None
    found = re.search(r"\[([^\]\s]+)\]", text)
    return found.group(1) if found else text.strip() or None


def unescape_mount(name: str) -> str:
    """/proc/swaps escapes blanks and backslashes as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), name)


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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "domains": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 10},
        },
        supports_check_mode=True,
    )
    if module.params["timeout"] < 1:
        module.fail_json(msg="timeout must be at least 1 second")
    gatherer = Gatherer(timeout=module.params["timeout"], with_domains=module.params["domains"])
    facts = gatherer.gather()
    for warning in gatherer.warnings:
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"hvguard": facts})


if __name__ == "__main__":
    main()
