# SPDX-License-Identifier: Apache-2.0
"""Issue 10 "what users act on": waivers, fix advice, run history and comparison, SARIF
2.1.0, the Prometheus textfile, JUnit durations and the check-mode statement."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml
from markupsafe import escape
from test_report_callback import CATALOGUE, M1, M2, run_meta, schema

import hvguard_reporting as hr
from hvguard_reporting import waivers as wv
from hvguard_reporting.advice import action, impact

TODAY = dt.date(2026, 12, 1)


def waiver(control: str = M1, hosts=("hv1",), expires: str = "2027-01-31", **kw) -> dict:
    return {"control": control, "hosts": list(hosts), "justification": "legacy BIOS",
            "approver": "jane", "expires": expires, **kw}  # fmt: skip


def drift_report(waivers=(), groups=None, domains=None) -> dict:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p", {M1, M2})
    agg.groups.update(groups or {})
    agg.domains.update(domains or {})
    agg.record("hv1", "HVG-MEM-001 | drop-in", [M1], "ok", {"changed": True}, True, duration=1.5)
    agg.record("hv1", "HVG-MEM-002 | ksm", [M2], "failed", {"msg": "boom"}, True)
    agg.record("hv2", "HVG-MEM-001 | drop-in", [M1], "ok", {"changed": True}, True)
    agg.record("hv2", "HVG-MEM-002 | ksm", [M2], "ok", {}, True)
    parsed, warnings = wv.parse({"waivers": list(waivers)}, "inv/hvguard_waivers.yml")
    assert not warnings
    report = hr.build_report(agg, run_meta(id="r1"), parsed, today=TODAY)
    jsonschema.validate(json.loads(hr.render_json(report)), schema())
    return report


def status(report: dict, host: str, cid: str) -> str:
    return report["hosts"][host]["controls"][cid]["status"]


# -- waivers --------------------------------------------------------------------------


def test_an_active_waiver_turns_drift_into_waived_with_its_reason() -> None:
    report = drift_report([waiver(hosts=["hv*"]), waiver(control=M2, hosts=["hv1"])])
    assert status(report, "hv1", M1) == status(report, "hv2", M1) == "waived"
    cell = report["hosts"]["hv1"]["controls"][M1]
    assert cell["waiver"] == {"justification": "legacy BIOS", "approver": "jane",
                              "expires": "2027-01-31", "expired": False,
                              "source": "inv/hvguard_waivers.yml"}  # fmt: skip
    assert "action" not in cell
    # an error is never waived: nothing was evaluated that a waiver could accept
    assert status(report, "hv1", M2) == "error"
    assert report["summary"]["by_status"]["waived"] == 2


def test_waived_drift_passes_the_gate() -> None:
    report = drift_report([waiver(hosts=["all"])])  # group names match too
    assert report["summary"]["passed"] is False  # hv1's error remains
    report = drift_report([waiver(hosts=["hv1", "hv2"])])
    assert report["summary"]["verdict"] == "error"
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p", {M1})
    agg.record("hv1", "t", [M1], "ok", {"changed": True}, True)
    parsed, _ = wv.parse({"waivers": [waiver()]}, "w.yml")
    report = hr.build_report(agg, run_meta(), parsed, today=TODAY)
    assert report["summary"]["passed"] is True
    assert report["summary"]["verdict"] == "compliant"
    assert hr.render_console(report)[0].endswith("PASSED, 1 hosts")


def test_an_expired_waiver_is_drift_again_with_a_note() -> None:
    report = drift_report([waiver(expires="2026-11-30")])
    assert status(report, "hv1", M1) == "drift"
    cell = report["hosts"]["hv1"]["controls"][M1]
    assert cell["waiver"]["expired"] is True
    assert report["summary"]["passed"] is False
    # valid through its last day
    assert status(drift_report([waiver(expires="2026-12-01")]), "hv1", M1) == "waived"
    md = hr.render_markdown(report)
    assert "| HVG-MEM-001 | hv1 | drift (waiver expired) | 2026-11-30 | jane | legacy BIOS |" in md
    assert "waiver EXPIRED on 2026-11-30 by jane" in md
    junit = ET.fromstring(hr.render_junit(report))
    failure = junit.find("testsuite/testcase[@name='hv1']/failure")
    assert "waiver EXPIRED on 2026-11-30" in failure.text


def test_waivers_match_groups_and_prefer_the_active_one() -> None:
    report = drift_report([waiver(hosts=["legacy"], expires="2026-01-01"),
                           waiver(hosts=["legacy"], expires="2027-06-30")],
                          groups={"hv2": ["all", "legacy"]})  # fmt: skip
    assert status(report, "hv2", M1) == "waived"
    assert status(report, "hv1", M1) == "drift"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"control": M1, "hosts": ["x"]}, "lacks justification, approver, expires"),
        (waiver(expires="next year"), "expires is no date"),
        (waiver(control="MEM-1"), "is no control ID"),
        ("just a string", "is not a mapping"),
    ],
)
def test_bad_waivers_are_refused_with_a_warning(entry, message) -> None:
    found, warnings = wv.parse({"waivers": [entry]}, "w.yml")
    assert found == []
    assert len(warnings) == 1 and message in warnings[0]


def test_waiver_file_from_the_inventory(tmp_path) -> None:
    inv = tmp_path / "inventories" / "prod"
    inv.mkdir(parents=True)
    (inv / "hosts.yml").write_text("all: {}\n")
    (inv / wv.WAIVER_FILE).write_text(yaml.safe_dump({"waivers": [waiver()]}))
    files = wv.inventory_files([str(inv / "hosts.yml"), str(inv), "localhost,"])
    assert files == [inv / wv.WAIVER_FILE]
    found, warnings = wv.load(files)
    assert not warnings and found[0].expires == dt.date(2027, 1, 31)
    assert wv.load([tmp_path / "missing.yml"]) == ([], [])


# -- what to do -----------------------------------------------------------------------


def test_every_failing_cell_says_what_to_do() -> None:
    report = drift_report(domains={"hv1": ["tenant-a", "tenant-b"], "hv2": []})
    act = report["hosts"]["hv1"]["controls"][M1]["action"]
    assert act["command"] == "ansible-playbook playbooks/site.yml --tags HVG-MEM-001 --limit hv1"
    assert act["verify"] == "ansible-playbook playbooks/audit.yml --tags HVG-MEM-001 --limit hv1"
    assert act["reboot"] is True and act["disruption"] == "medium"
    assert act["running_domains"] == ["tenant-a", "tenant-b"]
    assert "reboot" in act["impact"] and "tenant-a, tenant-b" in act["impact"]
    err = report["hosts"]["hv1"]["controls"][M2]["action"]
    assert err["first"].startswith("fix what made the control fail")
    assert "running domains keep running" in err["impact"]
    assert "no running domains" in report["hosts"]["hv2"]["controls"][M1]["action"]["impact"]
    assert "action" not in report["hosts"]["hv2"]["controls"][M2]  # compliant
    page = hr.render_html(report)
    assert page.count("<div class='act'><b>fix:</b>") == 3
    assert "--tags HVG-MEM-001 --limit hv1</code>" in page
    md = hr.render_markdown(report)
    assert "- fix: `ansible-playbook playbooks/site.yml --tags HVG-MEM-001 --limit hv2`" in md


def test_unknown_domains_and_quoted_hosts() -> None:
    act = action(M1, CATALOGUE[M1], "hv 1;rm", "drift", None)
    assert act["command"].endswith("--limit 'hv 1;rm'")
    assert "running domains unknown" in act["impact"]


def test_rationale_verification_and_references_in_html_and_markdown() -> None:
    catalogue = hr.load_catalogue(hr.default_catalogue_path())["controls"]
    agg = hr.Aggregator(catalogue)
    agg.start_play("p", {"HVG-MEM-003"})
    agg.record("hv1", "t", ["HVG-MEM-003"], "ok", {"changed": True}, True)
    report = hr.build_report(agg, run_meta())
    meta = report["controls"]["HVG-MEM-003"]
    assert meta["rationale"].startswith("A crashing QEMU process writes a core file")
    assert meta["verification"].startswith("qemu.conf sets dump_guest_core = 0")
    page = hr.render_html(report)
    assert escape(meta["rationale"]) in page and escape(meta["verification"]) in page
    assert "element=SC-4'>SC-4</a>" in page
    md = hr.render_markdown(report)
    assert f"Why: {meta['rationale']}" in md and "References: nist_800_53: SC-4, CM-6" in md


def test_every_format_states_the_check_mode_guarantee() -> None:
    report = drift_report()
    text = hr.text.GUARANTEE["check"]
    assert text in hr.render_html(report)
    assert f"_{text}_" in hr.render_markdown(report)
    assert hr.render_console(report)[1] == text
    sarif = json.loads(hr.render_sarif(report))
    assert sarif["runs"][0]["invocations"][0]["properties"]["guarantee"] == text
    apply = hr.build_report(hr.Aggregator(CATALOGUE), run_meta(check_mode=False))
    assert hr.render_console(apply)[1].startswith("Apply run")


def test_junit_durations_and_human_messages() -> None:
    junit = ET.fromstring(hr.render_junit(drift_report()))
    case = junit.find("testsuite/testcase[@name='hv1']")
    assert case.get("time") == "1.500"
    message = case.find("failure").get("message")
    assert message.startswith("drift on hv1: ")
    assert message.endswith(
        "fix: ansible-playbook playbooks/site.yml --tags HVG-MEM-001 --limit hv1"
    )


# -- SARIF 2.1.0 ----------------------------------------------------------------------

# The 2.1.0 essentials a consumer (GitHub code scanning, the SARIF viewer) relies on, from
# the OASIS standard: required properties and enumerations.
SARIF_ESSENTIALS = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string", "format": "uri"},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["tool", "results"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                    "type": "object", "required": ["name", "rules"],
                    "properties": {"rules": {"type": "array", "items": {
                        "type": "object", "required": ["id", "shortDescription"],
                        "properties": {
                            "shortDescription": {"type": "object", "required": ["text"]},
                            "defaultConfiguration": {"type": "object", "properties": {
                                "level": {"enum": ["none", "note", "warning", "error"]}}},
                        }}}}}}},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["ruleId", "message"],
                    "properties": {
                        "ruleId": {"type": "string"},
                        "ruleIndex": {"type": "integer", "minimum": 0},
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "kind": {"enum": ["notApplicable", "pass", "fail", "review", "open",
                                          "informational"]},
                        "message": {"type": "object", "required": ["text"]},
                        "locations": {"type": "array", "items": {"type": "object",
                            "properties": {"physicalLocation": {"type": "object",
                                "required": ["artifactLocation"], "properties": {
                                    "artifactLocation": {"type": "object", "required": ["uri"]},
                                    "region": {"type": "object", "properties": {
                                        "startLine": {"type": "integer", "minimum": 1}}}}}}}},
                        "suppressions": {"type": "array", "items": {
                            "type": "object", "required": ["kind"],
                            "properties": {"kind": {"enum": ["inSource", "external"]},
                                           "status": {"enum": ["accepted", "underReview",
                                                               "rejected"]}}}},
                    }}},
            }}},
    },
}  # fmt: skip


def check_sarif(text: str) -> dict:
    sarif = json.loads(text)
    jsonschema.validate(sarif, SARIF_ESSENTIALS)
    run = sarif["runs"][0]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"]
        # pass/notApplicable results carry level none (SARIF 3.27.10)
        assert (result["level"] == "none") is (result["kind"] != "fail")
    return sarif


def test_sarif_rules_results_and_levels() -> None:
    report = drift_report([waiver(hosts=["hv2"])])
    sarif = check_sarif(hr.render_sarif(report))
    run = sarif["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == [M1, M2]
    by = {(r["properties"]["host"], r["ruleId"]): r for r in run["results"]}
    assert len(by) == 4  # every host x control
    assert (by["hv1", M1]["kind"], by["hv1", M1]["level"]) == ("fail", "error")  # high
    assert (by["hv1", M2]["kind"], by["hv1", M2]["level"]) == ("fail", "warning")  # medium
    assert (by["hv2", M2]["kind"], by["hv2", M2]["level"]) == ("pass", "none")
    assert by["hv2", M1]["suppressions"][0]["kind"] == "external"
    assert "legacy BIOS" in by["hv2", M1]["suppressions"][0]["justification"]
    assert (
        "fix: ansible-playbook playbooks/site.yml --tags HVG-MEM-001 --limit hv1"
        in (by["hv1", M1]["message"]["text"])
    )
    assert by["hv1", M1]["partialFingerprints"] != by["hv2", M1]["partialFingerprints"]


def test_sarif_points_at_the_controls_catalogue_entry() -> None:
    catalogue = hr.load_catalogue(hr.default_catalogue_path())
    agg = hr.Aggregator(catalogue["controls"])
    agg.start_play("p", {"HVG-MEM-003"})
    agg.record("hv1", "t", ["HVG-MEM-003"], "ok", {"changed": True}, True)
    meta = run_meta(catalogue={"path": catalogue["path"], "schema_version": 1, "sha256": "x"})
    sarif = check_sarif(hr.render_sarif(hr.build_report(agg, meta)))
    location = sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    line = location["region"]["startLine"]
    lines = Path(catalogue["path"]).read_text().splitlines()
    assert lines[line - 1].strip() == "- id: HVG-MEM-003"
    assert location["artifactLocation"]["uri"] == "controls/catalogue.yml"


# -- Prometheus textfile ----------------------------------------------------------------

METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+]+|NaN|[+-]Inf)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def parse_textfile(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The text exposition format, strictly: HELP/TYPE comments, then samples."""
    assert text.endswith("\n")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("gauge", "counter", "untyped"), line
            typed.add(name)
            continue
        match = METRIC.match(line)
        assert match, f"not a sample line: {line!r}"
        name, _, labels, value = match.groups()
        assert name in typed, f"{name} has no TYPE"
        parsed = {}
        rest = labels or ""
        while rest:
            label = LABEL.match(rest)
            assert label, f"bad labels in {line!r}"
            parsed[label.group(1)] = label.group(2)
            rest = rest[label.end() :]
        samples.setdefault(name, []).append((parsed, float(value)))
    return samples


