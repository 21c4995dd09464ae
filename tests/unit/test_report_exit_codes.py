# SPDX-License-Identifier: Apache-2.0
"""tools/hvguard_audit.py: the audit's exit code from ansible-playbook's and this run's
report (issue 10 bug 3). The end-to-end runs are in tests/e2e/test_audit_gate.py."""

from __future__ import annotations

import importlib.util

import pytest

from hvguard_reporting import EXIT_CODES, EXIT_NO_REPORT, STATUSES, verdict
from hvguard_reporting.model import ROOT

spec = importlib.util.spec_from_file_location("hvguard_audit", ROOT / "tools" / "hvguard_audit.py")
assert spec and spec.loader
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def rep(found: str | None, complete: bool = True, run_id: str = "r1") -> dict:
    counts = dict.fromkeys(STATUSES, 0)
    if found in ("drift", "error"):
        counts[found] = 1
    summary = {"by_status": counts} | ({"verdict": found} if found else {})
    return {"run": {"id": run_id, "complete": complete}, "summary": summary}


@pytest.mark.parametrize(
    ("rc", "report", "expected"),
    [
        (0, rep("compliant"), 0),
        (0, rep("drift"), 10),
        (2, rep("drift"), 10),  # the gate play failed on drift
        (2, rep("error"), 11),  # a host failed: its controls are errors
        (4, rep("error"), 11),  # unreachable
        (0, rep(None), 0),  # a 1.0 report without verdict: from the counts
        (0, rep("drift") | {"summary": rep("drift")["summary"] | {"verdict": None}}, 10),
        (2, rep("compliant"), 2),  # a failure no control accounts for: a broken run
        (0, rep("drift", complete=False), EXIT_NO_REPORT),
        (0, rep("drift", run_id="older"), EXIT_NO_REPORT),  # a stale report of another run
        (0, None, EXIT_NO_REPORT),
        (1, None, 1),
        (4, None, 4),  # parser error
        (99, rep("drift", complete=False), 99),  # interrupted
        (250, None, 250),
    ],
)
def test_exit_code_table(rc, report, expected) -> None:
    assert tool.exit_code(rc, report, "r1") == expected


def test_audit_codes_are_not_ansible_playbooks() -> None:
    ansible = {1, 2, 3, 4, 5, 8, 99, 250}
    codes = {*EXIT_CODES.values(), EXIT_NO_REPORT} - {0}
    assert not codes & ansible
    assert len(codes) == 3


def test_verdict_error_beats_drift() -> None:
    assert verdict({"drift": 3, "error": 1}) == "error"
    assert verdict({"drift": 3}) == "drift"
    assert verdict({"compliant": 3, "disabled": 1}) == "compliant"
