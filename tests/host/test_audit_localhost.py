"""The README's local audit on this very machine: reports written, nothing changed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
WATCHED = [Path("/etc"), Path("/usr/local/bin"), Path("/usr/local/sbin")]
SYSFS = [Path("/sys/kernel/mm/ksm/run")]
# The pack is proven on Ansible's own strategy here, even under `make ... MITOGEN=1`.
LINEAR = {"ANSIBLE_STRATEGY": "linear"}


def state_hash() -> str:
    digest = hashlib.sha256()
    for top in WATCHED:
        for path in sorted(top.rglob("*")) if top.exists() else []:
            if path.is_file() and not path.is_symlink():
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                digest.update(str(path).encode() + data)
    for path in SYSFS:
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_local_audit_changes_nothing_and_reports_drift(tmp_path: Path) -> None:
    before = state_hash()
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **LINEAR,
           "HVGUARD_REPORT_DIR": str(tmp_path), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbooks/audit.yml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert state_hash() == before, "the check-mode audit changed this machine"

    for name in ("json", "junit.xml", "html", "md"):
        assert (tmp_path / f"hvguard-report.{name}").stat().st_size > 0, name
    report = json.loads((tmp_path / "hvguard-report.json").read_text())
    mem1 = report["hosts"]["localhost"]["controls"]["HVG-MEM-001"]
    if "init_on_free=1" not in Path("/proc/cmdline").read_text().split():
        assert mem1["status"] == "drift"
        assert mem1["evidence"], "drift without evidence"
    ET.parse(tmp_path / "hvguard-report.junit.xml")
    assert "HVG-MEM-001" in proc.stdout, "console table missing"


def test_gate_fails_the_run_on_drift(tmp_path: Path) -> None:
    if "init_on_free=1" in Path("/proc/cmdline").read_text().split():
        import pytest

        pytest.skip("this machine has no drift to gate on")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **LINEAR,
           "HVGUARD_REPORT_DIR": str(tmp_path), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbooks/audit.yml",
         "-e", "hvguard_audit_fail_on_drift=true"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "localhost HVG-MEM-001: drift" in proc.stdout
