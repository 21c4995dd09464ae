# SPDX-License-Identifier: Apache-2.0
"""hvguard_report callback: aggregation rules, renderers, and a real ansible-playbook run."""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import os
import re
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from callback_plugins import hvguard_report as hr

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "report"
ANSIBLE_PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"

CATALOGUE = {
    "HVG-MEM-001": {
        "id": "HVG-MEM-001",
        "title": "Kernel zeroes freed pages",
        "area": "memory",
        "role": "hvguard_memory",
        "variable": "hvguard_memory_init_on_free_enabled",
        "severity": "high",
        "disruption": "medium",
        "reboot": True,
        "references": {"nist_800_53": ["SC-4"], "disa_vmm_srg": [], "nist_800_125a": []},
    },
    "HVG-MEM-002": {
        "id": "HVG-MEM-002",
        "title": "KSM off",
        "area": "memory",
        "role": "hvguard_memory",
        "variable": "hvguard_memory_ksm_enabled",
        "severity": "medium",
        "disruption": "low",
        "reboot": False,
        "references": {"nist_800_53": ["SC-4"]},
    },
    "HVG-MIG-001": {
        "id": "HVG-MIG-001",
        "title": "PKI deployed",
        "area": "migration",
        "role": "hvguard_migration_tls",
        "variable": "hvguard_migration_tls_pki_enabled",
        "severity": "high",
        "disruption": "low",
        "reboot": False,
        "references": {},
    },
}
M1, M2, G1 = "HVG-MEM-001", "HVG-MEM-002", "HVG-MIG-001"
TOGGLE = CATALOGUE[M1]["variable"]


def schema() -> dict:
    """The JSON Schema embedded in docs/report-schema.md."""
    text = (ROOT / "docs" / "report-schema.md").read_text()
    match = re.search(r"<!-- report-json-schema -->\s*```json\n(.*?)\n```", text, re.S)
    assert match, "docs/report-schema.md lost its JSON Schema block"
    return json.loads(match.group(1))


def run_meta(**kw) -> dict:
    meta = {
        "started": "2026-01-01T00:00:00Z",
        "check_mode": True,
        "diff_mode": False,
        "ansible_version": "2.19.14",
        "playbooks": ["audit.yml"],
        "catalogue": {"path": "c.yml", "schema_version": 1, "sha256": "ab"},
        "complete": True,
        "warnings": [],
    }
    meta.update(kw)
    return meta


def agg_with(*records, cap: int = hr.DEFAULT_EVIDENCE_MAX) -> hr.Aggregator:
    agg = hr.Aggregator(CATALOGUE, evidence_max=cap)
    agg.start_play("play", {M1, M2})
    for host, tags, outcome, result, check in records:
        agg.record(host, "task", tags, outcome, result, check)
    return agg


def status_of(agg: hr.Aggregator, host: str, cid: str) -> str:
    return agg.final_cells()[host][cid]["status"]


# -- classification -------------------------------------------------------------------


def test_unchanged_ok_is_compliant() -> None:
    status, entries = hr.classify("ok", "t", {"changed": False}, True, TOGGLE)
    assert status == "compliant"
    assert entries == [{"task": "t", "result": "ok", "status": "compliant"}]


def test_changed_in_check_mode_is_drift_with_rendered_diff() -> None:
    result = {
        "changed": True,
        "diff": [{"before": "a = 1\n", "after": "a = 0\n", "before_header": "/etc/x"}],
    }
    status, entries = hr.classify("ok", "t", result, True, TOGGLE)
    assert status == "drift"
    assert "-a = 1\n+a = 0" in entries[0]["diff"]
    assert entries[0]["diff"].startswith("--- /etc/x")


def test_changed_outside_check_mode_is_remediated() -> None:
    status, entries = hr.classify("ok", "t", {"changed": True}, False, TOGGLE)
    assert status == "remediated"
    assert entries[0]["result"] == "changed"


def test_changed_without_diff_says_how_to_get_one() -> None:
    _, entries = hr.classify("ok", "t", {"changed": True, "diff": []}, True, TOGGLE)
    assert "diff mode" in entries[0]["msg"]


def test_failed_is_error_with_msg_and_stderr() -> None:
    result = {"msg": "non-zero return code", "stderr": "boom", "rc": 3}
    status, entries = hr.classify("failed", "t", result, True, TOGGLE)
    assert status == "error"
    assert entries[0] == {
        "task": "t",
        "result": "failed",
        "status": "error",
        "msg": "non-zero return code",
        "stderr": "boom",
        "rc": 3,
    }


def test_ignored_failure_is_not_an_error() -> None:
    status, entries = hr.classify("failed_ignored", "t", {"msg": "meh"}, True, TOGGLE)
    assert status == "compliant"
    assert "ignore" in entries[0]["msg"]


def test_unreachable_is_error() -> None:
    status, entries = hr.classify("unreachable", "t", {"msg": "ssh: timeout"}, True, TOGGLE)
    assert (status, entries[0]["msg"]) == ("error", "ssh: timeout")


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (TOGGLE, "disabled"),
        (f"not {TOGGLE}", "disabled"),
        (f"{TOGGLE} | bool", "disabled"),
        (f"{TOGGLE}_extra", "not_applicable"),  # a longer name is another variable
        (f"other.{TOGGLE}", "not_applicable"),  # an attribute of something else
        ("ansible_os_family == 'RedHat'", "not_applicable"),
    ],
)
def test_skip_is_disabled_only_when_the_toggle_is_the_false_condition(condition, expected) -> None:
    result = {"skip_reason": "Conditional result was False", "false_condition": condition}
    status, entries = hr.classify("skipped", "t", result, True, TOGGLE)
    assert status == expected
    assert entries[0]["false_condition"] == condition


def test_skip_without_condition_is_not_applicable() -> None:
    result = {"msg": "Command would have run if not in check mode"}
    status, entries = hr.classify("skipped", "t", result, True, TOGGLE)
    assert status == "not_applicable"
    assert "would have run" in entries[0]["msg"]


def test_loop_all_items_skipped_by_toggle_is_disabled() -> None:
    items = [{"skipped": True, "false_condition": TOGGLE, "item": i} for i in (1, 2)]
    status, _ = hr.classify(
        "skipped", "t", {"results": items, "msg": "All items skipped"}, True, TOGGLE
    )
    assert status == "disabled"


def test_finding_statuses() -> None:
    drift = {"changed": False, "hvguard_status": "drift", "msg": "expires", "evidence": [1]}
    assert hr.classify("ok", "t", drift, True)[0] == "drift"
    assert hr.classify("ok", "t", drift, False)[0] == "drift"  # a finding never "remediates"
    assert hr.classify("failed", "t", drift | {"msg": "drift: x"}, True)[0] == "drift"
    status, entries = hr.classify("ok", "t", {"hvguard_status": "compliant", "msg": "ok"}, True)
    assert status == "compliant"
    assert entries[0]["result"] == "finding"
    assert hr.classify("ok", "t", drift, True)[1][0]["evidence"] == [1]


