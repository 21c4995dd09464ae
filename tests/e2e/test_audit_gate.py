# SPDX-License-Identifier: Apache-2.0
"""Issue 10 bugs 2 and 3 through the real playbooks/audit.yml on a sandboxed hypervisor:
the gate and the input validation run under --tags, and CI can tell drift from errors from
a broken run by the exit code of tools/hvguard_audit.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sandbox

pytestmark = pytest.mark.skipif(
    not (sandbox.BIN / "ansible-playbook").exists(), reason="no .venv (run make venv)"
)


@pytest.fixture
def box(tmp_path: Path) -> Path:
    return sandbox.make(tmp_path)


def report(box: Path, name: str = "reports") -> dict:
    return json.loads((box / name / "hvguard-report.json").read_text())


@pytest.mark.parametrize("tags", ["memory", "HVG-MEM-003"])
def test_gate_and_validation_run_under_tags(box: Path, tags: str) -> None:
    """Bug 2: `--tags memory -e hvguard_audit_fail_on_drift=true` exited 0 with drift."""
    before = sandbox.tree(box)
    proc = sandbox.run(
        box, "--tags", tags, "-e", '{"hvguard_audit_fail_on_drift": true}', wrapper=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "localhost HVG-MEM-003: drift" in out
    assert "TASK [Validate the input of each role" in out, "validation skipped under --tags"
    assert sandbox.tree(box) == before, "the audit changed the sandbox"


def test_bad_input_is_refused_under_tags(box: Path) -> None:
    """Bug 2's sibling: the validation play vanished under --tags too."""
    proc = sandbox.run(
        box, "--tags", "HVG-MEM-003", "-e", '{"hvguard_memory_ksm_allowed": "yes"}', wrapper=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "hvguard_memory_ksm_allowed" in out
    # refused by the validation play, before the audit play began
    assert "PLAY [Audit the hvguard baseline" not in out, out[-3000:]


def test_drift_has_its_own_exit_code(box: Path) -> None:
    """Bug 3: drift exits 10 through the wrapper (not 0, not ansible's 2)."""
    proc = sandbox.run(box)
    assert proc.returncode == 10, (proc.stdout + proc.stderr)[-3000:]
    got = report(box)
    assert got["summary"]["verdict"] == "drift"
    statuses = {c: v["status"] for c, v in got["hosts"]["localhost"]["controls"].items()}
    assert {c: statuses[c] for c in sandbox.MEMORY} == {
        "HVG-MEM-001": "drift",
        "HVG-MEM-002": "drift",
        "HVG-MEM-003": "drift",
        "HVG-MEM-004": "compliant",
    }


def test_drift_with_the_gate_still_exits_10(box: Path) -> None:
    proc = sandbox.run(box, "-e", '{"hvguard_audit_fail_on_drift": true}')
    assert proc.returncode == 10, (proc.stdout + proc.stderr)[-3000:]


def test_compliant_exits_0(box: Path) -> None:
    proc = sandbox.run(box, "--tags", "HVG-MEM-004")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert report(box)["summary"]["verdict"] == "compliant"


def test_a_control_that_cannot_be_evaluated_exits_11(box: Path) -> None:
    """A directory where qemu.conf should be: the task fails, the control is an error."""
    (box / "etc/libvirt/qemu.conf").unlink()
    (box / "etc/libvirt/qemu.conf").mkdir()
    proc = sandbox.run(box, "--tags", "HVG-MEM-003")
    assert proc.returncode == 11, (proc.stdout + proc.stderr)[-3000:]
    assert report(box)["hosts"]["localhost"]["controls"]["HVG-MEM-003"]["status"] == "error"


def test_a_broken_run_keeps_ansibles_exit_code(box: Path) -> None:
    proc = sandbox.run(box, "--no-such-option")
    assert proc.returncode not in (0, 10, 11, 12)
    assert proc.returncode == 2  # argparse's usage error in ansible-playbook
