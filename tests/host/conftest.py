# SPDX-License-Identifier: Apache-2.0
"""Host tests run real roles on this machine against sandboxes.

Two guards keep that honest:
- ``other_roles_off(role)``: site.yml applies every role, so a test of one role turns every
  other role's control toggles off (from the catalogue, so a new role is covered by default).
  It also opts in to applying to this machine (``hvguard_apply_to_controller``): site.yml
  refuses the controller otherwise, and these tests apply to sandboxes on purpose.
- ``host_config_untouched``: a session-wide fixture that fails the run if any host test
  changed the system configuration a role would manage (a sandbox leak is a real change on
  whoever runs the tests, CI included).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = yaml.safe_load((ROOT / "controls" / "catalogue.yml").read_text())

# Every path one of the roles writes on a real hypervisor.
GUARDED = [
    "/etc/pki",
    "/etc/libvirt/libvirtd.conf",
    "/etc/libvirt/qemu.conf",
    "/etc/libvirt/virtproxyd.conf",
    "/etc/libvirt/virtqemud.conf",
    "/etc/libvirt/hooks",
    "/etc/default/grub.d",
    "/etc/tmpfiles.d",
    "/etc/lvm/lvmlocal.conf",
    "/etc/nftables.conf",
    "/etc/nftables.d",
    "/etc/hvguard",
    "/etc/systemd/system",
    "/usr/local/sbin",
    "/usr/local/lib/hvguard",
    "/etc/apt/apt.conf.d",
    "/etc/needrestart",
    "/etc/default/libvirt-guests",
    "/var/lib/hvguard",
]


def other_roles_off(role: str) -> dict[str, bool]:
    """Toggle variables of every control that does not belong to ``role``, all False, plus
    the opt-in that lets site.yml apply to this machine (the sandboxes are the target)."""
    off = {c["variable"]: False for c in CATALOGUE["controls"] if c["role"] != role}
    return {**off, "hvguard_apply_to_controller": True}


def given_facts(**libvirt: Any) -> dict[str, Any]:
    """hvguard facts of a Debian 12 hypervisor with libvirt and QEMU, no domain, no systemd
    (for role runs against a sandbox: passed as the extra var ``hvguard``); ``libvirt``
    overrides the libvirt keys (e.g. ``running=True``)."""
    return {
        "os": {"family": "Debian", "distribution": "Debian", "version": "12",
               "pkg_mgr": "apt", "init": "other"},
        "kernel": {"release": "6.1.0", "cmdline": "ro", "params": {}},
        "boot": {"loader": "grub", "grub_dropin_dir": None, "update_cmd": None},
        "libvirt": {"present": True, "running": False, "daemon_mode": "monolithic",
                    "version": "9.0.0", "domains": [], "pools": [], "units": {}, **libvirt},
        "qemu": {"present": True, "version": "7.2.0", "binaries": []},
    }  # fmt: skip


def config_fingerprint(paths: list[str] = GUARDED) -> dict[str, str]:
    """Path -> digest of content, mode and owner, for every file under the guarded paths."""
    found: dict[str, str] = {}
    for top in map(Path, paths):
        candidates = [top] if not top.is_dir() else sorted(top.rglob("*"))
        if top.is_dir():
            found[str(top)] = "dir"
        for path in candidates:
            if path.is_symlink():
                found[str(path)] = "->" + str(path.readlink())
            elif path.is_file():
                st = path.stat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path)] = f"{digest}:{st.st_mode:o}:{st.st_uid}:{st.st_gid}"
            elif path.is_dir():
                found[str(path)] = "dir"
    return found


def counted_localhost_audit(work: Path, *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Audit this machine (playbooks/audit.yml, local connection) with the round-trip counter
    on and ``args`` added; assert it changed nothing and passed; return the report's host
    entry and the counter's summary for localhost."""
    root = Path(__file__).resolve().parents[2]
    work.mkdir()
    inventory = work / "hosts.ini"
    inventory.write_text(
        "[hypervisors]\n"
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CALLBACKS_ENABLED": "hvguard_report,hvguard_rtt",
        "HVGUARD_REPORT_DIR": str(work / "reports"),
        "HVGUARD_RTT_FILE": str(work / "rtt.json"),
    }
    argv = [str(root / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory)]
    before = config_fingerprint()
    proc = subprocess.run(
        [*argv, "playbooks/audit.yml", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert config_fingerprint() == before, "the check-mode audit changed this machine"
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    report_file = work / "reports" / "hvguard-report.json"
    assert report_file.exists(), "the audit wrote no report"
    report = json.loads(report_file.read_text())["hosts"]["localhost"]
    return report, json.loads((work / "rtt.json").read_text())["hosts"]["localhost"]


@pytest.fixture(scope="session", autouse=True)
def host_config_untouched() -> Iterator[None]:
    before = config_fingerprint()
    yield
    after = config_fingerprint()
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"host tests changed this machine's configuration: {changed}"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[object]:
    """The mirror tests' network-namespace lab (tests/host/mirror_netns.py), torn down
    even when the test fails."""
    from mirror_netns import Lab

    netns_lab = Lab(tmp_path)
    try:
        yield netns_lab.up()
    finally:
        netns_lab.down()
