# SPDX-License-Identifier: Apache-2.0
"""Bad input fails before the first change, with a message naming the variable.

Every `cases*.yml` beside this file is a table of cases (see cases_memory.yml). Each case
runs `playbooks/site.yml` (or the case's `playbook`) in check mode against this machine:
the run must fail, no task may report `changed`, and the failure must mention every
`expect` string.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "modules"))
from hvguard_baseline import baseline_controls  # noqa: E402

VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"


def load_cases() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(Path(__file__).parent.glob("cases*.yml")):
        cases += yaml.safe_load(path.read_text()) or []
    return cases


CASES = load_cases()
SITE_CONTROLS = baseline_controls()  # site.yml applies what audit.yml audits


def run_site(
    extra_vars: dict[str, Any], tmp_path: Path, playbook: str = "site.yml"
) -> subprocess.CompletedProcess[str]:
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps(extra_vars))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "HVGUARD_REPORT_DIR": str(tmp_path / "reports"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), f"playbooks/{playbook}", "--check",
         "-e", f"@{varfile}", "-e", "hvguard_target=hypervisors"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 12, "keep at least a dozen bad-input cases"
    assert len({c["id"] for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_rejected_before_any_change(case: dict[str, Any], tmp_path: Path) -> None:
    if case.get("requires_libvirt") and not shutil.which("libvirtd"):
        pytest.skip("needs the libvirt daemon binaries installed on this machine")
    proc = run_site(case["vars"], tmp_path, case.get("playbook", "site.yml"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"bad input accepted:\n{out[-3000:]}"
    assert "changed=0" in out, f"something changed before the error:\n{out[-3000:]}"
    for needle in case["expect"]:
        assert needle in out, f"error does not mention {needle!r}:\n{out[-3000:]}"
    # Issue 10: the report names every control the run would have judged, each in error
    # (not only the role whose input was bad), and does not pass.
    report = json.loads((tmp_path / "reports" / "hvguard-report.json").read_text())
    cells = report["hosts"]["localhost"]["controls"]
    assert report["summary"]["passed"] is False
    assert {c["status"] for c in cells.values()} == {"error"}, cells
    if case.get("playbook", "site.yml") == "site.yml":
        assert set(cells) == SITE_CONTROLS
