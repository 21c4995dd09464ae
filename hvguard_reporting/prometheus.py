# SPDX-License-Identifier: Apache-2.0
"""Prometheus textfile (node_exporter's textfile collector): one sample per host x control.
Written like every report, to a temp file and renamed into place, so the collector never
reads half a file.

``hvguard_control_status{host,control,severity}``: 0 compliant (or remediated), 1 drift,
2 error, 3 waived, -1 not evaluated (disabled or not applicable)."""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from typing import Any

from .model import STATUSES

VALUES = {
    "compliant": 0,
    "remediated": 0,
    "drift": 1,
    "error": 2,
    "waived": 3,
    "disabled": -1,
    "not_applicable": -1,
}


def _label(value: Any) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _timestamp(iso: str | None) -> int:
    if not iso:
        return 0
    try:
        return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return 0


def render_prometheus(report: Mapping[str, Any]) -> str:
    lines = [
        "# HELP hvguard_control_status hvguard control status per host: 0 compliant or "
        "remediated, 1 drift, 2 error, 3 waived, -1 disabled or not applicable.",
        "# TYPE hvguard_control_status gauge",
    ]
    for host, h in report["hosts"].items():
        for cid, cell in h["controls"].items():
            severity = (report["controls"].get(cid) or {}).get("severity")
            labels = f'host="{_label(host)}",control="{cid}",severity="{_label(severity)}"'
            lines.append(f"hvguard_control_status{{{labels}}} {VALUES[cell['status']]}")
    summary = report["summary"]
    lines += [
        "# HELP hvguard_cells host x control cells per status in the last audit.",
        "# TYPE hvguard_cells gauge",
        *(f'hvguard_cells{{status="{s}"}} {summary["by_status"].get(s, 0)}' for s in STATUSES),
        "# HELP hvguard_passed 1 when no control drifted or erred in the last audit.",
        "# TYPE hvguard_passed gauge",
        f"hvguard_passed {int(bool(summary['passed']))}",
        "# HELP hvguard_report_timestamp_seconds when the report was generated.",
        "# TYPE hvguard_report_timestamp_seconds gauge",
        f"hvguard_report_timestamp_seconds {_timestamp(report['run'].get('generated'))}",
    ]
    return "\n".join(lines) + "\n"
