# SPDX-License-Identifier: Apache-2.0
"""JUnit XML: one <testsuite> per control, one <testcase> per host."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from .advice import action_text
from .evidence import as_text, clean
from .text import evidence_text, failing_first, refs_text, waiver_text

# status -> the JUnit counter it adds to (compliant and remediated pass)
_JUNIT_COUNTER = {
    "error": "errors",
    "drift": "failures",
    "disabled": "skipped",
    "not_applicable": "skipped",
}


def render_junit(report: Mapping[str, Any]) -> str:
    """One <testsuite> per control, one <testcase> per host (see docs/report-schema.md)."""
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    root = ET.Element("testsuites", name="hvguard", timestamp=report["run"].get("generated", ""))
    for cid, meta in report["controls"].items():
        suite = _junit_suite(root, cid, meta)
        counts = dict.fromkeys(totals, 0)
        for host, hdata in report["hosts"].items():
            cell = hdata["controls"].get(cid)
            if cell is None:
                continue
            _junit_case(suite, cid, host, cell)
            counts["tests"] += 1
            if cell["status"] in _JUNIT_COUNTER:
                counts[_JUNIT_COUNTER[cell["status"]]] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _junit_suite(root: ET.Element, cid: str, meta: Mapping[str, Any]) -> ET.Element:
    suite = ET.SubElement(root, "testsuite", name=clean(f"{cid} {meta.get('title') or ''}"))
    props = ET.SubElement(suite, "properties")
    for key in ("severity", "area", "role", "variable", "disruption", "reboot"):
        value = meta.get(key)
        text = str(value).lower() if isinstance(value, bool) else str(value)
        ET.SubElement(props, "property", name=key, value=clean(text))
    refs = refs_text(meta.get("references") or {})
    ET.SubElement(props, "property", name="references", value=clean(refs))
    return suite


def _junit_case(suite: ET.Element, cid: str, host: str, cell: Mapping[str, Any]) -> None:
    case = ET.SubElement(suite, "testcase", classname=f"hvguard.{cid}", name=clean(host))
    case.set("time", f"{float(cell.get('duration') or 0):.3f}")
    ordered = failing_first(cell["evidence"])
    body = clean(evidence_text(ordered))
    first = ordered[0] if ordered else {}
    message = clean(as_text(first.get("msg") or first.get("task") or cell["status"]))[:500]
    status = cell["status"]
    if cell.get("action"):
        # What a reader of a CI test view needs first: what is wrong, and the fix.
        act = cell["action"]
        message = clean(f"{status} on {host}: {message} | fix: {act['command']}")[:500]
        body = clean(action_text(act)) + "\n\n" + body
    if cell.get("waiver"):
        body = clean(waiver_text(cell["waiver"])) + "\n\n" + body
    if status == "error":
        ET.SubElement(case, "error", type="error", message=message).text = body
    elif status == "drift":
        ET.SubElement(case, "failure", type="drift", message=message).text = body
    elif status in ("disabled", "not_applicable"):
        why = first.get("false_condition")
        why = f"false condition: {why}" if why else message
        ET.SubElement(case, "skipped", message=clean(f"{status}: {why}"[:500]))
    elif status == "remediated":
        ET.SubElement(case, "system-out").text = "remediated in this run\n" + body
    elif status == "waived":
        ET.SubElement(case, "system-out").text = "drift waived\n" + body
