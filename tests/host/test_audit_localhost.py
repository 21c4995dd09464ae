# SPDX-License-Identifier: Apache-2.0
"""The README's local audit on this very machine: reports written, nothing changed.

HVG-MEM-001 (init_on_free=1 on the running kernel) is decided by the kernel command line.
The first test audits with the facts the playbook gathers itself and checks the verdict
against this machine's own /proc/cmdline, whatever it holds. The drift and gate tests must
not depend on how the controller was booted, so they run the same audit with this machine's
real facts (hvguard_facts through Ansible) in which only the kernel command line is set by
the test, once without and once with init_on_free=1.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import ansible_adhoc, load_library

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
WATCHED = [Path("/etc"), Path("/usr/local/bin"), Path("/usr/local/sbin")]
SYSFS = [Path("/sys/kernel/mm/ksm/run")]
PLAIN = "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=/dev/vda1 ro quiet"
HARDENED = PLAIN + " init_on_free=1"

facts_mod = load_library("hvguard_facts")
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


@pytest.fixture(scope="module")
def host_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """This machine's hvguard facts, gathered by the real module through Ansible."""
    result = ansible_adhoc("hvguard_facts", {"domains": True}, tmp_path_factory.mktemp("facts"))
    assert not result.get("failed"), result
    return result["ansible_facts"]["hvguard"]


def with_cmdline(facts: dict[str, Any], cmdline: str) -> dict[str, Any]:
    """``facts`` as if this machine had booted with ``cmdline``."""
    sandbox = copy.deepcopy(facts)
    sandbox["kernel"]["cmdline"] = cmdline
    sandbox["kernel"]["params"] = facts_mod.parse_cmdline(cmdline)
    return sandbox


def audit(
    tmp_path: Path, facts: dict[str, Any] | None = None, gate: bool = False
) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    """Run playbooks/audit.yml here (with injected facts, if any); return it and its report."""
    reports = tmp_path / "reports"
    argv = [str(BIN / "ansible-playbook"), "playbooks/audit.yml"]
    if facts is not None:
        # An `hvguard` variable stands for the facts: hvguard_common then gathers none.
        varfile = tmp_path / "facts.json"
        varfile.write_text(json.dumps({"hvguard": facts}))
        argv += ["-e", f"@{varfile}"]
    if gate:
        argv += ["-e", "hvguard_audit_fail_on_drift=true"]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **LINEAR,
           "HVGUARD_REPORT_DIR": str(reports), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    before = state_hash()
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert state_hash() == before, "the check-mode audit changed this machine"
    report_file = reports / "hvguard-report.json"
    assert report_file.exists(), (proc.stdout + proc.stderr)[-4000:]
    return proc, json.loads(report_file.read_text())


def mem001(report: dict[str, Any]) -> dict[str, Any]:
    return report["hosts"]["localhost"]["controls"]["HVG-MEM-001"]


def test_local_audit_changes_nothing_and_judges_this_hosts_cmdline(tmp_path: Path) -> None:
    proc, report = audit(tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for name in ("json", "junit.xml", "html", "md"):
        assert (tmp_path / "reports" / f"hvguard-report.{name}").stat().st_size > 0, name
    ET.parse(tmp_path / "reports" / "hvguard-report.junit.xml")
    assert "HVG-MEM-001" in proc.stdout, "console table missing"
    hardened = "init_on_free=1" in Path("/proc/cmdline").read_text().split()
    assert mem001(report)["status"] == ("compliant" if hardened else "drift")


def test_gate_fails_the_run_on_drift(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    proc, report = audit(tmp_path, with_cmdline(host_facts, PLAIN), gate=True)
    assert mem001(report)["status"] == "drift"
    assert mem001(report)["evidence"], "drift without evidence"
    assert PLAIN in json.dumps(mem001(report)["evidence"])
    assert proc.returncode != 0
    assert "localhost HVG-MEM-001: drift" in proc.stdout


def test_gate_does_not_blame_a_compliant_kernel(tmp_path: Path, host_facts: dict[str, Any]) -> None:
    # Other controls may drift on this machine (the gate may still fail): MEM-001 must not.
    proc, report = audit(tmp_path, with_cmdline(host_facts, HARDENED), gate=True)
    assert mem001(report)["status"] == "compliant"
    assert "hvguard audit" in proc.stdout, "the gate did not run"
    assert "localhost HVG-MEM-001:" not in proc.stdout