def test_prometheus_textfile_parses_with_one_sample_per_cell() -> None:
    report = drift_report([waiver(hosts=["hv2"])])
    samples = parse_textfile(hr.render_prometheus(report))
    status = {(lab["host"], lab["control"]): v for lab, v in samples["hvguard_control_status"]}
    assert status == {("hv1", M1): 1, ("hv1", M2): 2, ("hv2", M1): 3, ("hv2", M2): 0}
    severities = {lab["severity"] for lab, _ in samples["hvguard_control_status"]}
    assert severities == {"high", "medium"}
    assert samples["hvguard_passed"] == [({}, 0.0)]
    cells = {lab["status"]: v for lab, v in samples["hvguard_cells"]}
    assert cells["waived"] == 1 and cells["error"] == 1
    assert not math.isnan(samples["hvguard_report_timestamp_seconds"][0][1])


def test_prometheus_labels_are_escaped() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p", {M1})
    agg.record('h"1\\x\nz', "t", [M1], "ok", {}, True)
    samples = parse_textfile(hr.render_prometheus(hr.build_report(agg, run_meta())))
    assert samples["hvguard_control_status"][0][0]["host"] == 'h\\"1\\\\x\\nz'


# -- run history and comparison --------------------------------------------------------


def test_each_run_has_its_directory_and_latest_points_at_the_newest(tmp_path) -> None:
    out = tmp_path / "reports"
    first = drift_report()
    first["run"]["id"] = "run-1"
    hr.write_reports(first, out, ["json", "prom"])
    second = drift_report([waiver(hosts=["hv*"])])
    second["run"]["id"] = "run-2"
    paths = hr.write_reports(second, out, ["json", "prom"])
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["run-1", "run-2"]
    assert (out / "latest").is_symlink() and (out / "latest").readlink() == Path("runs/run-2")
    assert json.loads((out / "latest" / "hvguard-report.json").read_text())["run"]["id"] == "run-2"
    old = json.loads((out / "runs" / "run-1" / "hvguard-report.json").read_text())
    assert old["run"]["id"] == "run-1"
    # the top-level files are the newest run's, regular files (CI artifact globs)
    assert [p.name for p in paths] == ["hvguard-report.json", "hvguard-report.prom"]
    assert all(p.is_file() and not p.is_symlink() for p in paths)
    assert json.loads(paths[0].read_text())["run"]["id"] == "run-2"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_compare_two_runs_for_a_merge_request(tmp_path) -> None:
    old = drift_report([waiver(control=M1, hosts=["hv2"])])  # hv1 M1 drift, hv1 M2 error
    new = drift_report([waiver(control=M1, hosts=["hv1"])])  # hv2 M1 drift, hv1 M2 error
    diff = hr.compare(old, new)
    key = [(r["host"], r["control"], r["old"], r["new"]) for r in diff["new"]]
    assert key == [("hv2", M1, "waived", "drift")]
    assert diff["fixed"] == []  # hv1's drift is waived now, not fixed
    assert [(r["host"], r["control"]) for r in diff["waived"]] == [("hv1", M1)]
    assert [(r["host"], r["control"]) for r in diff["still"]] == [("hv1", M2)]
    md = hr.render_compare(old, new)
    assert md.splitlines()[0] == (
        "## hvguard audit: 1 new drift, 0 fixed, 1 waived, 1 still failing"
    )
    assert "| HVG-MEM-001 | Kernel zeroes freed pages | hv2 | waived | drift |" in md
    # the CLI reads reports or run directories and exits 1 on new drift
    import subprocess
    import sys

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "hvguard-report.json").write_text(json.dumps(old))
    (tmp_path / "b.json").write_text(json.dumps(new))
    tool = Path(__file__).resolve().parents[2] / "tools" / "hvguard_compare.py"
    args = [sys.executable, str(tool), str(tmp_path / "a"), str(tmp_path / "b.json")]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == md
    same = subprocess.run([sys.executable, str(tool), str(tmp_path / "b.json"),
                           str(tmp_path / "b.json")], capture_output=True, text=True)  # fmt: skip
    assert same.returncode == 0 and "0 new drift, 0 fixed, 0 waived, 2 still failing" in same.stdout


def test_a_newly_waived_cell_is_not_fixed() -> None:
    diff = hr.compare(drift_report(), drift_report([waiver(hosts=["hv1"])]))
    assert [(r["host"], r["control"], r["new"]) for r in diff["waived"]] == [("hv1", M1, "waived")]
    assert diff["fixed"] == []


def test_a_host_left_out_is_not_fixed() -> None:
    old = drift_report()
    new = json.loads(json.dumps(old))
    del new["hosts"]["hv1"]
    diff = hr.compare(old, new)
    assert diff["fixed"] == [] and diff["new"] == []


@pytest.mark.parametrize(
    ("domains", "want"),
    [
        ([], "no reboot; disruption medium: nothing it could affect runs (no running domains)"),
        (["a"], "no reboot; disruption medium: may affect the 1 running domain(s): a"),
        (None, "no reboot; disruption medium: may affect the running domains unknown "
               "(no hvguard facts in this run)"),
    ],
)  # fmt: skip
def test_impact_of_a_disruptive_control_reads_right(domains: list[str] | None, want: str) -> None:
    assert impact({"disruption": "medium"}, domains) == want
