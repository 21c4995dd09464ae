# SPDX-License-Identifier: Apache-2.0
"""Issue 10, safe defaults: `ansible-playbook playbooks/site.yml` with the repository's
ansible.cfg and no `-i` (the default inventory is this machine, for `make audit-local`) must
refuse clearly and change nothing here; the same for rotate_certs.yml, under any --tags. The
refusal is about the controller only: a remote host passes the guard (and is then merely
unreachable), and check mode (the audit) is not refused. The guard is tagged `always` like the
input validation: `--skip-tags always` skips both, on purpose only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import config_fingerprint

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "modules"))
from hvguard_baseline import baseline_controls  # noqa: E402

BIN = ROOT / ".venv" / "bin"
REFUSED = "refusing to apply the hvguard baseline to localhost"


def playbook(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "HVGUARD_REPORT_DIR": str(tmp_path / "reports")}  # fmt: skip
    env.pop("ANSIBLE_INVENTORY", None)
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["playbooks/site.yml"],
        ["playbooks/site.yml", "--tags", "HVG-MEM-001"],
        ["playbooks/site.yml", "-e", "hvguard_target=localhost"],
        ["playbooks/rotate_certs.yml"],
        ["playbooks/patching.yml"],
        ["playbooks/mirror.yml"],
    ],
    ids=["site", "site-tags", "site-target-localhost", "rotate", "patching", "mirror"],
)
def test_apply_without_inventory_refuses_the_controller(tmp_path: Path, args: list[str]) -> None:
    before = config_fingerprint()
    proc = playbook(tmp_path, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert REFUSED in out, out[-3000:]
    assert "hvguard_apply_to_controller=true" in out
    assert "changed=0" in out and "failed=1" in out, out[-3000:]
    assert config_fingerprint() == before


@pytest.mark.parametrize("args", [["playbooks/site.yml"], ["--check", "playbooks/audit.yml"]],
                         ids=["site", "audit"])  # fmt: skip
def test_a_remote_host_passes_the_guard_and_unreachable_is_no_pass(
    tmp_path: Path, args: list[str]
) -> None:
    """Issue 10: an unreachable host stops in the validation play, before any control ran;
    it must be in the report with every control in error, never a "PASSED, 0 hosts"."""
    proc = playbook(tmp_path, "-i", "hv1.invalid,", "-e", "hvguard_target=all", *args)
    out = proc.stdout + proc.stderr
    assert "refusing" not in out
    assert "UNREACHABLE" in out, out[-3000:]
    report = json.loads((tmp_path / "reports" / "hvguard-report.json").read_text())
    assert report["summary"]["passed"] is False
    assert report["summary"]["verdict"] == "error"
    cells = report["hosts"]["hv1.invalid"]["controls"]
    assert set(cells) == baseline_controls()
    assert {c["status"] for c in cells.values()} == {"error"}
    assert "Could not resolve hostname" in json.dumps(cells["HVG-MEM-001"])
    assert "FAILED, 1 hosts" in out


def test_check_mode_is_the_audit_and_is_not_refused(tmp_path: Path) -> None:
    proc = playbook(tmp_path, "playbooks/site.yml", "--check", "--tags", "HVG-MEM-003")
    out = proc.stdout + proc.stderr
    assert "refusing" not in out
    assert "failed=0" in out, out[-3000:]
