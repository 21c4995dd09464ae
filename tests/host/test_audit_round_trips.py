# SPDX-License-Identifier: Apache-2.0
"""Issue 15: the whole baseline audit of a host costs at most ROUND_TRIP_LIMIT round trips.

Counted by callback_plugins/hvguard_rtt.py (a round trip = one module execution on the host,
not delegated to the controller) while playbooks/audit.yml audits this machine as
``localhost`` over a local connection, twice. The count must be the same both times (it is a
property of the pack and the host's state, not of timing), and at most the limit: above it,
every nightly fleet audit pays the difference times the connection latency per host.
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

ROUND_TRIP_LIMIT = 20


def counted_audit(work: Path) -> dict[str, Any]:
    """Audit this machine with the counter on; return the counter's summary for localhost."""
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
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert config_fingerprint() == before, "the check-mode audit changed this machine"
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (work / "reports" / "hvguard-report.json").exists(), "the audit wrote no report"
    return json.loads((work / "rtt.json").read_text())["hosts"]["localhost"]


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    base = tmp_path_factory.mktemp("rtt")
    return [counted_audit(base / "first"), counted_audit(base / "second")]


def test_round_trip_count_is_stable(audits: list[dict[str, Any]]) -> None:
    first, second = audits
    assert first["round_trips"] > 0, "nothing counted: the counter is not wired in"
    assert first["by_task"]["hvguard_common : Gather hvguard facts (libvirt, QEMU, kernel, "
                            "memory, storage, network) in one call"] == 1  # fmt: skip
    assert first["delegated"] >= 1, "the controller-side check-mode probe was not kept apart"
    assert (first["round_trips"], first["by_task"]) == (second["round_trips"], second["by_task"])


def test_audit_costs_at_most_the_round_trip_limit(audits: list[dict[str, Any]]) -> None:
    counted = audits[0]
    top = sorted(counted["by_task"].items(), key=lambda kv: -kv[1])
    assert counted["round_trips"] <= ROUND_TRIP_LIMIT, (
        f"the baseline audit costs {counted['round_trips']} round trips per host "
        f"(limit {ROUND_TRIP_LIMIT}, issue 15); by task: "
        + "; ".join(f"{name}: {n}" for name, n in top)
    )
