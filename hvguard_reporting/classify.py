# SPDX-License-Identifier: Apache-2.0
"""Classification: the status one task result implies for a control, with its evidence."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .evidence import as_text, entry, render_diff


def _references_toggle(condition: Any, variable: str | None) -> bool:
    if not variable or not isinstance(condition, str):
        return False
    return re.search(rf"(?<![\w.]){re.escape(variable)}(?!\w)", condition) is not None


def items(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = result.get("results")
    if isinstance(found, list):
        return [i for i in found if isinstance(i, Mapping)]
    return []


def _skip_status(
    task: str, result: Mapping[str, Any], variable: str | None
) -> tuple[str, list[dict]]:
    conditions = [i.get("false_condition") for i in items(result)] or [
        result.get("false_condition")
    ]
    conditions = [c for c in conditions if c]
    if any(_references_toggle(c, variable) for c in conditions):
        status = "disabled"
    else:
        status = "not_applicable"
    reason = result.get("skip_reason") or result.get("msg")
    cond = conditions[0] if conditions else None
    return status, [entry(task, "skipped", status, false_condition=cond, msg=reason)]


def _failure_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "msg": as_text(result.get("msg")),
        "stderr": as_text(result.get("stderr")),
        "rc": result.get("rc"),
    }


def _label(res: Mapping[str, Any]) -> Any:
    return res.get("_ansible_item_label", res.get("item"))


def _change_entries(
    task: str, result: Mapping[str, Any], status: str, diff_hint: bool
) -> list[dict[str, Any]]:
    loop = items(result)
    sources = [(i, _label(i)) for i in loop if i.get("changed")]
    if not loop:
        sources = [(result, None)]
    entries = []
    for res, label in sources:
        diff = render_diff(res.get("diff"))
        msg = as_text(res.get("msg"))
        if not diff and not msg and diff_hint:
            msg = "changed (no diff: run with diff mode for details)"
        entries.append(
            entry(
                task,
                "changed",
                status,
                item=label,
                msg=msg,
                diff=diff,
                evidence=res.get("evidence"),
            )
        )
    return entries


def _finding_entry(task: str, res: Mapping[str, Any], status: str) -> dict[str, Any]:
    msg = as_text(res.get("msg"))
    return entry(task, "finding", status, item=_label(res), msg=msg, evidence=res.get("evidence"))


def classify(
    outcome: str,
    task: str,
    result: Mapping[str, Any],
    check_mode: bool,
    variable: str | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Status of one control implied by one task result, and its evidence entries.

    outcome: ok | failed | failed_ignored | unreachable | skipped (the callback event).
    """
    findings = [r for r in (result, *items(result)) if r.get("hvguard_status")]
    drifts = [r for r in findings if r.get("hvguard_status") == "drift"]
    if drifts and outcome in ("ok", "failed", "failed_ignored"):
        # A finding with fail_on_drift fails the host, but what it reports is drift.
        return "drift", [_finding_entry(task, r, "drift") for r in drifts]
    if outcome == "unreachable":
        return "error", [entry(task, "unreachable", "error", msg=as_text(result.get("msg")))]
    if outcome == "failed":
        failed = [i for i in items(result) if i.get("failed")]
        entries = [
            entry(task, "failed", "error", item=_label(i), **_failure_fields(i)) for i in failed
        ] or [entry(task, "failed", "error", **_failure_fields(result))]
        return "error", entries
    if outcome == "skipped":
        return _skip_status(task, result, variable)
    changed = bool(result.get("changed")) or any(i.get("changed") for i in items(result))
    if changed:
        status = "drift" if check_mode else "remediated"
        return status, _change_entries(task, result, status, diff_hint=True)
    if outcome == "failed_ignored":
        note = "failure ignored (ignore_errors): " + as_text(result.get("msg"))
        return "compliant", [entry(task, "ok", "compliant", msg=note)]
    if findings:
        return "compliant", [_finding_entry(task, r, "compliant") for r in findings]
    return "compliant", [entry(task, "ok", "compliant")]
