# SPDX-License-Identifier: Apache-2.0
"""The compact per-control table printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .text import guarantee, headline

_COLS = [
    ("compl", "compliant"),
    ("drift", "drift"),
    ("error", "error"),
    ("remed", "remediated"),
    ("disab", "disabled"),
    ("n/a", "not_applicable"),
    ("waivd", "waived"),
]


def render_console(report: Mapping[str, Any], paths: Iterable[str] = ()) -> list[str]:
    """Compact per-control table for the end of the run."""
    summary = report["summary"]
    verdict = headline(summary)
    mode = "check mode" if report["run"].get("check_mode") else "apply run"
    lines = [f"hvguard compliance ({mode}): {verdict}, {summary['hosts']} hosts"]
    lines.append(guarantee(report["run"]))
    lines.append(f"{'control':<12} {'title':<40} " + " ".join(f"{c:>5}" for c, _ in _COLS))
    for cid, meta in report["controls"].items():
        title = str(meta.get("title") or "")
        title = title if len(title) <= 40 else title[:39] + "…"
        counts = summary["by_control"].get(cid, {})
        lines.append(
            f"{cid:<12} {title:<40} " + " ".join(f"{counts.get(s, 0):>5}" for _, s in _COLS)
        )
    total = summary["by_status"]
    lines.append(f"{'total':<12} {'':<40} " + " ".join(f"{total[s]:>5}" for _, s in _COLS))
    if summary.get("reboot_required"):
        lines.append("reboot required: " + ", ".join(summary["reboot_required"]))
    lines.extend(f"report: {p}" for p in paths)
    return lines
