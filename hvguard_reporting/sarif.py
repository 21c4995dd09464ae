# SPDX-License-Identifier: Apache-2.0
"""SARIF 2.1.0 for code-scanning UIs: one rule per control (ruleId = control ID), one result
per host x control. Drift and error are ``fail`` results whose level follows the control's
severity; waived drift is a suppressed ``fail``; compliant and remediated cells ``pass``;
disabled and not applicable ``notApplicable``. Results point at the control's entry in the
catalogue (the one file every control has) and name the host as a logical location."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from .advice import action_text
from .evidence import as_text
from .model import ROOT
from .text import failing_first, guarantee

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"high": "error", "medium": "warning", "low": "note"}
SECURITY_SEVERITY = {"high": "8.0", "medium": "5.0", "low": "2.0"}
CATALOGUE_URI = "controls/catalogue.yml"
_KIND = {
    "error": "fail",
    "drift": "fail",
    "waived": "fail",
    "remediated": "pass",
    "compliant": "pass",
    "disabled": "notApplicable",
    "not_applicable": "notApplicable",
}


@cache
def _catalogue_lines(path: str) -> dict[str, int]:
    """Control ID -> line of its ``- id:`` in the catalogue file (1-based)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return {}
    found = re.finditer(r"^[ \t]*-[ \t]*id:[ \t]*(HVG-[A-Z]+-\d{3})[ \t]*$", text, re.M)
    return {m.group(1): text.count("\n", 0, m.start()) + 1 for m in found}


def _rule(cid: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    severity = str(meta.get("severity") or "medium")
    refs = "; ".join(f"{k}: {', '.join(v)}" for k, v in (meta.get("references") or {}).items() if v)
    help_text = (
        f"{meta.get('rationale') or ''}\n\nVerified by: {meta.get('verification') or ''}\n\n"
        f"Fix: ansible-playbook playbooks/site.yml --tags {cid} --limit HOST "
        f"(disruption {meta.get('disruption')}, {'reboot' if meta.get('reboot') else 'no reboot'})"
    )
    return {
        "id": cid,
        "name": cid.replace("-", ""),
        "shortDescription": {"text": str(meta.get("title") or cid)},
        "fullDescription": {"text": str(meta.get("rationale") or meta.get("title") or cid)},
        "help": {"text": help_text + (f"\n\nReferences: {refs}" if refs else "")},
        "defaultConfiguration": {"level": LEVELS.get(severity, "warning")},
        "properties": {
            "tags": ["security", "hvguard", str(meta.get("area") or "")],
            "security-severity": SECURITY_SEVERITY.get(severity, "5.0"),
            "severity": severity,
            "disruption": meta.get("disruption"),
            "reboot": bool(meta.get("reboot")),
        },
    }


def _message(status: str, host: str, cell: Mapping[str, Any], title: str) -> str:
    first = (failing_first(cell["evidence"]) or [{}])[0]
    detail = as_text(first.get("msg") or first.get("task") or "")
    text = f"{status} on {host}: {title}"
    if detail and status in ("error", "drift", "waived"):
        text += f" ({detail[:300]})"
    if cell.get("action"):
        text += "\n" + action_text(cell["action"])
    return text


def _result(
    cid: str, index: int, meta: Mapping[str, Any], host: str, cell: Mapping[str, Any], line: int
) -> dict[str, Any]:
    status = cell["status"]
    kind = _KIND[status]
    level = LEVELS.get(str(meta.get("severity")), "warning") if kind == "fail" else "none"
    fingerprint = hashlib.sha256(f"{host}\0{cid}".encode()).hexdigest()
    result: dict[str, Any] = {
        "ruleId": cid,
        "ruleIndex": index,
        "kind": kind,
        "level": level,
        "message": {"text": _message(status, host, cell, str(meta.get("title") or cid))},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": CATALOGUE_URI, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": line},
                },
                "logicalLocations": [{"name": host, "kind": "host"}],
            }
        ],
        "partialFingerprints": {"hvguardHostControl/v1": fingerprint},
        "properties": {"host": host, "status": status},
    }
    if cell.get("waiver"):
        waiver = cell["waiver"]
        result["properties"]["waiver"] = dict(waiver)
        if status == "waived":
            result["suppressions"] = [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": f"{waiver['justification']} (approved by "
                    f"{waiver['approver']}, until {waiver['expires']})",
                }
            ]
    return result


def render_sarif(report: Mapping[str, Any]) -> str:
    run = report["run"]
    catalogue_path = str((run.get("catalogue") or {}).get("path") or ROOT / CATALOGUE_URI)
    lines = _catalogue_lines(catalogue_path)
    cids = list(report["controls"])
    results = [
        _result(cid, i, report["controls"][cid], host, cell, lines.get(cid, 1))
        for i, cid in enumerate(cids)
        for host, h in report["hosts"].items()
        if (cell := h["controls"].get(cid)) is not None
    ]
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "hvguard",
                        "informationUri": "https://github.com/hvguard/hvguard",
                        "semanticVersion": "1.1.0",
                        "rules": [_rule(cid, report["controls"][cid]) for cid in cids],
                    }
                },
                "automationDetails": {"id": f"hvguard/{run.get('id', 'run')}"},
                "invocations": [
                    {
                        "executionSuccessful": bool(run.get("complete")),
                        "endTimeUtc": run.get("generated"),
                        "startTimeUtc": run.get("started"),
                        "properties": {"mode": run.get("mode"), "guarantee": guarantee(run)},
                    }
                ],
                "originalUriBaseIds": {"%SRCROOT%": {"uri": "file:///"}},
                "results": results,
                "properties": {"verdict": report["summary"].get("verdict")},
            }
        ],
    }
    return json.dumps(sarif, indent=1) + "\n"
