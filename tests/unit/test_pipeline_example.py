# SPDX-License-Identifier: Apache-2.0
"""Issue 10: the documented pipeline (docs/examples/gitlab-ci.yml) gates on the exit codes
tools/hvguard_audit.py really returns: the merge-request audit tolerates exactly the drift
code, the post-merge verification tolerates nothing, apply runs site.yml only after a merge,
and every command it runs exists in this repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hvguard_reporting.model import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
CI = yaml.safe_load((ROOT / "docs" / "examples" / "gitlab-ci.yml").read_text())


def script(job: str) -> str:
    return "\n".join(CI[job]["script"])


def test_merge_request_audit_tolerates_drift_only() -> None:
    job = CI["audit"]
    assert "tools/hvguard_audit.py" in script("audit")
    assert job["allow_failure"] == {"exit_codes": [EXIT_CODES["drift"]]}
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]


def test_apply_after_merge_then_verify_strictly() -> None:
    assert "playbooks/site.yml" in script("apply")
    assert "--check" not in script("apply")
    for job in ("apply", "verify"):
        assert CI[job]["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
        assert CI[job]["resource_group"] == CI["apply"]["resource_group"]
    assert "tools/hvguard_audit.py" in script("verify")
    assert "allow_failure" not in CI["verify"]
    assert CI["stages"].index("apply") < CI["stages"].index("verify")


def test_reports_are_kept_and_junit_published() -> None:
    art = CI[".hvguard"]["artifacts"]
    assert art["when"] == "always" and "reports/" in art["paths"]
    assert art["reports"]["junit"] == "reports/hvguard-report.junit.xml"
    assert CI["variables"]["HVGUARD_REPORT_DIR"].endswith("/reports")


def test_every_path_the_pipeline_runs_exists() -> None:
    text = (ROOT / "docs" / "examples" / "gitlab-ci.yml").read_text()
    for path in set(re.findall(r"\b((?:tools|playbooks)/[\w./-]+)", text)):
        assert (ROOT / path).exists(), path


def test_docs_name_the_exit_codes_of_the_tool() -> None:
    doc = (ROOT / "docs" / "ecosystem.md").read_text()
    for code in (EXIT_CODES["drift"], EXIT_CODES["error"]):
        assert f" {code} (" in doc or f"; {code} (" in doc, code
