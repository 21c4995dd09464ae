# SPDX-License-Identifier: Apache-2.0
"""The catalogue model and the report's fixed vocabulary: statuses, their order, the failing
ones and the control-ID pattern. Everything else in the package imports these from here."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1.1"
CONTROL_ID_RE = re.compile(r"^HVG-[A-Z]+-\d{3}$")

# Highest first: the status of a host x control is the highest of its results.
# ``waived`` is never a task result's status: a waiver turns a cell's drift into it.
STATUSES = ("error", "drift", "waived", "remediated", "compliant", "disabled", "not_applicable")
_RANK = {status: len(STATUSES) - i for i, status in enumerate(STATUSES)}
FAILING = ("error", "drift")

# The verdict of a whole report, and the exit code tools/hvguard_audit.py gives it. Distinct
# from every code ansible-playbook itself uses (1, 2, 4, 5, 8, 99, 250), so CI tells
# "non-compliant" from "could not audit" from "broken run".
VERDICTS = ("compliant", "drift", "error")
EXIT_CODES = {"compliant": 0, "drift": 10, "error": 11}
EXIT_NO_REPORT = 12  # ansible-playbook exited 0 but wrote no complete report of this run

FORMAT_FILES = {
    "json": "hvguard-report.json",
    "junit": "hvguard-report.junit.xml",
    "html": "hvguard-report.html",
    "md": "hvguard-report.md",
    "sarif": "hvguard-report.sarif",
    "prom": "hvguard-report.prom",
}

ROOT = Path(__file__).resolve().parent.parent


def rank(status: str) -> int:
    return _RANK[status]


def is_failing(status: str | None) -> bool:
    return status in FAILING


RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def run_id(started: str, given: str | None = None) -> str:
    """The run's ID (also its directory name under the report dir): ``given`` (from
    HVGUARD_RUN_ID) when it is a safe file name, else the start time and the process ID."""
    if given and RUN_ID_RE.match(given):
        return given
    return started.replace("-", "").replace(":", "") + f"-{os.getpid()}"


def verdict(by_status: Mapping[str, int]) -> str:
    """error when a control could not be evaluated somewhere, else drift when one drifted."""
    if by_status.get("error"):
        return "error"
    return "drift" if by_status.get("drift") else "compliant"


def load_catalogue(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the control catalogue; returns {schema_version, sha256, path, areas, controls}."""
    import yaml  # controller-side: PyYAML ships with ansible-core

    raw = Path(path).read_bytes()
    data = yaml.safe_load(raw) or {}
    controls: dict[str, dict[str, Any]] = {}
    for entry in data.get("controls") or []:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            controls[entry["id"]] = entry
    return {
        "path": str(path),
        "schema_version": data.get("schema_version"),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "areas": dict(data.get("areas") or {}),
        "controls": controls,
    }


def default_catalogue_path() -> Path:
    """controls/catalogue.yml of the checkout this package lives in."""
    return ROOT / "controls" / "catalogue.yml"


def control_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The catalogue fields a report carries for one control."""
    keys = ("title", "area", "role", "variable", "severity", "disruption", "reboot")
    out = {key: entry.get(key) for key in keys}
    out["references"] = dict(entry.get("references") or {})
    for key in ("rationale", "verification"):  # schema 1.1
        out[key] = " ".join(str(entry.get(key) or "").split()) or None
    return out


def control_ids(tags: Iterable[Any], catalogue: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Split task tags into (known control IDs, unknown control-like IDs)."""
    known: list[str] = []
    unknown: list[str] = []
    for tag in tags or ():
        if not isinstance(tag, str) or not CONTROL_ID_RE.match(tag):
            continue
        target = known if tag in catalogue else unknown
        if tag not in target:
            target.append(tag)
    return known, unknown


def expected_controls(
    catalogue: Mapping[str, Mapping[str, Any]],
    roles: Iterable[str],
    tagged_ids: Iterable[str] = (),
    only_tags: Iterable[str] = ("all",),
    skip_tags: Iterable[str] = (),
) -> set[str]:
    """Controls a play is expected to evaluate: those of its roles plus IDs its tasks carry,
    narrowed by --tags/--skip-tags (by control ID or area)."""
    roles = set(roles)
    ids = {cid for cid, c in catalogue.items() if c.get("role") in roles}
    ids.update(cid for cid in tagged_ids if cid in catalogue)
    only = set(only_tags or ("all",))
    skip = set(skip_tags or ())
    select_all = bool(only & {"all", "tagged", "untagged"})

    def selected(cid: str) -> bool:
        area = catalogue[cid].get("area")
        if cid in skip or area in skip:
            return False
        return select_all or cid in only or area in only

    return {cid for cid in ids if selected(cid)}
