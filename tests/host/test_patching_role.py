# SPDX-License-Identifier: Apache-2.0
"""hvguard_patching through playbooks/patching.yml on this machine, against a sandbox.

The role's OS paths point into a temporary tree, its facts module at a private APT root
(tests/fixtures/modules/aptrepo.py: a security and a plain repository, one update in each),
a sentinel file 40 days old and a stand-in QEMU (a copy of sleep named qemu-system-*) whose
binary is then replaced by a different one. The real role runs end to end:
audit (every control drifts with evidence, nothing written) -> converge (configuration fixed,
validators run) -> converge again (changed=0) -> "patch" (the security update installed, the
stale process gone, the reboot done) -> audit (every control compliant).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import given_facts, other_roles_off

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from aptrepo import MAIN, SECURITY, AptWorld, have_tools

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
DAY = 86400
SYSTEM_PYTHON = "/usr/bin/python3"  # the apt module needs python3-apt (apt_pkg)


def _has_apt_pkg() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", "import apt_pkg"], check=False).returncode == 0


pytestmark = pytest.mark.skipif(
    not (have_tools() and _has_apt_pkg() and os.geteuid() == 0),
    reason="needs root, dpkg-dev, apt and python3-apt",
)
DEBIAN_GUESTS = "#ON_BOOT=start\n#ON_SHUTDOWN=shutdown\n#SHUTDOWN_TIMEOUT=300\n"


class Sandbox:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.etc = tmp / "etc"
        (self.etc / "apt.conf.d").mkdir(parents=True)
        (self.etc / "needrestart" / "conf.d").mkdir(parents=True)
        self.guests = self.etc / "libvirt-guests"
        self.guests.write_text(DEBIAN_GUESTS)
        self.state = tmp / "state" / "first-seen.json"
        self.sentinel = tmp / "run" / "reboot-required"
        self.sentinel.parent.mkdir()
        self.sentinel.write_text("*** System restart required ***\n")
        old = time.time() - 40 * DAY
        os.utime(self.sentinel, (old, old))
        self.apt = AptWorld(tmp / "apt")
        self.apt.install("hvgtest-sec", "1.0-1")
        self.apt.install("hvgtest-main", "2.0-1")
        self.apt.publish("security", SECURITY, "hvgtest-sec", "1.0-1+deb12u1")
        self.apt.publish("main", MAIN, "hvgtest-main", "2.1-1")
        self.apt.update()
        # Both updates were first seen 40 days ago: only the security one is overdue.
        self.state.parent.mkdir()
        entries = {"hvgtest-sec=1.0-1+deb12u1": old, "hvgtest-main=2.1-1": old}
        self.state.write_text(json.dumps({"version": 1, "first_seen": entries}))
        self.qemu_name = f"qemu-system-hvgrole{os.getpid()}"
        exe = tmp / "bin" / self.qemu_name
        exe.parent.mkdir()
        sleep = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
        shutil.copy2(sleep, exe)
        self.qemu = subprocess.Popen([str(exe), "600"])
        # A QEMU upgrade under the running process: a different binary renamed over it.
        new = exe.with_name(exe.name + ".dpkg-new")
        shutil.copy2(os.path.realpath(shutil.which("true") or "/bin/true"), new)
        os.rename(new, exe)

    def digest(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self.tmp.rglob("*")):
            if path.is_file() and "reports" not in path.parts and path.suffix != ".json":
                digest.update(str(path).encode() + path.read_bytes())
            elif path.is_file() and path == self.state:
                digest.update(path.read_bytes())
        return digest.hexdigest()

    def run(self, check: bool) -> tuple[str, dict[str, Any]]:
        extra = {
            "hvguard": given_facts(),
            "ansible_python_interpreter": SYSTEM_PYTHON,
            "hvguard_patching_state_file": str(self.state),
            "__hvguard_patching_packages": ["dpkg"],  # installed: the task checks, never installs
            "__hvguard_patching_apt_conf_dir": str(self.etc / "apt.conf.d"),
            "__hvguard_patching_needrestart_conf_dir": str(self.etc / "needrestart" / "conf.d"),
            "__hvguard_patching_libvirt_guests_file": str(self.guests),
            "__hvguard_patching_timer_dropin_dir": str(self.etc / "timer.d"),
            "__hvguard_patching_apt_config": str(self.apt.apt_conf),
            "__hvguard_patching_qemu_regex": self.qemu_name,
            "__hvguard_patching_reboot_required_file": str(self.sentinel),
            "__hvguard_patching_boot_dir": str(self.tmp / "boot"),
            "__hvguard_patching_uu_log": str(self.tmp / "uu.log"),
            **other_roles_off("hvguard_patching"),
        }
        varfile = self.tmp / "extra.json"
        varfile.write_text(json.dumps(extra))
        reports = self.tmp / "reports"
        env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
               "HVGUARD_REPORT_DIR": str(reports), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), "playbooks/patching.yml", "-e", f"@{varfile}",
             *(["--check", "--diff"] if check else [])],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        varfile.unlink()
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-5000:]
        return out, json.loads((reports / "hvguard-report.json").read_text())


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path)
    try:
        yield box
    finally:
        box.qemu.kill()
        box.qemu.wait(timeout=30)


def controls(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = report["hosts"]["localhost"]["controls"]
    return {cid: c for cid, c in found.items() if cid.startswith("HVG-PAT")}


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {cid: c["status"] for cid, c in controls(report).items()}


@pytest.mark.control("HVG-PAT-001", "HVG-PAT-002", "HVG-PAT-004", "HVG-PAT-005")
@pytest.mark.control("HVG-PAT-003", effect=True)
def test_audit_converge_idempotence_patch_audit(sandbox: Sandbox) -> None:
    """SLA drift: the security update first seen 40 days ago is drift (the plain one that
    old is not); after patching the audit is compliant."""
    before = sandbox.digest()
    _, report = sandbox.run(check=True)
    assert statuses(report) == dict.fromkeys(
        ["HVG-PAT-001", "HVG-PAT-002", "HVG-PAT-003", "HVG-PAT-004", "HVG-PAT-005"], "drift"
    ), json.dumps(controls(report), indent=1)[:4000]
    assert sandbox.digest() == before, "the audit changed the sandbox"
    text = json.dumps(controls(report)["HVG-PAT-003"])
    assert "hvgtest-sec" in text and "40." in text
    assert "overdue" in text and "hvgtest-main" not in text.split('"pending_security"')[0]
    assert sandbox.qemu_name in json.dumps(controls(report)["HVG-PAT-004"])
    messages = json.dumps(controls(report))
    assert "security updates pending longer than 30 days: hvgtest-sec" in messages
    assert "reboot pending for 40.0 days (over the deadline of 30 days)" in messages

    out, report = sandbox.run(check=False)
    dropin = (sandbox.etc / "apt.conf.d" / "52hvguard-unattended-upgrades").read_text()
    assert '"origin=Debian,codename=${distro_codename}-security,label=Debian-Security";' in dropin
    assert (
        "$nrconf{restart} = 'l';"
        in (sandbox.etc / "needrestart/conf.d/90-hvguard.conf").read_text()
    )
    assert "ON_BOOT=start" in sandbox.guests.read_text()
    assert not (sandbox.etc / "timer.d").exists()
    got = statuses(report)
    assert (got["HVG-PAT-001"], got["HVG-PAT-002"]) == ("remediated", "remediated"), got
    assert (got["HVG-PAT-003"], got["HVG-PAT-004"], got["HVG-PAT-005"]) == ("drift",) * 3
    # The plain update's entry is pruned, the security one kept with its first-seen time.
    assert list(json.loads(sandbox.state.read_text())["first_seen"]) == [
        "hvgtest-sec=1.0-1+deb12u1"
    ]

    out, _ = sandbox.run(check=False)
    assert "changed=0" in out, out[-3000:]

    # Patched: the security update installed, the stale QEMU gone, the host rebooted.
    sandbox.apt.install("hvgtest-sec", "1.0-1+deb12u1")
    sandbox.qemu.kill()
    sandbox.qemu.wait(timeout=30)
    sandbox.sentinel.unlink()
    _, report = sandbox.run(check=True)
    assert set(statuses(report).values()) == {"compliant"}, statuses(report)
