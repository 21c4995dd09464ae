# SPDX-License-Identifier: Apache-2.0
"""Issue 10 "Done means": the pipeline example, end to end through the real
playbooks/audit.yml and tools/hvguard_audit.py on a sandboxed hypervisor (tests/e2e/sandbox.py):
an audit with drift exits 10 and writes SARIF, JUnit and Prometheus outputs that are valid; a
waiver in the inventory makes it exit 0 (waived); an expired waiver is drift again (10); the
comparison of the runs says what changed; nothing in the sandbox changed."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sandbox
import yaml

sys.path.insert(0, str(sandbox.ROOT / "tests" / "unit"))
from test_report_outputs import check_sarif, parse_textfile

pytestmark = pytest.mark.skipif(
    not (sandbox.BIN / "ansible-playbook").exists(), reason="no .venv (run make venv)"
)
DRIFTING = ("HVG-MEM-001", "HVG-MEM-002", "HVG-MEM-003")


def waivers(box: Path, expires: dt.date) -> None:
    entries = [
        {"control": cid, "hosts": ["hypervisors"], "justification": f"pipeline test {cid}",
         "approver": "ci-lead", "expires": expires.isoformat()}
        for cid in DRIFTING
    ]  # fmt: skip
    (box / "inventory" / "hvguard_waivers.yml").write_text(yaml.safe_dump({"waivers": entries}))


def statuses(report: dict) -> dict[str, str]:
    cells = report["hosts"]["localhost"]["controls"]
    return {cid: cells[cid]["status"] for cid in sandbox.MEMORY}


def latest(box: Path) -> dict:
    return json.loads((box / "reports" / "latest" / "hvguard-report.json").read_text())


def compare(box: Path, old: str, new: str) -> subprocess.CompletedProcess:
    runs = box / "reports" / "runs"
    tool = sandbox.ROOT / "tools" / "hvguard_compare.py"
    return subprocess.run(
        [str(sandbox.BIN / "python"), str(tool), str(runs / old), str(runs / new)],
        capture_output=True,
        text=True,
    )


def test_pipeline_drift_waiver_expiry_and_comparison(tmp_path: Path) -> None:
    box = sandbox.make(tmp_path)
    before = sandbox.tree(box)

    # 1. audit with drift: exit 10, every output written and valid
    first = sandbox.run(box)
    assert first.returncode == 10, (first.stdout + first.stderr)[-3000:]
    report = latest(box)
    assert statuses(report) == dict.fromkeys(DRIFTING, "drift") | {"HVG-MEM-004": "compliant"}
    reports = box / "reports"
    sarif = check_sarif((reports / "hvguard-report.sarif").read_text())
    results = {r["ruleId"]: r for r in sarif["runs"][0]["results"]}
    assert {cid for cid, r in results.items() if r["kind"] == "fail"} == set(DRIFTING)
    assert results["HVG-MEM-001"]["level"] == "error"  # severity high
    assert results["HVG-MEM-002"]["level"] == "warning"  # severity medium
    assert results["HVG-MEM-004"]["kind"] == "pass"
    junit = ET.parse(reports / "hvguard-report.junit.xml").getroot()
    assert junit.get("failures") == "3" and junit.get("errors") == "0"
    failure = junit.find("testsuite/testcase[@classname='hvguard.HVG-MEM-003']/failure")
    assert failure.get("message").startswith("drift on localhost: ")
    assert "fix: ansible-playbook playbooks/site.yml --tags HVG-MEM-003 --limit localhost" in (
        failure.get("message")
    )
    assert any(float(c.get("time")) > 0 for c in junit.iter("testcase"))
    prom = parse_textfile((reports / "hvguard-report.prom").read_text())
    values = {lab["control"]: v for lab, v in prom["hvguard_control_status"]}
    assert {c: values.pop(c) for c in sandbox.MEMORY} == dict.fromkeys(DRIFTING, 1.0) | {
        "HVG-MEM-004": 0.0
    }
    assert set(values.values()) == {-1.0}  # the other roles' controls: switched off
    assert prom["hvguard_passed"] == [({}, 0.0)]
    # what to do, with the running domains from the host's facts
    mem1 = report["hosts"]["localhost"]["controls"]["HVG-MEM-001"]["action"]
    assert mem1["reboot"] is True and mem1["running_domains"] == ["tenant-a"]
    assert "tenant-a" in mem1["impact"] and "stop or migrate them first" in mem1["impact"]
    assert report["hosts"]["localhost"]["running_domains"] == ["tenant-a"]
    # no controller temp path stands in for a file the host has (bug 5)
    text = (reports / "hvguard-report.json").read_text()
    assert "ansible-tmp" not in text and "/.ansible/tmp" not in text
    assert "Check mode: every audited task ran in check mode" in first.stdout

    # 2. waivers in the inventory: waived, exit 0
    waivers(box, dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30))
    second = sandbox.run(box)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    report = latest(box)
    assert statuses(report) == dict.fromkeys(DRIFTING, "waived") | {"HVG-MEM-004": "compliant"}
    cell = report["hosts"]["localhost"]["controls"]["HVG-MEM-003"]
    assert cell["waiver"]["justification"] == "pipeline test HVG-MEM-003"
    assert cell["waiver"]["source"] == str(box / "inventory" / "hvguard_waivers.yml")
    assert report["run"]["waivers"] == [cell["waiver"]["source"]]
    assert report["summary"]["passed"] is True
    sarif = check_sarif((reports / "hvguard-report.sarif").read_text())
    suppressed = [r for r in sarif["runs"][0]["results"] if r.get("suppressions")]
    assert len(suppressed) == 3

    # 3. the waivers expired: drift again, exit 10, with the note
    waivers(box, dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    third = sandbox.run(box)
    assert third.returncode == 10, (third.stdout + third.stderr)[-3000:]
    report = latest(box)
    assert statuses(report) == dict.fromkeys(DRIFTING, "drift") | {"HVG-MEM-004": "compliant"}
    assert report["hosts"]["localhost"]["controls"]["HVG-MEM-002"]["waiver"]["expired"] is True
    assert "(waiver expired)" in (reports / "hvguard-report.md").read_text()

    # 4. run history and comparison
    runs = sorted((reports / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    ids = [p.name for p in runs]
    assert len(ids) == 3 and (reports / "latest").readlink() == Path("runs") / ids[2]
    assert [json.loads((p / "hvguard-report.json").read_text())["summary"]["verdict"]
            for p in runs] == ["drift", "compliant", "drift"]  # fmt: skip
    waived = compare(box, ids[0], ids[1])
    assert waived.returncode == 0
    assert waived.stdout.splitlines()[0] == (
        "## hvguard audit: 0 new drift, 0 fixed, 3 waived, 0 still failing"
    )
    expired = compare(box, ids[1], ids[2])
    assert expired.returncode == 1
    assert expired.stdout.splitlines()[0] == (
        "## hvguard audit: 3 new drift, 0 fixed, 0 waived, 0 still failing"
    )
    assert (
        "| HVG-MEM-001 | Kernel zeroes freed pages (init_on_free=1) | localhost | waived | drift |"
        in (expired.stdout)
    )

    assert sandbox.tree(box) == before, "the audits changed the sandbox"
