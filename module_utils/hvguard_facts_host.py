# SPDX-License-Identifier: Apache-2.0
"""hvguard_facts, host area: OS, kernel command line, boot loader, memory and swap."""

from __future__ import annotations

import os
import re
import shlex
from typing import Any

from ansible.module_utils.hvguard_facts_base import UNIT_DIRS, FactsBase

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
# dm UUIDs cryptsetup gives its mappings: CRYPT-<type>-... Only these types encrypt;
# VERITY (hash tree), INTEGRITY (checksums) and SUBDEV (the integrity layer under LUKS2)
# do not, so swap on them is plain.
_ENCRYPTING_DM_UUID = re.compile(r"^CRYPT-(PLAIN|LUKS1|LUKS2|LOOPAES|TCRYPT|BITLK|FVAULT2)-")


class HostFacts(FactsBase):
    """Collectors that read /etc, /proc and /sys only."""

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


def selected_word(text: str | None) -> str | None:
    if text is None:
        return None
    found = re.search(r"\[([^\]\s]+)\]", text)
    return found.group(1) if found else text.strip() or None


def unescape_mount(name: str) -> str:
    """/proc/swaps escapes blanks and backslashes as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), name)