def test_finding_in_a_loop_drifts_per_item() -> None:
    items = [
        {"hvguard_status": "compliant", "msg": "ok", "item": "a", "_ansible_item_label": "a"},
        {"hvguard_status": "drift", "msg": "expires", "evidence": {"d": 3}, "item": "b"},
    ]
    status, entries = hr.classify("ok", "t", {"results": items, "changed": False}, True)
    assert status == "drift"
    assert entries == [
        {
            "task": "t",
            "result": "finding",
            "status": "drift",
            "item": "b",
            "msg": "expires",
            "evidence": {"d": 3},
        }
    ]
    status, entries = hr.classify("ok", "t", {"results": items[:1]}, True)
    assert (status, entries[0]["result"], entries[0]["item"]) == ("compliant", "finding", "a")


@pytest.mark.parametrize("drifting", [("a", "c"), ("a", "b", "c")])
def test_every_drifting_item_of_a_findings_loop_is_evidence(drifting) -> None:
    items = [
        {
            "hvguard_status": "drift" if name in drifting else "compliant",
            "msg": f"msg {name}",
            "evidence": {"n": name},
            "item": name,
        }
        for name in ("a", "b", "c")
    ]
    status, entries = hr.classify("ok", "t", {"results": items, "changed": False}, True)
    assert status == "drift"
    assert [(e["item"], e["msg"], e["evidence"]) for e in entries] == [
        (n, f"msg {n}", {"n": n}) for n in drifting
    ]
    assert {e["status"] for e in entries} == {"drift"}


def test_every_failed_item_of_a_loop_is_evidence() -> None:
    items = [{"failed": True, "item": i, "msg": f"bad {i}"} for i in (1, 2, 3)]
    status, entries = hr.classify("failed", "t", {"results": items, "msg": "loop"}, True)
    assert status == "error"
    assert [(e["item"], e["msg"]) for e in entries] == [(1, "bad 1"), (2, "bad 2"), (3, "bad 3")]


# Every classification rule, one case each: (outcome, result, check_mode) -> status.
DRIFT_FINDING = {"hvguard_status": "drift", "msg": "m"}
CLASSIFY_CASES = [
    ("ok", {}, True, "compliant"),
    ("ok", {}, False, "compliant"),
    ("ok", {"changed": True}, True, "drift"),
    ("ok", {"changed": True}, False, "remediated"),
    # a loop whose result does not repeat its items' changed flag
    ("ok", {"results": [{"changed": False}, {"changed": True}]}, True, "drift"),
    ("ok", {"results": [{"changed": False}, {"changed": True}]}, False, "remediated"),
    ("ok", {"results": [{"changed": False}, {"changed": False}]}, True, "compliant"),
    ("failed", {"msg": "x"}, True, "error"),
    ("failed", {"msg": "x"}, False, "error"),
    ("failed", {"msg": "x", "changed": True}, True, "error"),  # failed beats changed
    ("failed_ignored", {"msg": "x"}, True, "compliant"),
    ("failed_ignored", {"msg": "x"}, False, "compliant"),
    ("failed_ignored", {"msg": "x", "changed": True}, True, "drift"),
    ("failed_ignored", {"msg": "x", "changed": True}, False, "remediated"),
    ("unreachable", {"msg": "x"}, True, "error"),
    ("unreachable", {"msg": "x"}, False, "error"),
    ("unreachable", DRIFT_FINDING, True, "error"),  # a dead host reports no finding
    ("skipped", {"false_condition": TOGGLE}, True, "disabled"),
    ("skipped", {"false_condition": TOGGLE, "changed": True}, True, "disabled"),
    ("skipped", {"false_condition": "x == 1"}, False, "not_applicable"),
    ("skipped", {}, True, "not_applicable"),
    ("ok", DRIFT_FINDING, True, "drift"),
    ("ok", DRIFT_FINDING, False, "drift"),
    ("failed", DRIFT_FINDING, True, "drift"),  # fail_on_drift
    ("failed_ignored", DRIFT_FINDING, True, "drift"),
    ("ok", {"hvguard_status": "compliant"}, True, "compliant"),
    ("ok", {"hvguard_status": "compliant", "changed": True}, False, "remediated"),
    ("failed", {"hvguard_status": "compliant", "msg": "x"}, True, "error"),
]


@pytest.mark.parametrize(("outcome", "result", "check", "expected"), CLASSIFY_CASES)
def test_classification_rules(outcome, result, check, expected) -> None:
    status, entries = hr.classify(outcome, "t", result, check, TOGGLE)
    assert status == expected
    assert entries and {e["status"] for e in entries} == {expected}


def test_classification_result_kinds() -> None:
    kinds = {
        ("ok", "{}"): "ok",
        ("ok", '{"changed": true}'): "changed",
        ("failed", "{}"): "failed",
        ("failed_ignored", "{}"): "ok",
        ("unreachable", "{}"): "unreachable",
        ("skipped", "{}"): "skipped",
        ("ok", '{"hvguard_status": "drift"}'): "finding",
        ("ok", '{"hvguard_status": "compliant"}'): "finding",
    }
    for (outcome, result), kind in kinds.items():
        entries = hr.classify(outcome, "t", json.loads(result), True, TOGGLE)[1]
        assert [e["result"] for e in entries] == [kind], (outcome, result)


def test_a_loop_skipped_partly_by_the_toggle_is_disabled() -> None:
    items = [
        {"skipped": True, "false_condition": "other == 1", "item": 1},
        {"skipped": True, "false_condition": TOGGLE, "item": 2},
    ]
    result = {"results": items, "msg": "All items skipped"}
    status, entries = hr.classify("skipped", "t", result, True, TOGGLE)
    assert status == "disabled"
    assert entries[0]["false_condition"] == "other == 1"


def test_render_diff_variants() -> None:
    assert hr.render_diff([]) == ""
    assert hr.render_diff({"prepared": "PREPARED"}) == "PREPARED"
    text = hr.render_diff({"before": {"state": "absent"}, "after": {"state": "file"}})
    assert '-  "state": "absent"' in text or '- "state": "absent"' in text
    assert '"state": "file"' in text
    both = hr.render_diff([{"before": "a\n", "after": "b\n"}, {"before": "c\n", "after": "d\n"}])
    assert "-a" in both and "+b" in both and "-c" in both and "+d" in both


ENGINE = ROOT / "roles" / "hvguard_scrub" / "files" / "hvguard-scrub"


