# SPDX-License-Identifier: Apache-2.0
"""Generic hvguard filters (report gating, run comparison, file reads).

The failing statuses are the reporting engine's (``hvguard_reporting.model.FAILING``, one
definition for the whole pack); Ansible loads filter plugins by path, so the engine is loaded
by path too, as the report callback does.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ansible.errors import AnsibleFilterError

_ENGINE = "hvguard_reporting"


def _engine() -> ModuleType:
    if _ENGINE in sys.modules:
        return sys.modules[_ENGINE]
    # ../hvguard_reporting in this checkout, or at the top of the installed collection
    # (plugins/filter/hvguard.py there, see tools/build_collection.py).
    here = Path(__file__).resolve()
    candidates = [here.parents[1] / _ENGINE, here.parents[2] / _ENGINE]
    pkg = next((c for c in candidates if (c / "__init__.py").is_file()), candidates[0])
    spec = importlib.util.spec_from_file_location(
        _ENGINE, pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"hvguard filters: cannot load the reporting engine from {pkg}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_ENGINE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_ENGINE]
        raise
    return module


FAILING_STATUSES: tuple[str, ...] = tuple(_engine().FAILING)


def hvguard_report_failures(
    report: dict[str, Any], statuses: list[str] | tuple[str, ...] = FAILING_STATUSES
) -> list[str]:
    """Return `host ID: status` for every host x control whose status is failing.

    `report` is the parsed hvguard-report.json (schema 1.x: hosts.<host>.controls.<ID>.status).
    """
    if not isinstance(report, dict) or "hosts" not in report:
        raise ValueError("hvguard_report_failures expects a parsed hvguard report (no 'hosts' key)")
    failures: list[str] = []
    for host in sorted(report["hosts"]):
        controls = report["hosts"][host].get("controls", {})
        for control_id in sorted(controls):
            status = controls[control_id].get("status")
            if status in statuses:
                failures.append(f"{host} {control_id}: {status}")
    return failures


def hvguard_bad_regexes(patterns: Any) -> list[str]:
    """The entries of ``patterns`` that are not valid (Python) regular expressions."""
    if not isinstance(patterns, (list, tuple)):
        return [str(patterns)]
    bad = []
    for pattern in patterns:
        try:
            re.compile(str(pattern))
        except re.error:
            bad.append(str(pattern))
    return bad


def hvguard_files_as_slurp(
    files: Any, items: Any, attribute: str | None = None
) -> list[dict[str, Any]]:
    """``slurp`` loop results from one ``hvguard_files_info`` call, one per item of ``items``.

    An item is a path, or a mapping whose ``attribute`` is the path; it is kept as the
    result's ``item``, as a loop would. A file that is missing or was not read gets no
    ``content`` (``failed``, as ``slurp`` under ``failed_when: false``).
    """
    if not isinstance(files, dict):
        raise AnsibleFilterError("hvguard_files_as_slurp: expects the files of hvguard_files_info")
    results = []
    for item in items or []:
        path = str(item[attribute] if attribute else item)
        entry = files.get(path) or {}
        result: dict[str, Any] = {"item": item, "source": path}
        if entry.get("content") is not None:
            result.update(content=entry["content"], encoding="base64", failed=False)
        else:
            result.update(failed=True, msg=entry.get("error") or f"file not found: {path}")
        results.append(result)
    return results


def hvguard_files_checksums(files: Any, paths: Any) -> dict[str, str]:
    """``{path: checksum}`` for ``paths`` from one ``hvguard_files_info`` call; ``''`` for a
    path without one (missing, a link, not read), as ``stat.checksum | default('')`` was."""
    if not isinstance(files, dict):
        raise AnsibleFilterError("hvguard_files_checksums: expects the files of hvguard_files_info")
    return {str(p): str((files.get(str(p)) or {}).get("checksum") or "") for p in paths or []}


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "hvguard_report_failures": hvguard_report_failures,
            "hvguard_bad_regexes": hvguard_bad_regexes,
            "hvguard_files_as_slurp": hvguard_files_as_slurp,
            "hvguard_files_checksums": hvguard_files_checksums,
        }
