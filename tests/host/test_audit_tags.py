# SPDX-License-Identifier: Apache-2.0
"""`--tags` audits of one control whose data another task reads (issue 15's shared reads).

hvguard_migration_tls reads the keys' checksums, certificates and CRLs in one call that
carries no control ID, and re-reads after a task of another control replaced files. Under
`--tags <one control>` those other tasks do not run: the audit must still judge the control
(no error), and under `--tags memory` the shared read must not cost a round trip at all.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import counted_localhost_audit

ROLE = "hvguard_migration_tls"
READ = f"{ROLE} : Read the host keys' checksums, the certificates and the CRLs in one call"


def tagged_audit(work: Path, tags: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Audit this machine with ``--tags``; return the report's controls and the round trips."""
    host, rtt = counted_localhost_audit(work, "--tags", tags)
    return host["controls"], rtt


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
