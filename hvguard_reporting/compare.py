# SPDX-License-Identifier: Apache-2.0
"""Two runs compared for a merge request: what drifted anew, what was fixed, what still
fails. Cells are host x control; a cell that is failing (drift or error) in the new run and
was not in the old one (not failing, or absent) is new. A failing cell that a waiver now
covers is "waived", not fixed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import FAILING
from .templating import md_cell


def _cells(report: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (host, cid): cell["status"]
        for host, h in report.get("hosts", {}).items()
        for cid, cell in h.get("controls", {}).items()
    }


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    before, after = _cells(old), _cells(new)
    out: dict[str, list[dict[str, str]]] = {"new": [], "fixed": [], "waived": [], "still": []}
    for key in sorted(set(before) | set(after)):
        was, now = before.get(key), after.get(key)
        row = {"host": key[0], "control": key[1], "old": was or "absent", "new": now or "absent"}
        if now in FAILING and was not in FAILING:
            out["new"].append(row)
        elif was in FAILING and now in FAILING:
            out["still"].append(row)
        elif was in FAILING and now == "waived":
            out["waived"].append(row)
        elif was in FAILING and now is not None:
            out["fixed"].append(row)  # a cell that vanished (host left out) is not fixed
    return out


def render_compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    diff = compare(old, new)
    titles = {
        c: (m.get("title") or "")
        for c, m in {**old.get("controls", {}), **new.get("controls", {})}.items()
    }
    ids = [
        (r.get("run") or {}).get("id") or (r.get("run") or {}).get("generated") for r in (old, new)
    ]
    lines = [
        f"## hvguard audit: {len(diff['new'])} new drift, {len(diff['fixed'])} fixed, "
        f"{len(diff['waived'])} waived, {len(diff['still'])} still failing",
        "",
        f"Compared run `{ids[0]}` with run `{ids[1]}`.",
    ]
    sections = (
        ("new", "New drift or error"),
        ("fixed", "Fixed"),
        ("waived", "Newly waived"),
        ("still", "Still failing"),
    )
    for key, heading in sections:
        rows = diff[key]
        lines += ["", f"### {heading} ({len(rows)})", ""]
        if not rows:
            lines.append("none")
            continue
        lines += ["| Control | Title | Host | Before | Now |", "|---|---|---|---|---|"]
        lines += [
            f"| {r['control']} | {md_cell(titles.get(r['control'], ''))} | {md_cell(r['host'])} "
            f"| {r['old']} | {r['new']} |"
            for r in rows
        ]
    return "\n".join(lines) + "\n"
