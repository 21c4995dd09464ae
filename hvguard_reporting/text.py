# SPDX-License-Identifier: Apache-2.0
"""Plain-text helpers every renderer shares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .evidence import as_text
from .model import FAILING

STATUS_LABEL = {
    "compliant": "compliant",
    "drift": "drift",
    "waived": "waived",
    "error": "error",
    "remediated": "remediated",
    "disabled": "disabled",
    "not_applicable": "n/a",
}
EVIDENCE_KEYS = ("false_condition", "msg", "rc", "stderr", "evidence", "diff")


def evidence_text(evidence: Iterable[Mapping[str, Any]]) -> str:
    """Plain-text rendering of evidence entries (JUnit bodies, Markdown blocks)."""
    out: list[str] = []
    for item in evidence:
        out.append(entry_title(item))
        for key in EVIDENCE_KEYS:
            if key in item:
                value = as_text(item[key])
                sep = "\n" if "\n" in value else " "
                out.append(f"  {key}:{sep}{value}")
        if item.get("truncated"):
            out.append("  (evidence truncated)")
    return "\n".join(out)


def entry_title(item: Mapping[str, Any]) -> str:
    head = f"[{item.get('result')}] {item.get('task')}"
    if "item" in item:
        head += f" (item: {as_text(item['item'])})"
    return head


def failing_first(evidence: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Evidence with the entries that explain a failure (error, drift) first."""
    return sorted(evidence, key=lambda e: e.get("status") not in FAILING)


def refs_text(refs: Mapping[str, Any]) -> str:
    parts = [f"{k}: {', '.join(map(str, v))}" for k, v in refs.items() if v]
    return "; ".join(parts)


def failing_hosts(report: Mapping[str, Any], cid: str) -> list[str]:
    return [
        h for h, d in report["hosts"].items() if d["controls"].get(cid, {}).get("status") in FAILING
    ]


GUARANTEE = {
    "check": (
        "Check mode: every audited task ran in check mode, so this run changed nothing on "
        "the hosts; each drift is what an apply would change."
    ),
    "apply": "Apply run: cells marked remediated were changed on the hosts by this run.",
    "mixed": (
        "Mixed run: some plays ran in check mode (drift: nothing changed), others applied "
        "changes (remediated cells were changed by this run)."
    ),
}


def guarantee(run: Mapping[str, Any]) -> str:
    """What the run did to the hosts, stated in every report."""
    return GUARANTEE.get(
        str(run.get("mode")), GUARANTEE["check" if run.get("check_mode") else "apply"]
    )


def waiver_text(waiver: Mapping[str, Any]) -> str:
    state = "EXPIRED on" if waiver.get("expired") else "until"
    return (
        f"waiver {state} {waiver.get('expires')} by {waiver.get('approver')}: "
        f"{waiver.get('justification')} ({waiver.get('source')})"
    )


def headline(summary: Mapping[str, Any]) -> str:
    """The verdict word: FAILED also for a run that judged nothing (no host, no control),
    which says so instead of looking like a drift."""
    if summary["passed"]:
        return "PASSED"
    return "FAILED" if summary.get("controls") else "FAILED (nothing judged)"