def test_installed_file_evidence_is_its_identity_not_its_text() -> None:
    """HVG-STO-001 (issue 10, bug 5): the engine's copy task is evidence by path, checksum and
    size, not by a diff of its whole source."""
    new = ENGINE.read_text()
    old = new.replace("\n", "\n# an older engine\n", 1)
    dest = "/usr/local/sbin/hvguard-scrub"
    copy = [{"before": old, "after": new, "before_header": dest, "after_header": str(ENGINE)}]
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p", {M1})
    agg.record("h", "HVG-STO-001 | engine", [M1], "ok", {"changed": True, "diff": copy}, True)
    report = hr.build_report(agg, run_meta())
    jsonschema.validate(json.loads(hr.render_json(report)), schema())
    text = report["hosts"]["h"]["controls"][M1]["evidence"][0]["diff"]
    sha = hashlib.sha256(ENGINE.read_bytes()).hexdigest()
    old_sha = hashlib.sha256(old.encode()).hexdigest()
    assert text == (
        f"installed file {dest} differs (no text diff for installed files)\n"
        f"  on the host: sha256 {old_sha}, {len(old.encode())} bytes\n"
        f"  this run:    sha256 {sha}, {ENGINE.stat().st_size} bytes"
    )
    engine_line = next(line for line in new.splitlines() if line.startswith("def "))
    for fmt, render in hr.RENDERERS.items():
        output = render(report)
        assert engine_line not in output
        # SARIF and Prometheus carry statuses and messages, not evidence
        assert (sha in output) is (fmt in ("json", "junit", "html", "md"))
    fresh = [{"before": "", "after": new, "before_header": dest, "after_header": str(ENGINE)}]
    assert "on the host: absent or empty" in hr.render_diff(fresh)


@pytest.mark.parametrize(
    ("path", "before", "summary"),
    [
        ("/etc/grub.d/40_custom", "#!/bin/sh\nexec tail -n +3 $0\n", False),  # config script
        ("/etc/hvguard-scrub.json", '{"a": 1}\n', False),
        ("/tmp/lab/qemu.conf", "a = 1\n", False),  # not an install directory, not a script
        ("/tmp/lab/tool", "#!/usr/bin/python3\nprint(1)\n", True),
        ("/usr/lib/x/data.bin", "a\n", True),
        ("/opt/x/lib.py", "a\n", True),
    ],
)
def test_only_config_files_get_a_text_diff(path, before, summary) -> None:
    text = hr.render_diff({"before": before, "after": before + "b\n", "before_header": path})
    assert text.startswith("installed file") is summary
    assert ("+b" in text) is not summary


def test_template_temp_paths_are_not_the_after_header() -> None:
    part = {
        "before": "a\n",
        "after": "b\n",
        "before_header": "/etc/hvguard-scrub.json",
        "after_header": "/root/.ansible/tmp/ansible-local-52x/tmpa7/hvguard-scrub.json.j2",
    }
    text = hr.render_diff([part])
    assert text.splitlines()[:2] == [
        "--- /etc/hvguard-scrub.json",
        "+++ /etc/hvguard-scrub.json (new)",
    ]


# -- aggregation ----------------------------------------------------------------------

OUTCOMES = {
    "error": ("failed", {"msg": "x"}, True),
    "drift": ("ok", {"changed": True}, True),
    "remediated": ("ok", {"changed": True}, False),
    "compliant": ("ok", {"changed": False}, True),
    "disabled": ("skipped", {"false_condition": TOGGLE}, True),
    "not_applicable": ("skipped", {"false_condition": "x == 1"}, True),
}


# The documented precedence, written out here so that a change in the code cannot pass.
# (``waived`` is no task result's status: a waiver turns a cell's drift into it.)
PRECEDENCE = ("error", "drift", "remediated", "compliant", "disabled", "not_applicable")


def test_status_order_is_the_documented_one() -> None:
    statuses = hr.STATUSES
    assert statuses == ("error", "drift", "waived", *PRECEDENCE[2:])


@pytest.mark.parametrize("pair", list(itertools.permutations(PRECEDENCE, 2)))
def test_precedence_is_independent_of_order(pair) -> None:
    records = []
    for status in pair:
        outcome, result, check = OUTCOMES[status]
        records.append(("h", [M1], outcome, result, check))
    agg = agg_with(*records)
    expected = min(pair, key=PRECEDENCE.index)
    assert status_of(agg, "h", M1) == expected
    assert agg.final_cells()["h"][M1]["results"] == 2


def test_any_result_that_ran_beats_disabled() -> None:
    agg = agg_with(
        ("h", [M1], "skipped", {"false_condition": TOGGLE}, True),
        ("h", [M1], "ok", {"changed": False}, True),
    )
    assert status_of(agg, "h", M1) == "compliant"


def test_loop_counts_once_with_item_evidence() -> None:
    items = [
        {"changed": False, "item": "a", "_ansible_item_label": "a"},
        {
            "changed": True,
            "item": "b",
            "_ansible_item_label": "b",
            "diff": {"before": "1\n", "after": "2\n"},
        },
        {"changed": True, "item": "c", "_ansible_item_label": "c"},
    ]
    agg = agg_with(("h", [M1], "ok", {"changed": True, "results": items}, True))
    cell = agg.final_cells()["h"][M1]
    assert cell["status"] == "drift"
    assert cell["results"] == 1
    assert [e["item"] for e in cell["evidence"]] == ["b", "c"]
    assert "+2" in cell["evidence"][0]["diff"]


def test_loop_with_a_failed_item_is_error_naming_the_item() -> None:
    items = [{"changed": False, "item": 1}, {"failed": True, "item": 2, "msg": "bad"}]
    agg = agg_with(("h", [M1], "failed", {"results": items}, True))
    cell = agg.final_cells()["h"][M1]
    assert cell["status"] == "error"
    assert cell["evidence"] == [
        {"task": "task", "result": "failed", "status": "error", "item": 2, "msg": "bad"}
    ]


def test_one_result_feeds_every_tagged_control_and_untagged_results_none() -> None:
    agg = agg_with(
        ("h", [M1, M2, "memory"], "ok", {"changed": True}, True),
        ("h", ["memory"], "ok", {"changed": True}, True),
    )
    cells = agg.final_cells()["h"]
    assert set(cells) == {M1, M2}
    assert cells[M1]["results"] == cells[M2]["results"] == 1


def test_unknown_ids_are_reported_once() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p", set())
    assert agg.record("h", "t", ["HVG-XYZ-999"], "ok", {}, True) == ["HVG-XYZ-999"]
    assert agg.record("h2", "t", ["HVG-XYZ-999", "hvg-lower-001"], "ok", {}, True) == []
    assert agg.final_cells() == {}


def test_evidence_cap_keeps_drift_over_compliant_and_notes_truncation() -> None:
    cap = 2048
    records = [("h", [M1], "ok", {"changed": False}, True)] * 60
    records.append(("h", [M1], "ok", {"changed": True, "msg": "the drift"}, True))
    cell = agg_with(*records, cap=cap).final_cells()["h"][M1]
    assert cell["status"] == "drift"
    assert cell["results"] == 61
    assert cell["evidence_truncated"] is True
    assert cell["evidence_omitted"] > 0
    assert any(e["status"] == "drift" and e["msg"] == "the drift" for e in cell["evidence"])
    assert len(json.dumps(cell["evidence"])) <= cap + 2 * len(cell["evidence"]) + 2


