# SPDX-License-Identifier: Apache-2.0
"""The self-contained HTML page (templates/report.html.j2, autoescaped)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import FAILING, STATUSES
from .templating import html_env
from .text import EVIDENCE_KEYS, guarantee, headline

_REBOOT = {True: "yes", False: "no", None: "—"}
# Cells that open on their evidence; the others show their status and result count only
# (their evidence, "the task ran and changed nothing", is in the JSON report).
DETAILED = ("error", "drift", "waived", "remediated")
# Compact grid cells: the counts line above the grid spells each one out.
SHORT = {
    "error": "error",
    "drift": "drift",
    "waived": "waived",
    "remediated": "fixed",
    "compliant": "ok",
    "disabled": "off",
    "not_applicable": "n/a",
}
HTML_MAX_ENTRIES = 6  # evidence entries per cell, failing ones first
HTML_MAX_TEXT = 3000  # characters per evidence field; the JSON report has all of it


def render_html(report: Mapping[str, Any]) -> str:
    """Self-contained page: summary counts, hosts x controls grid, evidence per cell."""
    run, summary = report["run"], report["summary"]
    meta = (
        f"{'Check mode (audit)' if run.get('check_mode') else 'Apply run'} · "
        f"generated {run.get('generated', '')} · playbooks: "
        f"{', '.join(run.get('playbooks') or [])} · ansible-core "
        f"{run.get('ansible_version', '')} · catalogue sha256 "
        f"{str((run.get('catalogue') or {}).get('sha256', ''))[:12]}"
    )
    hosts = {
        host: {
            "controls": h["controls"],
            "failing": any(c["status"] in FAILING for c in h["controls"].values()),
            "reboot": _REBOOT[h.get("reboot_required")],
        }
        for host, h in report["hosts"].items()
    }
    return (
        html_env()
        .get_template("report.html.j2")
        .render(
            meta=meta,
            guarantee=guarantee(run),
            summary=summary,
            verdict=headline(summary),
            statuses=STATUSES,
            controls=report["controls"],
            hosts=hosts,
            evidence_keys=EVIDENCE_KEYS,
            detailed=DETAILED,
            short=SHORT,
            max_entries=HTML_MAX_ENTRIES,
            severities=[s for s in ("high", "medium", "low") if s in _values(report, "severity")]
            + sorted(_values(report, "severity") - {"high", "medium", "low"}),
            areas=sorted(_values(report, "area")),
        )
    )


def _values(report: Mapping[str, Any], key: str) -> set[str]:
    return {str(meta.get(key)) for meta in report["controls"].values()}
