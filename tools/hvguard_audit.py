#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Audit entry point for CI: run playbooks/audit.yml and exit with the report's verdict.

ansible-playbook cannot exit with a code of a callback's choosing, and its own codes mix
"a host failed" with "a control drifted" (the gate play fails like any task). This wrapper
runs the audit (every argument is passed on to ansible-playbook), reads the JSON report of
*this* run and exits with:

  0   compliant: no control drifted or erred (waived, disabled, n/a and remediated pass)
  10  drift: at least one control drifted, every control could be evaluated
  11  error: at least one control could not be evaluated (task failed, host unreachable,
      host stopped before the control ran); drift may be present too
  12  ansible-playbook exited 0 but wrote no complete report of this run
  any other: ansible-playbook's own exit code when the run broke before a complete report
      (1 error, 2 failed hosts, 4 unreachable/parser error, 5 options, 99 interrupted, 250)

The gate play (-e hvguard_audit_fail_on_drift=true) is not needed here; ansible-playbook
stays usable directly (exit 2 on drift with the gate, 0 without).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from hvguard_reporting.model import EXIT_CODES, EXIT_NO_REPORT, verdict  # noqa: E402


def exit_code(rc: int, report: dict | None, run_id: str) -> int:
    """Map ansible-playbook's exit code and this run's report to the audit's exit code."""
    complete = (
        isinstance(report, dict)
        and report.get("run", {}).get("complete") is True
        and report.get("run", {}).get("id") == run_id
    )
    if not complete:
        return rc or EXIT_NO_REPORT
    assert report is not None
    summary = report.get("summary", {})
    found = summary.get("verdict") or verdict(summary.get("by_status", {}))
    if found == "compliant" and rc != 0:
        return rc  # something failed that no control accounts for: a broken run
    return EXIT_CODES[found]


def main(argv: list[str]) -> int:
    run_id = "audit-" + uuid.uuid4().hex[:12]
    playbook = os.environ.get("HVGUARD_AUDIT_PLAYBOOK", str(ROOT / "playbooks" / "audit.yml"))
    ansible = os.environ.get("ANSIBLE_PLAYBOOK", "ansible-playbook")
    with tempfile.TemporaryDirectory(prefix="hvguard-audit-") as tmp:
        pointer = Path(tmp) / "report-path"
        env = {**os.environ, "HVGUARD_RUN_ID": run_id, "HVGUARD_REPORT_POINTER": str(pointer)}
        env.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
        rc = subprocess.run([ansible, playbook, *argv], env=env, check=False).returncode
        report = None
        if pointer.exists():
            try:
                report = json.loads(Path(pointer.read_text().strip()).read_text())
            except (OSError, ValueError):
                report = None
    code = exit_code(rc, report, run_id)
    print(f"hvguard-audit: ansible-playbook rc={rc}, exit {code}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