def test_oversized_diff_is_cut_to_the_cap() -> None:
    before = "".join(f"line {i}\n" for i in range(20000))
    result = {"changed": True, "diff": {"before": before, "after": ""}}
    cell = agg_with(("h", [M1], "ok", result, True), cap=4096).final_cells()["h"][M1]
    assert cell["status"] == "drift"
    assert cell["evidence_truncated"] is True
    assert cell["evidence"][0]["truncated"] is True
    assert "[... truncated" in cell["evidence"][0]["diff"]
    assert len(json.dumps(cell["evidence"][0])) <= 4096


def test_reboot_flag_last_write_wins_and_loop_items_count() -> None:
    agg = agg_with(
        ("a", [], "ok", {"ansible_facts": {"hvguard_reboot_required": True}}, True),
        (
            "b",
            [],
            "ok",
            {"results": [{"ansible_facts": {"hvguard_reboot_required": "True"}}]},
            True,
        ),
        ("c", [], "ok", {"ansible_facts": {"hvguard_reboot_required": True}}, True),
        ("c", [], "ok", {"ansible_facts": {"hvguard_reboot_required": False}}, True),
        ("d", [M1], "ok", {}, True),
    )
    report = hr.build_report(agg, run_meta())
    assert {h: report["hosts"][h]["reboot_required"] for h in "abcd"} == {
        "a": True,
        "b": True,
        "c": False,
        "d": None,
    }
    assert report["summary"]["reboot_required"] == ["a", "b"]


def test_host_failed_before_the_control_ran_is_error_for_missing_controls_only() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p1", {M1, M2})
    agg.record("bad", "t1", [M1], "ok", {}, True)
    agg.record("good", "t1", [M1], "ok", {}, True)
    agg.record("bad", "facts", [], "failed", {"msg": "no python"}, True, stops_host=True)
    agg.record("good", "t2", [M2], "ok", {}, True)
    agg.start_play("p2", {G1})
    agg.record("good", "t3", [G1], "ok", {}, True)
    cells = agg.final_cells()
    assert cells["bad"][M1]["status"] == "compliant"
    assert cells["bad"][M2]["status"] == "error"
    assert (
        "host failed before the control ran (facts): no python"
        in cells["bad"][M2]["evidence"][0]["msg"]
    )
    assert G1 not in cells["bad"]  # not in the play where the host failed
    assert set(cells["good"]) == {M1, M2, G1}


def test_host_stopped_in_an_earlier_play_errors_in_later_plays_it_targets() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("memory", {M1}, hosts=["bad", "good"])
    agg.record("bad", "facts", [], "failed", {"msg": "no python"}, True, stops_host=True)
    agg.record("good", "t", [M1], "ok", {}, True)
    agg.start_play("migration", {G1}, hosts=["bad", "good"])
    agg.record("good", "t", [G1], "ok", {}, True)
    agg.start_play("elsewhere", {M2}, hosts=["good"])
    agg.record("good", "t", [M2], "ok", {}, True)
    cells = agg.final_cells()
    assert cells["bad"][G1]["status"] == "error"
    assert "in an earlier play: no python" in cells["bad"][G1]["evidence"][0]["msg"]
    assert M2 not in cells["bad"]  # that play never targeted the host
    assert {c["status"] for c in cells["good"].values()} == {"compliant"}


def test_unreachable_host_gets_error_for_every_expected_control() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p1", {M1, M2})
    agg.record("dark", "facts", [], "unreachable", {"msg": "ssh"}, True, stops_host=True)
    cells = agg.final_cells()["dark"]
    assert {cid: c["status"] for cid, c in cells.items()} == {M1: "error", M2: "error"}


def test_failure_that_does_not_stop_the_host_fills_nothing() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p1", {M1, M2})
    agg.record("h", "rescued", [], "failed", {"msg": "x"}, True, stops_host=False)
    assert agg.final_cells() == {}


def test_stopped_host_without_expected_controls_is_not_listed() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("adhoc", set())
    agg.record("h", "ping", [], "unreachable", {"msg": "x"}, True, stops_host=True)
    assert agg.final_cells() == {}
    assert hr.build_report(agg, run_meta())["summary"]["hosts"] == 0


def test_dynamically_discovered_controls_are_expected() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p1", set())
    agg.expect([G1])
    agg.record("h", "boom", [], "failed", {"msg": "x"}, True, stops_host=True)
    assert agg.final_cells()["h"][G1]["status"] == "error"


@pytest.mark.parametrize(
    ("only", "skip", "expected"),
    [
        (("all",), (), {M1, M2}),
        ((M1,), (), {M1}),
        (("memory",), (M2,), {M1}),
        (("all",), ("memory",), set()),
        (("migration",), (), set()),
    ],
)
def test_expected_controls_follow_roles_and_tags(only, skip, expected) -> None:
    assert hr.expected_controls(CATALOGUE, ["hvguard_memory"], (), only, skip) == expected


def test_expected_controls_include_tagged_ids_outside_roles() -> None:
    assert hr.expected_controls(CATALOGUE, [], [G1, "HVG-NOPE-001"]) == {G1}


def test_rescue_detection_on_real_ansible_blocks() -> None:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook.play import Play
    from ansible.plugins.loader import init_plugin_loader
    from ansible.vars.manager import VariableManager

    init_plugin_loader()
    loader = DataLoader()
    variables = VariableManager(loader=loader, inventory=InventoryManager(loader, "localhost,"))
    dbg = {"ansible.builtin.debug": {"msg": "x"}}
    play = Play.load(
        {
            "hosts": "all",
            "tasks": [
                {"name": "plain", **dbg, "tags": [M1]},
                {
                    "block": [{"name": "inner", **dbg}, {"block": [{"name": "deep", **dbg}]}],
                    "rescue": [{"name": "in-rescue", **dbg}],
                    "always": [{"name": "in-always", **dbg}],
                },
                {"block": [{"name": "no-rescue", **dbg}], "always": [{"name": "always2", **dbg}]},
            ],
        },
        variable_manager=variables,
        loader=loader,
    )
    rescued = {t.get_name(): hr._will_be_rescued(t) for t in hr._walk_tasks(play.tasks)}
    assert rescued == {
        "plain": False,
        "inner": True,
        "deep": True,
        "in-rescue": False,
        "in-always": False,
        "no-rescue": False,
        "always2": False,
    }


def test_control_ids_split() -> None:
    assert hr.control_ids(["memory", M1, M1, "HVG-XX-1", "HVG-ZZZ-123", None], CATALOGUE) == (
        [M1],
        ["HVG-ZZZ-123"],
    )


# -- report and renderers -------------------------------------------------------------

EVIL = "<script>alert('x')</script> & ]]> \x00\x07 | ```"


