# SPDX-License-Identifier: Apache-2.0
"""Generic hvguard filters (report gating)."""

from __future__ import annotations

from typing import Any

FAILING_STATUSES = ("drift", "error")


def hvguard_report_failures(
    report: dict[str, Any], statuses: list[str] | tuple[str, ...] = FAILING_STATUSES
) -> list[str]:
    """Return `host ID: status` for every host x control whose status is failing.

    `report` is the parsed hvguard-report.json (schema 1.x: hosts.<host>.controls.<ID>.status).
    """
    if not isinstance(report, dict) or "hosts" not in report:
        raise ValueError("hvguard_report_failures expects a parsed hvguard report (no 'hosts' key)")
    failures: list[str] = []
    for host in sorted(report["hosts"]):
        controls = report["hosts"][host].get("controls", {})
        for control_id in sorted(controls):
            status = controls[control_id].get("status")
            if status in statuses:
                failures.append(f"{host} {control_id}: {status}")
    return failures


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {"hvguard_report_failures": hvguard_report_failures}
