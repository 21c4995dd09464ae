"""The self-contained HTML page (templates/report.html.j2, autoescaped)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import FAILING, STATUSES
from .templating import html_env
from .text import EVIDENCE_KEYS, guarantee

_REBOOT = {True: "yes", False: "no", None: "—"}


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
            verdict="PASSED" if summary["passed"] else "FAILED",
            statuses=STATUSES,
            controls=report["controls"],
            hosts=hosts,
            evidence_keys=EVIDENCE_KEYS,
        )
    )