def sample_report() -> dict:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p", {M1, M2, G1})
    diff = {"before": "dump_guest_core = 1\n", "after": f"dump_guest_core = 0\n# {EVIL}\n"}
    agg.record("hv1", "HVG-MEM-001 | drop-in", [M1], "ok", {"changed": True, "diff": diff}, True)
    agg.record("hv1", "HVG-MEM-002 | ksm", [M2], "ok", {"changed": False}, True)
    agg.record(
        "hv1",
        "HVG-MIG-001 | pki",
        [G1],
        "skipped",
        {"false_condition": CATALOGUE[G1]["variable"]},
        True,
    )
    agg.record("hv2", "HVG-MEM-001 | drop-in", [M1], "failed", {"msg": EVIL, "stderr": EVIL}, True)
    agg.record("hv2", "HVG-MEM-002 | ksm", [M2], "skipped", {"false_condition": "x"}, True)
    agg.record("hv3", "HVG-MEM-001 | drop-in", [M1], "ok", {"changed": True}, False)
    agg.record(
        "hv3",
        "HVG-MEM-002 | ksm",
        [M2],
        "ok",
        {"hvguard_status": "drift", "evidence": {"k": EVIL}},
        True,
    )
    return hr.build_report(agg, run_meta())


def test_report_validates_against_the_documented_schema() -> None:
    report = sample_report()
    jsonschema.validate(json.loads(hr.render_json(report)), schema())
    summary = report["summary"]
    assert summary["passed"] is False
    assert summary["by_status"] == {
        "error": 1,
        "drift": 2,
        "waived": 0,
        "remediated": 1,
        "compliant": 1,
        "disabled": 1,
        "not_applicable": 1,
    }
    assert summary["by_control"][M1] == {
        "error": 1,
        "drift": 1,
        "waived": 0,
        "remediated": 1,
        "compliant": 0,
        "disabled": 0,
        "not_applicable": 0,
    }
    assert summary["by_host"]["hv2"]["error"] == 1
    assert report["controls"][M1]["references"] == {
        "nist_800_53": ["SC-4"],
        "disa_vmm_srg": [],
        "nist_800_125a": [],
    }
    assert report["run"]["mode"] == "check"  # --check wins over per-result modes


def test_the_documented_example_matches_the_schema() -> None:
    text = (ROOT / "docs" / "report-schema.md").read_text()
    example = json.loads(
        re.search(r"Example \(abridged.*?```json\n(.*?)\n```", text, re.S).group(1)
    )
    jsonschema.validate(example, schema())
    counted = {s: 0 for s in hr.STATUSES}
    for host in example["hosts"].values():
        for cell in host["controls"].values():
            counted[cell["status"]] += 1
    assert example["summary"]["by_status"] == counted


def test_schema_rejects_a_wrong_status() -> None:
    report = json.loads(hr.render_json(sample_report()))
    report["hosts"]["hv1"]["controls"][M1]["status"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, schema())


def test_a_report_that_judged_nothing_validates_but_does_not_pass() -> None:
    """Issue 10: the controller guard refused every host, or none was reachable: 0 hosts."""
    agg = hr.Aggregator(CATALOGUE)
    report = hr.build_report(agg, run_meta(check_mode=False))
    jsonschema.validate(report, schema())
    assert report["summary"]["passed"] is False
    assert report["summary"]["verdict"] == "error"
    assert hr.render_console(report)[0] == (
        "hvguard compliance (apply run): FAILED (nothing judged), 0 hosts"
    )
    assert report["run"]["mode"] == "apply"
    for render in (hr.render_junit, hr.render_html, hr.render_markdown):
        assert render(report)


def test_run_mode_follows_the_plays_not_read_only_probes() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("audit", {M1}, check_mode=True)
    agg.record("h", "probe", [M1], "ok", {}, False)  # check_mode: false probe
    agg.record("h", "edit", [M1], "ok", {"changed": True}, True)
    agg.start_play("no results", set(), check_mode=False)
    assert hr.run_mode(agg, cli_check=False) == "check"
    # plays forcing check mode without --check: the report is an audit, drift is drift
    forced = hr.build_report(agg, run_meta(check_mode=False))
    assert forced["run"]["check_mode"] is True
    assert hr.render_console(forced)[0].startswith("hvguard compliance (check mode): FAILED")
    agg.start_play("apply", {M1}, check_mode=False)
    agg.record("h", "edit", [M1], "ok", {"changed": True}, False)
    assert hr.run_mode(agg, cli_check=False) == "mixed"
    assert hr.run_mode(agg, cli_check=True) == "check"
    assert hr.build_report(agg, run_meta(check_mode=False))["run"]["check_mode"] is False


def single_status_report(status: str) -> dict:
    """One host, one control whose only result gives ``status``."""
    outcome, result, check = OUTCOMES[status]
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p", {M1})
    agg.record("h", "task", [M1], outcome, result, check)
    report = hr.build_report(agg, run_meta(check_mode=check))
    assert report["hosts"]["h"]["controls"][M1]["status"] == status
    return report


@pytest.mark.parametrize("status", PRECEDENCE)
def test_verdict_of_a_single_status_in_every_format(status) -> None:
    """Drift alone fails the run (issue 14): in JSON, console, Markdown, HTML and JUnit."""
    report = single_status_report(status)
    failing = status in ("error", "drift")
    verdict = "FAILED" if failing else "PASSED"
    assert json.loads(hr.render_json(report))["summary"]["passed"] is (not failing)
    mode = "check mode" if report["run"]["check_mode"] else "apply run"
    assert hr.render_console(report)[0] == f"hvguard compliance ({mode}): {verdict}, 1 hosts"
    assert hr.render_markdown(report).splitlines()[0] == f"## hvguard compliance: {verdict}"
    page = hr.render_html(report)
    badge = "s-error" if failing else "s-compliant"
    assert f"<div class='counts'><span class='{badge}'><b>{verdict}</b>" in page
    assert ("<tr class='host failing'>" in page) is failing
    root = ET.fromstring(hr.render_junit(report))
    counters = {k: int(root.get(k)) for k in ("failures", "errors", "skipped")}
    expected = {"failures": 0, "errors": 0, "skipped": 0}
    key = {"error": "errors", "drift": "failures", "disabled": "skipped"}.get(status)
    key = "skipped" if status == "not_applicable" else key
    if key:
        expected[key] = 1
    assert counters == expected
    details = "<details><summary>" in hr.render_markdown(report)
    assert details is failing


def test_drift_beside_compliant_hosts_fails_the_run() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p", {M1, M2})
    for host in ("a", "b", "c"):
        agg.record(host, "t", [M1, M2], "ok", {}, True)
    agg.record("b", "edit", [M2], "ok", {"changed": True}, True)
    report = hr.build_report(agg, run_meta())
    assert report["summary"]["by_status"]["drift"] == 1
    assert report["summary"]["by_status"]["error"] == 0
    assert report["summary"]["passed"] is False
    assert "FAILED" in hr.render_console(report)[0]


