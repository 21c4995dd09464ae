# SPDX-License-Identifier: Apache-2.0
"""hvguard_mirror (issue 11): bad input stops playbooks/mirror.yml before any change.

The playbook runs in check mode against this machine; the validation play must fail with a
message naming the variable, and no task may report a change (the gate file and the hook
would otherwise already count as drift).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / ".venv" / "bin" / "ansible-playbook"

pytestmark = pytest.mark.skipif(not ANSIBLE.exists(), reason="needs the venv")

CASES = {
    "mark-not-one-bit": ({"hvguard_mirror_mark": 3}, "the mark a single bit"),
    "mark-zero": ({"hvguard_mirror_mark": 0}, "the mark a single bit"),
    "mark-collides": (
        {"hvguard_mirror_reserved_marks": [0x00100001]},
        "collides with the reserved mark 1048577",
    ),
    "monitor-is-a-vm-port": ({"hvguard_mirror_monitor": "vnet9"}, "matches the VM port pattern"),
    "monitor-hostile-name": ({"hvguard_mirror_monitor": 'mon"; flush ruleset'}, "monitor"),
    "pattern-with-inner-star": ({"hvguard_mirror_vm_port_patterns": ["v*net"]}, "patterns"),
    "toggle-string": ({"hvguard_mirror_gate_enabled": "yes please"}, "hvguard_mirror_gate_enabled"),
}


def run(extra: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps(extra))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "HVGUARD_REPORT_DIR": str(tmp_path / "reports"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        [str(ANSIBLE), "playbooks/mirror.yml", "--check", "-e", f"@{varfile}",
         "-e", "hvguard_target=hypervisors"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_rejected_before_any_change(case: str, tmp_path: Path) -> None:
    extra, needle = CASES[case]
    proc = run(extra, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"bad input accepted:\n{out[-3000:]}"
    assert "changed=0" in out, f"something changed before the error:\n{out[-3000:]}"
    assert needle in out, f"error does not mention {needle!r}:\n{out[-3000:]}"
