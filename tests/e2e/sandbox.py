# SPDX-License-Identifier: Apache-2.0
"""A sandboxed hypervisor for end-to-end audits of the real playbooks on this machine.

The role's facts are injected (a grub-booted Debian 12 hypervisor with KSM running and two
domains, one running) and hvguard_memory's OS paths point into a temporary tree, so the real
playbooks/audit.yml runs through Ansible with a deterministic result whatever this machine
is: HVG-MEM-001, -002 and -003 drift, HVG-MEM-004 is compliant; the other roles' controls are
switched off (their toggles, from the catalogue).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
CATALOGUE = yaml.safe_load((ROOT / "controls" / "catalogue.yml").read_text())
QEMU_CONF = '#user = "libvirt-qemu"\ndump_guest_core = 1\nsecurity_driver = "apparmor"\n'
PLAIN_CMDLINE = "BOOT_IMAGE=/vmlinuz root=/dev/vda ro quiet"
MEMORY = ("HVG-MEM-001", "HVG-MEM-002", "HVG-MEM-003", "HVG-MEM-004")


def facts(cmdline: str = PLAIN_CMDLINE) -> dict[str, Any]:
    return {
        "os": {"family": "Debian", "distribution": "Debian", "version": "12",
               "pkg_mgr": "apt", "init": "other"},
        "kernel": {"release": "6.1.0", "cmdline": cmdline, "params": {}},
        "boot": {"loader": "grub", "grub_dropin_dir": "/etc/default/grub.d",
                 "update_cmd": "update-grub"},
        "memory": {"ksm": {"present": True, "run": 1, "pages_shared": 0},
                   "ksmtuned": {"installed": False}, "swap": []},
        "libvirt": {"present": True, "running": False, "daemon_mode": "monolithic",
                    "version": "9.0.0", "pools": [], "units": {},
                    "domains": [{"name": "tenant-a", "state": "running", "persistent": True},
                                {"name": "tenant-b", "state": "shutoff", "persistent": True}]},
        "qemu": {"present": True, "version": "7.2.0", "binaries": []},
        "network": {"bridges": [], "ovs": {"present": False, "bridges": []}},
        "lvm": {"present": False, "conf": None},
    }  # fmt: skip


def make(root: Path) -> Path:
    (root / "etc" / "libvirt").mkdir(parents=True)
    (root / "etc" / "libvirt" / "qemu.conf").write_text(QEMU_CONF)
    (root / "etc" / "grub.d").mkdir()
    (root / "etc" / "tmpfiles.d").mkdir()
    (root / "sys").mkdir()
    (root / "sys" / "ksm_run").write_text("1\n")
    inventory = root / "inventory"
    inventory.mkdir()
    hosts = {"all": {"children": {"hypervisors": {"hosts": {"localhost": {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
    }}}}}}  # fmt: skip
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    extra = {
        "hvguard": facts(),
        "__hvguard_memory_boot_dropin": str(root / "etc/grub.d/90-hvguard-memory.cfg"),
        "__hvguard_memory_boot_update_cmd": ["touch", str(root / "bootloader-updated")],
        "__hvguard_memory_tmpfiles_dir": str(root / "etc/tmpfiles.d"),
        "__hvguard_memory_qemu_conf": str(root / "etc/libvirt/qemu.conf"),
        "__hvguard_memory_ksm_run": str(root / "sys/ksm_run"),
        "__hvguard_common_virsh": "false",
        **{c["variable"]: False for c in CATALOGUE["controls"] if c["role"] != "hvguard_memory"},
    }
    (root / "extra.json").write_text(json.dumps(extra))
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Everything the roles could write in the sandbox (reports and inputs aside)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "etc").rglob("*")) + sorted((root / "sys").rglob("*"))
        if p.is_file()
    }


def env(root: Path, reports: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "HVGUARD_"))}
    return base | {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "HVGUARD_REPORT_DIR": str(reports),
        "ANSIBLE_LOCAL_TEMP": str(root / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PLAYBOOK": str(BIN / "ansible-playbook"),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }


def run(
    root: Path, *args: str, reports: Path | None = None, wrapper: bool = True
) -> subprocess.CompletedProcess:
    """The audit of the sandbox: through tools/hvguard_audit.py, or ansible-playbook."""
    reports = reports or root / "reports"
    common = ["-i", str(root / "inventory" / "hosts.yml"), "-e", f"@{root / 'extra.json'}"]
    if wrapper:
        cmd = [str(BIN / "python"), str(ROOT / "tools" / "hvguard_audit.py"), *common, *args]
    else:
        cmd = [str(BIN / "ansible-playbook"), str(ROOT / "playbooks/audit.yml"), *common, *args]
    return subprocess.run(
        cmd, cwd=ROOT, env=env(root, reports), capture_output=True, text=True, timeout=600
    )