def test_cells_are_per_host_and_per_control() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p", {M1, M2, G1})
    agg.record("h1", "t", [M1], "ok", {"changed": True}, True)
    agg.record("h2", "t", [M1], "ok", {}, True)
    agg.record("h1", "t", [M2], "failed", {"msg": "x"}, True)
    agg.record("h1", "t", [G1], "ok", {"changed": True}, False)
    # one result of a task tagged with two controls is the only result of both on h2
    agg.record("h2", "t", [M2, G1], "skipped", {"false_condition": TOGGLE}, True)
    cells = agg.final_cells()
    statuses = {h: {c: v["status"] for c, v in cs.items()} for h, cs in cells.items()}
    assert statuses == {
        "h1": {M1: "drift", M2: "error", G1: "remediated"},
        "h2": {M1: "compliant", M2: "not_applicable", G1: "not_applicable"},
    }
    summary = hr.build_report(agg, run_meta())["summary"]
    zero = dict.fromkeys(hr.STATUSES, 0)
    assert summary["by_host"]["h1"] == zero | {"drift": 1, "error": 1, "remediated": 1}
    assert summary["by_host"]["h2"] == zero | {"compliant": 1, "not_applicable": 2}
    assert summary["by_control"][M2] == zero | {"error": 1, "not_applicable": 1}
    assert summary["by_status"] == zero | {
        "error": 1,
        "drift": 1,
        "remediated": 1,
        "compliant": 1,
        "not_applicable": 2,
    }


@pytest.mark.parametrize("order", list(itertools.permutations(PRECEDENCE, 3)))
def test_worst_status_of_three_results(order) -> None:
    records = [("h", [M1], *OUTCOMES[status][:2], OUTCOMES[status][2]) for status in order]
    assert status_of(agg_with(*records), "h", M1) == min(order, key=PRECEDENCE.index)


def test_no_catalogue_never_passes() -> None:
    report = hr.build_report(hr.Aggregator({}), run_meta())
    assert report["summary"]["passed"] is False


def test_junit_parses_and_maps_statuses() -> None:
    text = hr.render_junit(sample_report())
    root = ET.fromstring(text.encode())
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "7",
        "2",
        "1",
        "2",
    )
    suites = {s.get("name").split()[0]: s for s in root.findall("testsuite")}
    assert set(suites) == {M1, M2, G1}
    cases = {c.get("name"): c for c in suites[M1].findall("testcase")}
    assert cases["hv1"].find("failure").get("type") == "drift"
    assert "+dump_guest_core = 0" in cases["hv1"].find("failure").text
    assert cases["hv2"].find("error") is not None
    assert "<script>" in cases["hv2"].find("error").text  # escaped in XML, intact once parsed
    assert cases["hv3"].find("system-out").text.startswith("remediated")
    assert cases["hv3"].find("failure") is None
    skipped = suites[G1].find("testcase/skipped").get("message")
    assert skipped == "disabled: false condition: hvguard_migration_tls_pki_enabled"
    props = {p.get("name"): p.get("value") for p in suites[M1].find("properties")}
    assert props["severity"] == "high"
    assert "SC-4" in props["references"]


def test_html_is_escaped_self_contained_grid() -> None:
    page = hr.render_html(sample_report())
    assert "<script>alert" not in page
    assert html.escape("<script>alert(") in page
    assert "\x00" not in page
    assert not re.search(r"""src=["']?https?:""", page)  # no external assets
    # the only links: the catalogue's references, to their public pages
    links = re.findall(r"<a href='([^']+)'>([^<]+)</a>", page)
    outside = [url for url, _ in links if not url.startswith("#")]
    assert outside and all(url.startswith("https://") for url in outside)
    # column headers link to their control's row in the control table
    assert ("#HVG-MEM-001", "HVG-MEM-001") in links and "<tr id='HVG-MEM-001'>" in page
    assert len(links) == page.count("href=")
    assert "<link" not in page
    rows = re.findall(r"<tr class='host[^']*'><th>([^<]+)</th>", page)
    assert rows == ["hv1", "hv2", "hv3"]
    # every host row has one cell per control (3 controls) plus the reboot column
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    for row in body.split("</tr>")[:-1]:
        assert row.count("<td") == 4
    assert "class='s-drift k0'><details><summary>drift</summary>" in page
    assert "class='s-error'" in page and "class='s-remediated'" in page
    assert "title='Kernel zeroes freed pages" in page  # column tooltip
    assert "nist_800_53: SC-4" in page


