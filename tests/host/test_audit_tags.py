# SPDX-License-Identifier: Apache-2.0
"""`--tags` audits of one control whose data another task reads (issue 15's shared reads).

hvguard_migration_tls reads the keys' checksums, certificates and CRLs in one call that
carries no control ID, and re-reads after a task of another control replaced files. Under
`--tags <one control>` those other tasks do not run: the audit must still judge the control
(no error), and under `--tags memory` the shared read must not cost a round trip at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import config_fingerprint  # noqa: E402

ROLE = "hvguard_migration_tls"
READ = f"{ROLE} : Read the host keys' checksums, the certificates and the CRLs in one call"


def tagged_audit(work: Path, tags: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Audit this machine with ``--tags``; return the report's controls and the round trips."""
    work.mkdir()
    inventory = work / "hosts.ini"
    inventory.write_text(
        "[hypervisors]\n"
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CALLBACKS_ENABLED": "hvguard_report,hvguard_rtt",
        "HVGUARD_REPORT_DIR": str(work / "reports"),
        "HVGUARD_RTT_FILE": str(work / "rtt.json"),
    }
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/audit.yml"]
    before = config_fingerprint()
    proc = subprocess.run(
        [*argv, "--tags", tags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert config_fingerprint() == before, "the check-mode audit changed this machine"
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    report = json.loads((work / "reports" / "hvguard-report.json").read_text())
    rtt = json.loads((work / "rtt.json").read_text())["hosts"]["localhost"]
    return report["hosts"]["localhost"]["controls"], rtt


@pytest.mark.control("HVG-MIG-006", "HVG-MIG-008")
@pytest.mark.parametrize("control", ["HVG-MIG-006", "HVG-MIG-008"])
def test_one_control_is_judged_from_the_shared_read(tmp_path: Path, control: str) -> None:
    controls, rtt = tagged_audit(tmp_path / "run", control)
    assert list(controls) == [control]
    assert controls[control]["status"] != "error", controls[control]
    assert rtt["by_task"].get(READ) == 1, rtt["by_task"]


def test_a_run_without_tls_controls_skips_the_shared_read(tmp_path: Path) -> None:
    controls, rtt = tagged_audit(tmp_path / "run", "memory")
    assert controls and all(cid.startswith("HVG-MEM-") for cid in controls), list(controls)
    assert READ not in rtt["by_task"], rtt["by_task"]
