# SPDX-License-Identifier: Apache-2.0
"""The reporting engine split into a package (issue 9) writes the same JSON (schema 1.0) as
the single-file callback did: the goldens in tests/fixtures/report/golden/ were written by
the callback before the split (commit aca7f01) and are compared byte for byte, timestamps
aside. Schema 1.1 only adds keys (docs/report-schema.md): without them a report is the 1.0
golden, byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import test_report_callback as trc
import test_report_redaction as trr

import hvguard_reporting as engine
from callback_plugins import hvguard_report as hr

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "report" / "golden"


# Keys schema 1.1 added; everything else is 1.0, unchanged.
ADDED_RUN = ("id", "waivers")
ADDED_SUMMARY = ("verdict",)
ADDED_CONTROL = ("rationale", "verification")
ADDED_HOST = ("running_domains",)
ADDED_CELL = ("duration", "waiver", "action")


def v1_0(report: dict) -> dict:
    """The report without the keys schema 1.1 added (and without its waived counts)."""
    report = json.loads(json.dumps(report))
    report["schema_version"] = "1.0"
    summary = report["summary"]
    for key in ADDED_RUN:
        report["run"].pop(key, None)
    for key in ADDED_SUMMARY:
        summary.pop(key, None)
    for counts in [
        summary["by_status"],
        *summary["by_control"].values(),
        *summary["by_host"].values(),
    ]:
        assert counts.pop("waived") == 0
    for meta in report["controls"].values():
        for key in ADDED_CONTROL:
            meta.pop(key)
    for host in report["hosts"].values():
        for key in ADDED_HOST:
            host.pop(key)
        for cell in host["controls"].values():
            for key in ADDED_CELL:
                cell.pop(key, None)
    return report


def normalised(report: dict) -> str:
    report = v1_0(report)
    report["run"]["generated"] = "T"
    return engine.render_json(report)


def planted_in_golden_catalogue() -> dict:
    """The planted report over the controls the golden was written with: the goldens pin
    the engine's output, not the catalogue (controls added since, e.g. HVG-NET-*, are left
    out, as they did not exist when the callback wrote the golden)."""
    golden_ids = set(json.loads((GOLDEN / "planted.json").read_text())["controls"])
    saved = trr.CATALOGUE
    trr.CATALOGUE = {cid: c for cid, c in saved.items() if cid in golden_ids}
    try:
        return trr.planted_report()[0]
    finally:
        trr.CATALOGUE = saved


CASES = {
    "sample": trc.sample_report,
    "planted": planted_in_golden_catalogue,
    **{f"single-{s}": (lambda s=s: trc.single_status_report(s)) for s in trc.PRECEDENCE},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_json_is_byte_identical_to_the_single_file_callback(name) -> None:
    assert normalised(CASES[name]()) == (GOLDEN / f"{name}.json").read_text()


def test_the_plugin_and_the_package_are_one_engine() -> None:
    assert hr.engine is engine
    assert hr.Aggregator is engine.Aggregator and hr.FAILING is engine.FAILING


def test_the_plugin_loads_the_engine_by_path_without_the_repo_on_sys_path(tmp_path) -> None:
    """What Ansible does: import the plugin file by path in a fresh interpreter."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('x', {str(hr.__file__)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(m.engine.__file__, m.FAILING)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(ROOT / "hvguard_reporting" / "__init__.py"))