def test_markdown_table_and_details() -> None:
    md = hr.render_markdown(sample_report())
    lines = md.splitlines()
    assert lines[0] == "## hvguard compliance: FAILED"
    row = next(line for line in lines if line.startswith(f"| {M1} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == [M1, "Kernel zeroes freed pages", "high"]
    assert cells[3:10] == ["1", "1", "0", "1", "0", "0", "0"]
    assert cells[10] == "hv1, hv2"
    assert f"<details><summary>{M1}: drift or error on 2 host(s)</summary>" in md
    # evidence with ``` inside gets a longer fence, so it cannot close the block early
    assert "````\n" in md
    assert "<script>" not in md.split("<details>")[0]


def test_failure_evidence_leads_in_junit_and_alone_in_markdown() -> None:
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("p", {M1})
    agg.record("h", "probe fine", [M1], "ok", {}, True)
    agg.record("h", "skip other", [M1], "skipped", {"false_condition": "x"}, True)
    agg.record("h", "edit", [M1], "ok", {"changed": True, "msg": "would change"}, True)
    report = hr.build_report(agg, run_meta())
    case = ET.fromstring(hr.render_junit(report)).find("testsuite/testcase/failure")
    fix = "ansible-playbook playbooks/site.yml --tags HVG-MEM-001 --limit h"
    assert case.get("message") == f"drift on h: would change | fix: {fix}"
    action, evidence = case.text.split("\n\n", 1)
    assert action.startswith(f"fix: {fix}\nimpact: takes effect after a reboot")
    assert evidence.startswith("[changed] edit")
    md = hr.render_markdown(report).split("<details>")[1]
    assert "[changed] edit" in md
    assert "probe fine" not in md and "skip other" not in md


def test_markdown_is_capped() -> None:
    catalogue = {
        f"HVG-MEM-{i:03d}": dict(CATALOGUE[M1], id=f"HVG-MEM-{i:03d}") for i in range(1, 40)
    }
    agg = hr.Aggregator(catalogue)
    agg.start_play("p", set())
    for h in range(30):
        for cid in catalogue:
            agg.record(f"host{h}", "t", [cid], "ok", {"changed": True, "msg": "x" * 3000}, True)
    md = hr.render_markdown(hr.build_report(agg, run_meta()), max_chars=20000)
    assert len(md) < 21000
    assert "left out (size cap)" in md
    assert "and 20 more" in md


def test_console_table() -> None:
    lines = hr.render_console(sample_report(), ["/r/hvguard-report.json"])
    assert lines[0] == "hvguard compliance (check mode): FAILED, 3 hosts"
    row = next(line for line in lines if line.startswith(M1))
    assert row.split()[-7:] == ["0", "1", "1", "1", "0", "0", "0"]
    assert lines[1] == hr.engine.text.GUARANTEE["check"]
    assert lines[-1] == "report: /r/hvguard-report.json"


def test_write_reports_atomic_and_private(tmp_path) -> None:
    out = tmp_path / "deep" / "reports"
    paths = hr.write_reports(sample_report(), out, ["json", "md"])
    assert [p.name for p in paths] == ["hvguard-report.json", "hvguard-report.md"]
    assert sorted(p.name for p in out.iterdir()) == ["hvguard-report.json", "hvguard-report.md"]
    assert stat.S_IMODE(paths[0].stat().st_mode) == 0o640
    json.loads(paths[0].read_text())


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch) -> None:
    def boom(_a, _b):
        raise OSError("disk full")

    monkeypatch.setattr(hr.os, "replace", boom)
    with pytest.raises(OSError):
        hr.write_atomic(tmp_path / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_real_catalogue_loads_with_required_fields() -> None:
    cat = hr.load_catalogue(ROOT / "controls" / "catalogue.yml")
    assert cat["controls"], "no controls"
    assert len(cat["sha256"]) == 64
    for cid, entry in cat["controls"].items():
        assert hr.CONTROL_ID_RE.match(cid)
        summary = hr.control_summary(entry)
        assert summary["variable"] and summary["role"] and summary["title"]


# -- the Ansible adapter with stand-in objects ----------------------------------------


def fake_result(tags, data, check_mode=False, action="ansible.builtin.copy", **task_kw):
    task = SimpleNamespace(
        get_name=lambda: "a task",
        tags=tags,
        check_mode=check_mode,
        action=action,
        _uuid="t1",
        _parent=None,
        **task_kw,
    )
    return SimpleNamespace(task=task, host=SimpleNamespace(get_name=lambda: "h"), result=data)


@pytest.fixture
def callback():
    cb = hr.CallbackModule()
    cb._agg = hr.Aggregator(CATALOGUE)
    cb._agg.start_play("p", {M1, M2})
    return cb


def adapter_statuses(cb) -> dict:
    return {cid: c["status"] for cid, c in cb._agg.final_cells().get("h", {}).items()}


@pytest.mark.parametrize(
    ("event", "kwargs", "data", "check", "expected"),
    [
        ("v2_runner_on_ok", {}, {"changed": True}, True, "drift"),
        ("v2_runner_on_ok", {}, {"changed": True}, False, "remediated"),
        ("v2_runner_on_ok", {}, {"changed": False}, True, "compliant"),
        ("v2_runner_on_failed", {}, {"msg": "x"}, True, "error"),
        ("v2_runner_on_failed", {"ignore_errors": True}, {"msg": "x"}, True, "compliant"),
        ("v2_runner_on_skipped", {}, {"false_condition": TOGGLE}, True, "disabled"),
        ("v2_runner_on_skipped", {}, {"false_condition": "x"}, True, "not_applicable"),
        ("v2_runner_on_unreachable", {}, {"msg": "x"}, True, "error"),
    ],
)
def test_adapter_events_map_to_statuses(callback, event, kwargs, data, check, expected) -> None:
    getattr(callback, event)(fake_result([M1], data, check_mode=check), **kwargs)
    assert adapter_statuses(callback)[M1] == expected


def test_adapter_failure_stops_the_host_unless_ignored_or_rescued(callback) -> None:
    callback.v2_runner_on_failed(fake_result([], {"msg": "x"}), ignore_errors=True)
    assert adapter_statuses(callback) == {}
    callback.v2_runner_on_failed(fake_result([], {"msg": "boom"}))
    assert adapter_statuses(callback) == {M1: "error", M2: "error"}


def test_adapter_unreachable_stops_the_host_unless_ignored(callback) -> None:
    result = fake_result([], {"msg": "x"}, ignore_unreachable=True)
    callback.v2_runner_on_unreachable(result)
    assert adapter_statuses(callback) == {}
    callback.v2_runner_on_unreachable(fake_result([], {"msg": "ssh"}))
    assert adapter_statuses(callback) == {M1: "error", M2: "error"}


def test_adapter_ignores_includes_that_ran_and_item_events(callback) -> None:
    include = fake_result([M1], {"changed": True}, True, action="ansible.builtin.include_tasks")
    callback.v2_runner_on_ok(include)
    for event in ("v2_runner_item_on_ok", "v2_runner_item_on_failed", "v2_runner_item_on_skipped"):
        getattr(callback, event)(fake_result([M1], {"changed": True, "failed": True}, True))
    assert adapter_statuses(callback) == {}
    callback.v2_runner_on_skipped(
        fake_result([M1], {"false_condition": "x"}, action="include_role")
    )
    assert adapter_statuses(callback) == {M1: "not_applicable"}


# -- real ansible-playbook runs -------------------------------------------------------

HOSTS = ("hv1", "hv2")  # local connection; hv3 in the inventory is unreachable
UNREACHABLE_RC = 4  # ansible-playbook's exit code when a host was unreachable


def prepare(tmp_path: Path) -> Path:
    data = tmp_path / "hosts"
    data.mkdir()
    for host in HOSTS:
        (data / f"{host}-mem002.conf").write_text("same\n")
        (data / f"{host}-mem003.conf").write_text("dump_guest_core = 1\n")
        (data / f"{host}-mig001-a.conf").write_text("item a\n")
        (data / f"{host}-mig001-b.conf").write_text("old b\n")
    return data


def digest(path: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.iterdir())
        if p.is_file()
    }


def run_fixture(
    tmp_path: Path, data: Path, check: bool, reports: str = "reports"
) -> subprocess.CompletedProcess:
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip("no .venv/bin/ansible-playbook (run make venv)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "HVGUARD_"))}
    env |= {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "HVGUARD_REPORT_DIR": str(tmp_path / reports),
        "HVGUARD_CATALOGUE": str(FIXTURE / "catalogue.yml"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    cmd = [
        str(ANSIBLE_PLAYBOOK),
        "-i",
        str(FIXTURE / "inventory.yml"),
        str(FIXTURE / "playbook.yml"),
        "-f",
        "2",
        "-e",
        f"report_fixture_dir={data}",
    ]
    if check:
        cmd.append("--check")
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("audit")
    data = prepare(tmp_path)
    before = digest(data)
    proc = run_fixture(tmp_path, data, check=True)
    return tmp_path, data, before, proc


def test_audit_run_statuses(audit_run) -> None:
    tmp_path, _, _, proc = audit_run
    # hv2 fails and hv3 is unreachable on purpose
    assert proc.returncode == UNREACHABLE_RC, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "reports" / "hvguard-report.json").read_text())
    jsonschema.validate(report, schema())
    statuses = {
        host: {cid: c["status"] for cid, c in report["hosts"][host]["controls"].items()}
        for host in HOSTS
    }
    assert statuses["hv1"] == {
        "HVG-MEM-001": "disabled",
        "HVG-MEM-002": "compliant",
        "HVG-MEM-003": "drift",
        "HVG-MEM-004": "not_applicable",
        "HVG-STO-001": "compliant",
        "HVG-MIG-001": "drift",
        "HVG-MIG-002": "compliant",
        "HVG-MIG-006": "drift",
        "HVG-STO-002": "compliant",
    }
    assert statuses["hv2"] == {
        "HVG-MEM-001": "disabled",
        "HVG-MEM-002": "compliant",
        "HVG-MEM-003": "drift",
        "HVG-MEM-004": "not_applicable",
        "HVG-STO-001": "error",
        # hv2 stopped at HVG-STO-001: the controls after it never ran
        "HVG-MIG-001": "error",
        "HVG-MIG-002": "error",
        "HVG-MIG-006": "error",
        # a later play that Ansible did not run on hv2 any more
        "HVG-STO-002": "error",
    }
    # hv3 is unreachable: the skip needs no connection, the first real task fails to connect
    hv3 = {cid: c["status"] for cid, c in report["hosts"]["hv3"]["controls"].items()}
    assert hv3 == {cid: "error" for cid in statuses["hv1"]} | {"HVG-MEM-001": "disabled"}
    unreachable = report["hosts"]["hv3"]["controls"]["HVG-MEM-002"]["evidence"][0]
    assert unreachable["result"] == "unreachable"
    assert (
        report["hosts"]["hv3"]["controls"]["HVG-MEM-003"]["evidence"][0]["result"] == "host_failed"
    )
    later = report["hosts"]["hv2"]["controls"]["HVG-STO-002"]["evidence"][0]["msg"]
    assert "host failed before the control ran" in later and "in an earlier play" in later
    hv1 = report["hosts"]["hv1"]
    # the two-item loop and the set_fact: two results, the loop's items not counted again
    assert hv1["controls"]["HVG-MIG-001"]["results"] == 2
    mem003 = hv1["controls"]["HVG-MEM-003"]["evidence"][0]
    assert "-dump_guest_core = 1\n+dump_guest_core = 0" in mem003["diff"]
    mig001 = hv1["controls"]["HVG-MIG-001"]["evidence"]
    assert [e.get("item") for e in mig001 if e["status"] == "drift"] == ["b"]
    finding = hv1["controls"]["HVG-MIG-006"]["evidence"][0]
    assert finding["evidence"][0]["path"] == "/etc/pki/libvirt/servercert.pem"
    sto = report["hosts"]["hv2"]["controls"]["HVG-STO-001"]["evidence"][0]
    assert (sto["result"], sto["rc"]) == ("failed", 1)
    assert (
        "host failed before the control ran"
        in (report["hosts"]["hv2"]["controls"]["HVG-MIG-006"]["evidence"][0]["msg"])
    )
    assert hv1["reboot_required"] is True
    assert report["hosts"]["hv2"]["reboot_required"] is None
    assert report["run"]["complete"] is True and report["run"]["mode"] == "check"
    assert report["run"]["check_mode"] is True
    assert report["run"]["diff_mode"] is True  # the fixture play sets diff: true
    assert any("HVG-XYZ-999" in w for w in report["run"]["warnings"])
    assert report["summary"]["passed"] is False


def test_audit_run_json_is_the_golden_of_the_single_file_callback(audit_run) -> None:
    """The package split (issue 9) changed no byte of the fixture run's JSON (timestamps,
    paths of this checkout and the run's temp directory aside)."""
    tmp_path, data, _, _ = audit_run
    text = (tmp_path / "reports" / "hvguard-report.json").read_text()
    from test_report_golden import v1_0

    report = v1_0(json.loads(text.replace(str(data), "@DATA@").replace(str(ROOT), "@ROOT@")))
    report["run"]["started"] = report["run"]["generated"] = "T"
    golden = FIXTURE / "golden" / "fixture-playbook.json"
    assert json.dumps(report, indent=2) + "\n" == golden.read_text()


def test_audit_run_changed_nothing(audit_run) -> None:
    _, data, before, _ = audit_run
    after = digest(data)
    after.pop("gate-saw.json")  # the gate play writes this on purpose (check_mode: false)
    assert after == before


def test_gate_play_read_the_report_written_at_its_start(audit_run) -> None:
    _, data, _, _ = audit_run
    seen = json.loads((data / "gate-saw.json").read_text())
    assert seen["run"]["complete"] is False
    assert seen["summary"]["passed"] is False
    assert seen["summary"]["by_status"]["drift"] == 4


def test_audit_run_other_formats(audit_run) -> None:
    tmp_path, _, _, proc = audit_run
    out = tmp_path / "reports"
    root = ET.parse(out / "hvguard-report.junit.xml").getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "27",
        "4",
        "13",
        "5",
    )
    page = (out / "hvguard-report.html").read_text()
    assert re.findall(r"<tr class='host[^']*'><th>([^<]+)</th>", page) == ["hv1", "hv2", "hv3"]
    # the fixture catalogue title carries markup: it must arrive escaped
    assert "&lt;drift &amp; &#34;quotes&#34;&gt;" in page
    assert "<drift &" not in page
    md = (out / "hvguard-report.md").read_text()
    assert '| HVG-MEM-003 | Fixture file that differs &lt;drift &amp; "quotes"&gt; | medium |' in md
    assert "<details><summary>HVG-MEM-003: drift or error on 3 host(s)</summary>" in md
    assert "report: " + str(out / "hvguard-report.json") in proc.stdout
    assert re.search(r"HVG-MEM-003 +Fixture file that differs.* +0 +2 +1 +0 +0 +0", proc.stdout)


def test_apply_run_remediates_then_is_compliant(tmp_path) -> None:
    data = prepare(tmp_path)
    first = run_fixture(tmp_path, data, check=False, reports="first")
    assert first.returncode == UNREACHABLE_RC, first.stdout + first.stderr
    report = json.loads((tmp_path / "first" / "hvguard-report.json").read_text())
    hv1 = {cid: c["status"] for cid, c in report["hosts"]["hv1"]["controls"].items()}
    assert hv1["HVG-MEM-003"] == "remediated"
    assert hv1["HVG-MIG-001"] == "remediated"
    assert hv1["HVG-MIG-006"] == "drift"  # a finding is never fixed by applying
    assert report["run"]["mode"] == "apply" and report["run"]["check_mode"] is False
    assert (data / "hv1-mem003.conf").read_text() == "dump_guest_core = 0\n"

    second = run_fixture(tmp_path, data, check=False, reports="second")
    assert second.returncode == UNREACHABLE_RC
    report = json.loads((tmp_path / "second" / "hvguard-report.json").read_text())
    hv1 = {cid: c["status"] for cid, c in report["hosts"]["hv1"]["controls"].items()}
    assert hv1["HVG-MEM-003"] == hv1["HVG-MIG-001"] == "compliant"


def test_unwritable_report_dir_warns_but_does_not_break_the_run(tmp_path) -> None:
    data = prepare(tmp_path)
    (tmp_path / "blocked").write_text("a file where the report dir should be")
    proc = run_fixture(tmp_path, data, check=True, reports="blocked")
    assert proc.returncode == UNREACHABLE_RC  # the planned failures, nothing else
    assert "cannot write reports" in proc.stdout + proc.stderr
