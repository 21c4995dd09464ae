# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""hvguard compliance report: task results -> per host x control reports.

The module is in two layers. Everything above ``CallbackModule`` is plain Python working on
plain dicts (classification, aggregation, rendering) so it is unit-testable without Ansible
objects; ``CallbackModule`` only translates Ansible callback events into those calls.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import html
import importlib.util
import json
import os
import re
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCUMENTATION = r"""
name: hvguard_report
type: aggregate
short_description: Per host x control compliance reports (JSON, JUnit, HTML, Markdown)
description:
  - Aggregates the results of tasks tagged with hvguard control IDs (C(HVG-AREA-NNN)) into
    one status per host and control, and writes JSON, JUnit XML, HTML and Markdown reports.
  - In check mode a C(changed) result is drift; in an apply run it is C(remediated).
  - Reports are written at the end of the run and at the start of every play that follows
    a play with results, so a later gate play can read the JSON.
  - The absolute path of the JSON report is exported to the controller environment as
    E(HVGUARD_REPORT_JSON) for such gate plays.
  - See docs/report-schema.md for the statuses and the JSON schema.
requirements:
  - enable in ansible.cfg (callbacks_enabled = hvguard_report)
options:
  report_dir:
    description: Directory the reports are written to (created when missing).
    type: path
    default: ./reports
    env:
      - name: HVGUARD_REPORT_DIR
    ini:
      - section: callback_hvguard_report
        key: report_dir
  catalogue:
    description:
      - Control catalogue (YAML). Unset means C(controls/catalogue.yml) next to the
        directory holding this plugin.
    type: path
    env:
      - name: HVGUARD_CATALOGUE
    ini:
      - section: callback_hvguard_report
        key: catalogue
  formats:
    description: Report formats to write.
    type: list
    elements: str
    default: [json, junit, html, md]
    env:
      - name: HVGUARD_REPORT_FORMATS
    ini:
      - section: callback_hvguard_report
        key: formats
  console:
    description: Print the compact per-control table and the report paths at the end.
    type: bool
    default: true
    env:
      - name: HVGUARD_REPORT_CONSOLE
    ini:
      - section: callback_hvguard_report
        key: console
  evidence_max_bytes:
    description: Cap on the evidence kept per host and control (JSON bytes).
    type: int
    default: 16384
    env:
      - name: HVGUARD_EVIDENCE_MAX_BYTES
    ini:
      - section: callback_hvguard_report
        key: evidence_max_bytes
"""

SCHEMA_VERSION = "1.0"
CONTROL_ID_RE = re.compile(r"^HVG-[A-Z]+-\d{3}$")

# Highest first: the status of a host x control is the highest of its results.
STATUSES = ("error", "drift", "remediated", "compliant", "disabled", "not_applicable")
_RANK = {status: len(STATUSES) - i for i, status in enumerate(STATUSES)}
FAILING = ("error", "drift")

FORMAT_FILES = {
    "json": "hvguard-report.json",
    "junit": "hvguard-report.junit.xml",
    "html": "hvguard-report.html",
    "md": "hvguard-report.md",
}

DEFAULT_EVIDENCE_MAX = 16 * 1024
_TEXT_FIELD_MAX = 8 * 1024  # one msg/diff/stderr; the per-cell cap still applies on top
# Characters XML 1.0 cannot carry at all (escaping does not help): drop them from evidence.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _load_redactor() -> Any:
    """module_utils/hvguard_redact.py, the pack's one set of redaction rules (the modules use
    it for their diffs). Loaded by path: controller plugins cannot import module_utils. A
    missing file fails the plugin's import: no report rather than one that leaks secrets."""
    path = Path(__file__).resolve().parent.parent / "module_utils" / "hvguard_redact.py"
    spec = importlib.util.spec_from_file_location("_hvguard_report_redact", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"hvguard_report: cannot load the redaction rules from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_redactor = _load_redactor()
redact = _redactor.redact
redact_text = _redactor.redact_text
REDACTED = _redactor.REDACTED


# --------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------


def load_catalogue(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the control catalogue; returns {schema_version, sha256, path, controls: {id: ...}}."""
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
        "controls": controls,
    }


def default_catalogue_path() -> Path:
    """controls/catalogue.yml of the checkout this plugin lives in."""
    return Path(__file__).resolve().parent.parent / "controls" / "catalogue.yml"


def control_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The catalogue fields a report carries for one control."""
    keys = ("title", "area", "role", "variable", "severity", "disruption", "reboot")
    out = {key: entry.get(key) for key in keys}
    out["references"] = dict(entry.get("references") or {})
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


# --------------------------------------------------------------------------------------
# Classification of one task result
# --------------------------------------------------------------------------------------


def _clip(text: str, limit: int = _TEXT_FIELD_MAX) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... truncated {len(text) - limit} characters]"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    # Redact the structure before it becomes text (its strings would be escaped in JSON).
    return json.dumps(redact(_jsonable(value)), sort_keys=True, default=str, indent=1)


def _jsonable(value: Any) -> Any:
    """Evidence comes from hosts: force it into plain JSON types."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


# Installed programs and data are evidence by identity, not by text (the scrub engine alone
# is over a thousand lines); configuration files (everything under /etc) keep their diff.
_INSTALL_DIRS = ("/usr/", "/opt/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/boot/", "/srv/")
_CONTROLLER_TMP = ("/ansible-local-", "/.ansible/tmp/")


def _installed_file(path: str, before: str, after: str) -> bool:
    """A file the pack installs rather than configures: outside /etc, in a program or data
    directory, or a script anywhere outside /etc. (Ansible diffs no binary files.)"""
    if not path.startswith("/") or path.startswith("/etc/"):
        return False
    if path.startswith(_INSTALL_DIRS):
        return True
    return before.startswith("#!") or after.startswith("#!")


def _identity(text: str) -> str:
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")
    return f"sha256 {hashlib.sha256(data).hexdigest()}, {len(data)} bytes"


def _file_summary(path: str, before: str, after: str) -> str:
    old = _identity(before) if before else "absent or empty"
    return (
        f"installed file {path} differs (no text diff for installed files)\n"
        f"  on the host: {old}\n"
        f"  this run:    {_identity(after)}"
    )


def render_diff(diff: Any) -> str:
    """A result's ``diff`` (dict or list of dicts) as unified diff text."""
    if not diff:
        return ""
    parts = diff if isinstance(diff, list) else [diff]
    chunks: list[str] = []
    for part in parts:
        if not isinstance(part, Mapping):
            chunks.append(_text(part))
            continue
        if part.get("prepared"):
            chunks.append(redact_text(_text(part["prepared"])))
            continue
        if "before" not in part and "after" not in part:
            continue
        before, after = part.get("before", ""), part.get("after", "")
        before_header = str(part.get("before_header", "before"))
        after_header = str(part.get("after_header", "after"))
        texts = isinstance(before, str) and isinstance(after, str)
        if texts and _installed_file(before_header, before, after):
            chunks.append(_file_summary(before_header, before, after))
            continue
        if any(mark in after_header for mark in _CONTROLLER_TMP):
            after_header = f"{before_header} (new)"  # template's temp file means nothing
        # Each side is redacted before diffing, so a redacted line only shows up as changed
        # when what it hides changed (PEM bodies carry a digest).
        before_s = redact_text(before) if isinstance(before, str) else _text(before) + "\n"
        after_s = redact_text(after) if isinstance(after, str) else _text(after) + "\n"
        lines = difflib.unified_diff(
            before_s.splitlines(keepends=True),
            after_s.splitlines(keepends=True),
            fromfile=before_header,
            tofile=after_header,
        )
        text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        chunks.append(text)
    return "\n".join(chunk for chunk in chunks if chunk).rstrip("\n")


def _references_toggle(condition: Any, variable: str | None) -> bool:
    if not variable or not isinstance(condition, str):
        return False
    return re.search(rf"(?<![\w.]){re.escape(variable)}(?!\w)", condition) is not None


def _items(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = result.get("results")
    if isinstance(items, list):
        return [i for i in items if isinstance(i, Mapping)]
    return []


def _entry(task: str, kind: str, status: str, **fields: Any) -> dict[str, Any]:
    """One evidence entry. Every piece of evidence enters the report here, so this is where
    secrets are redacted (before clipping, so that a cut cannot split a PEM block)."""
    entry: dict[str, Any] = {"task": redact_text(str(task)), "result": kind, "status": status}
    for key, value in fields.items():
        if value in (None, "", [], {}):
            continue
        if isinstance(value, str):
            entry[key] = _clip(redact_text(value))
        else:
            entry[key] = redact(_jsonable(value))
    return entry


def _skip_status(
    task: str, result: Mapping[str, Any], variable: str | None
) -> tuple[str, list[dict]]:
    conditions = [i.get("false_condition") for i in _items(result)] or [
        result.get("false_condition")
    ]
    conditions = [c for c in conditions if c]
    if any(_references_toggle(c, variable) for c in conditions):
        status = "disabled"
    else:
        status = "not_applicable"
    reason = result.get("skip_reason") or result.get("msg")
    cond = conditions[0] if conditions else None
    return status, [_entry(task, "skipped", status, false_condition=cond, msg=reason)]


def _failure_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "msg": _text(result.get("msg")),
        "stderr": _text(result.get("stderr")),
        "rc": result.get("rc"),
    }


def _change_entries(
    task: str, result: Mapping[str, Any], status: str, diff_hint: bool
) -> list[dict[str, Any]]:
    items = _items(result)
    sources = [(i, i.get("_ansible_item_label", i.get("item"))) for i in items if i.get("changed")]
    if not items:
        sources = [(result, None)]
    entries = []
    for res, label in sources:
        diff = render_diff(res.get("diff"))
        msg = _text(res.get("msg"))
        if not diff and not msg and diff_hint:
            msg = "changed (no diff: run with diff mode for details)"
        entries.append(
            _entry(
                task,
                "changed",
                status,
                item=label,
                msg=msg,
                diff=diff,
                evidence=res.get("evidence"),
            )
        )
    return entries


def classify(
    outcome: str,
    task: str,
    result: Mapping[str, Any],
    check_mode: bool,
    variable: str | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Status of one control implied by one task result, and its evidence entries.

    outcome: ok | failed | failed_ignored | unreachable | skipped (the callback event).
    """
    findings = [r for r in (result, *_items(result)) if r.get("hvguard_status")]
    drifts = [r for r in findings if r.get("hvguard_status") == "drift"]
    if drifts and outcome in ("ok", "failed", "failed_ignored"):
        # A finding with fail_on_drift fails the host, but what it reports is drift.
        return "drift", [_finding_entry(task, r, "drift") for r in drifts]
    if outcome == "unreachable":
        return "error", [_entry(task, "unreachable", "error", msg=_text(result.get("msg")))]
    if outcome == "failed":
        failed = [i for i in _items(result) if i.get("failed")]
        entries = [
            _entry(
                task,
                "failed",
                "error",
                item=i.get("_ansible_item_label", i.get("item")),
                **_failure_fields(i),
            )
            for i in failed
        ] or [_entry(task, "failed", "error", **_failure_fields(result))]
        return "error", entries
    if outcome == "skipped":
        return _skip_status(task, result, variable)
    changed = bool(result.get("changed")) or any(i.get("changed") for i in _items(result))
    if changed:
        status = "drift" if check_mode else "remediated"
        return status, _change_entries(task, result, status, diff_hint=True)
    if outcome == "failed_ignored":
        note = "failure ignored (ignore_errors): " + _text(result.get("msg"))
        return "compliant", [_entry(task, "ok", "compliant", msg=note)]
    if findings:
        return "compliant", [_finding_entry(task, r, "compliant") for r in findings]
    return "compliant", [_entry(task, "ok", "compliant")]


def _finding_entry(task: str, res: Mapping[str, Any], status: str) -> dict[str, Any]:
    label = res.get("_ansible_item_label", res.get("item"))
    msg = _text(res.get("msg"))
    return _entry(task, "finding", status, item=label, msg=msg, evidence=res.get("evidence"))


# --------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------


def _size(entry: Mapping[str, Any]) -> int:
    return len(json.dumps(entry, default=str))


@dataclass
class Cell:
    """One host x control."""

    status: str = "not_applicable"
    evidence: list[dict[str, Any]] = field(default_factory=list)
    results: int = 0
    omitted: int = 0
    size: int = 0
    seen: bool = False

    def add(self, status: str, entries: list[dict[str, Any]], cap: int) -> None:
        if not self.seen or _RANK[status] > _RANK[self.status]:
            self.status = status
        self.seen = True
        self.results += 1
        for entry in entries:
            self._keep(entry, cap)

    def _keep(self, entry: dict[str, Any], cap: int) -> None:
        size = _size(entry)
        # Make room by dropping lower-ranked evidence first, so a late drift or error is
        # never lost behind a pile of compliant results.
        while self.size + size > cap:
            victim = min(
                (
                    i
                    for i, e in enumerate(self.evidence)
                    if _RANK[e["status"]] < _RANK[entry["status"]]
                ),
                key=lambda i: _RANK[self.evidence[i]["status"]],
                default=None,
            )
            if victim is None:
                break
            self.size -= _size(self.evidence.pop(victim))
            self.omitted += 1
        if self.size + size > cap:
            entry = _shrink(entry, cap - self.size)
            if entry is None:
                self.omitted += 1
                return
            size = _size(entry)
        self.evidence.append(entry)
        self.size += size

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "results": self.results,
            "evidence": list(self.evidence),
            "evidence_truncated": self.omitted > 0
            or any(e.get("truncated") for e in self.evidence),
            "evidence_omitted": self.omitted,
        }


def _shrink(entry: dict[str, Any], room: int) -> dict[str, Any] | None:
    """Cut the long text fields of an entry so that it fits in ``room`` bytes."""
    if room < 200:
        return None
    small = dict(entry)
    small["truncated"] = True
    for key in ("evidence", "diff", "stderr", "msg"):
        if key not in small:
            continue
        value = small[key] if isinstance(small[key], str) else json.dumps(small[key], default=str)
        overflow = _size(small) - room
        if overflow <= 0:
            break
        keep = max(0, len(value) - overflow - 64)
        small[key] = value[:keep] + f"\n[... truncated {len(value) - keep} characters]"
    return small if _size(small) <= room else None


@dataclass
class PlayRecord:
    """What a play was expected to evaluate, and which hosts stopped in it."""

    name: str
    expected: set[str] = field(default_factory=set)
    stopped: dict[str, dict[str, str]] = field(default_factory=dict)
    check_mode: bool | None = None  # the play's check_mode (keyword or --check)
    results: int = 0


class Aggregator:
    """Holds host x control cells; every method takes plain values (no Ansible objects)."""

    def __init__(
        self, catalogue: Mapping[str, Any], evidence_max: int = DEFAULT_EVIDENCE_MAX
    ) -> None:
        self.catalogue: dict[str, Any] = dict(catalogue)
        self.evidence_max = evidence_max
        self.cells: dict[str, dict[str, Cell]] = {}
        self.reboot: dict[str, bool] = {}
        self.plays: list[PlayRecord] = []
        self.unknown_ids: set[str] = set()
        self.results = 0
        self.modes = {"check": 0, "apply": 0}

    def start_play(
        self,
        name: str,
        expected: Iterable[str],
        check_mode: bool | None = None,
        hosts: Iterable[str] = (),
    ) -> None:
        """``hosts``: the play's target hosts. Those that stopped in an earlier play are left
        out of this one by Ansible, so its controls never run on them either."""
        play = PlayRecord(name=name, expected=set(expected), check_mode=check_mode)
        for host in hosts:
            earlier = next((p.stopped[host] for p in self.plays if host in p.stopped), None)
            if earlier is not None:
                play.stopped[host] = {**earlier, "msg": "in an earlier play: " + earlier["msg"]}
        self.plays.append(play)

    def expect(self, control_ids_: Iterable[str]) -> None:
        """Controls discovered while the play runs (dynamically included roles)."""
        if self.plays:
            self.plays[-1].expected.update(control_ids_)

    def record(
        self,
        host: str,
        task: str,
        tags: Iterable[Any],
        outcome: str,
        result: Mapping[str, Any],
        check_mode: bool,
        stops_host: bool = False,
    ) -> list[str]:
        """Account one final task result; returns control IDs not in the catalogue."""
        self.results += 1
        self.modes["check" if check_mode else "apply"] += 1
        if self.plays:
            self.plays[-1].results += 1
        self._capture_reboot(host, result)
        known, unknown = control_ids(tags, self.catalogue)
        fresh_unknown = [u for u in unknown if u not in self.unknown_ids]
        self.unknown_ids.update(unknown)
        for cid in known:
            variable = self.catalogue[cid].get("variable")
            status, entries = classify(outcome, task, result, check_mode, variable)
            host_cells = self.cells.setdefault(host, {})
            host_cells.setdefault(cid, Cell()).add(status, entries, self.evidence_max)
        if stops_host and self.plays:
            msg = _text(result.get("msg")) or outcome
            self.plays[-1].stopped.setdefault(host, {"task": task, "msg": _clip(msg, 2048)})
        return fresh_unknown

    def _capture_reboot(self, host: str, result: Mapping[str, Any]) -> None:
        for res in [result, *_items(result)]:
            facts = res.get("ansible_facts")
            if isinstance(facts, Mapping) and "hvguard_reboot_required" in facts:
                # Last write wins, as for the fact itself.
                self.reboot[host] = _as_bool(facts["hvguard_reboot_required"])

    def has_results(self) -> bool:
        return self.results > 0

    def final_cells(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Cells as dicts, with 'host failed before the control ran' errors filled in."""
        out: dict[str, dict[str, dict[str, Any]]] = {
            host: {cid: cell.as_dict() for cid, cell in cells.items()}
            for host, cells in self.cells.items()
        }
        for play in self.plays:
            for host, why in play.stopped.items():
                missing = [
                    cid
                    for cid in sorted(play.expected)
                    if cid in self.catalogue and cid not in out.get(host, {})
                ]
                host_cells = out.setdefault(host, {}) if missing else {}
                for cid in missing:
                    msg = f"host failed before the control ran ({why['task']}): {why['msg']}"
                    entry = _entry(why["task"], "host_failed", "error", msg=msg)
                    host_cells[cid] = {
                        "status": "error",
                        "results": 0,
                        "evidence": [entry],
                        "evidence_truncated": False,
                        "evidence_omitted": 0,
                    }
        return out


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y")
    return bool(value)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_mode(agg: Aggregator, cli_check: bool) -> str:
    """check | apply | mixed. Plays may force check mode without --check, and read-only
    probes run with check_mode: false inside an audit, so the plays decide, not the tasks."""
    if cli_check:
        return "check"
    plays = {p.check_mode for p in agg.plays if p.results}
    if plays and None not in plays:
        counts = {"check": int(True in plays), "apply": int(False in plays)}
    else:
        counts = agg.modes
    if counts["check"] and counts["apply"]:
        return "mixed"
    return "check" if counts["check"] else "apply"


def build_report(agg: Aggregator, run: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON report (schema 1.0) from the aggregated state and run metadata."""
    cells = agg.final_cells()
    hosts: dict[str, Any] = {}
    by_status = dict.fromkeys(STATUSES, 0)
    by_control: dict[str, dict[str, int]] = {}
    by_host: dict[str, dict[str, int]] = {}
    for host in sorted(set(cells) | set(agg.reboot)):
        controls = dict(sorted(cells.get(host, {}).items()))
        hosts[host] = {"reboot_required": agg.reboot.get(host), "controls": controls}
        by_host[host] = dict.fromkeys(STATUSES, 0)
        for cid, cell in controls.items():
            status = cell["status"]
            by_status[status] += 1
            by_control.setdefault(cid, dict.fromkeys(STATUSES, 0))[status] += 1
            by_host[host][status] += 1
    used = sorted({cid for h in hosts.values() for cid in h["controls"]})
    summary = {
        "hosts": len(hosts),
        "controls": len(used),
        # Without a catalogue nothing could be evaluated: that must not read as a pass.
        "passed": bool(agg.catalogue) and all(by_status[s] == 0 for s in FAILING),
        "by_status": by_status,
        "by_control": {cid: by_control[cid] for cid in used},
        "by_host": by_host,
        "reboot_required": sorted(h for h, v in agg.reboot.items() if v),
    }
    run = dict(run)
    run["mode"] = run_mode(agg, bool(run.get("check_mode")))
    run["check_mode"] = bool(run.get("check_mode")) or run["mode"] == "check"
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {**run, "generated": _now()},
        "summary": summary,
        "controls": {cid: control_summary(agg.catalogue[cid]) for cid in used},
        "hosts": hosts,
    }


# --------------------------------------------------------------------------------------
# Renderers: report dict -> text
# --------------------------------------------------------------------------------------


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"


def _clean(text: Any) -> str:
    return _XML_BAD.sub("\ufffd", str(text))


def evidence_text(evidence: Iterable[Mapping[str, Any]]) -> str:
    """Plain-text rendering of evidence entries (JUnit bodies, Markdown blocks)."""
    out: list[str] = []
    for entry in evidence:
        head = f"[{entry.get('result')}] {entry.get('task')}"
        if "item" in entry:
            head += f" (item: {_text(entry['item'])})"
        out.append(head)
        for key in ("false_condition", "msg", "rc", "stderr", "evidence", "diff"):
            if key in entry:
                value = _text(entry[key])
                sep = "\n" if "\n" in value else " "
                out.append(f"  {key}:{sep}{value}")
        if entry.get("truncated"):
            out.append("  (evidence truncated)")
    return "\n".join(out)


def failing_first(evidence: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Evidence with the entries that explain a failure (error, drift) first."""
    entries = list(evidence)
    return sorted(entries, key=lambda e: e.get("status") not in FAILING)


def _refs(refs: Mapping[str, Any]) -> str:
    parts = [f"{k}: {', '.join(map(str, v))}" for k, v in refs.items() if v]
    return "; ".join(parts)


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
    suite = ET.SubElement(root, "testsuite", name=_clean(f"{cid} {meta.get('title') or ''}"))
    props = ET.SubElement(suite, "properties")
    for key in ("severity", "area", "role", "variable", "disruption", "reboot"):
        value = meta.get(key)
        text = str(value).lower() if isinstance(value, bool) else str(value)
        ET.SubElement(props, "property", name=key, value=_clean(text))
    refs = _refs(meta.get("references") or {})
    ET.SubElement(props, "property", name="references", value=_clean(refs))
    return suite


def _junit_case(suite: ET.Element, cid: str, host: str, cell: Mapping[str, Any]) -> None:
    case = ET.SubElement(suite, "testcase", classname=f"hvguard.{cid}", name=_clean(host))
    case.set("time", "0")
    ordered = failing_first(cell["evidence"])
    body = _clean(evidence_text(ordered))
    first = ordered[0] if ordered else {}
    message = _clean(_text(first.get("msg") or first.get("task") or cell["status"]))[:500]
    status = cell["status"]
    if status == "error":
        ET.SubElement(case, "error", type="error", message=message).text = body
    elif status == "drift":
        ET.SubElement(case, "failure", type="drift", message=message).text = body
    elif status in ("disabled", "not_applicable"):
        why = first.get("false_condition")
        why = f"false condition: {why}" if why else message
        ET.SubElement(case, "skipped", message=_clean(f"{status}: {why}"[:500]))
    elif status == "remediated":
        ET.SubElement(case, "system-out").text = "remediated in this run\n" + body


_STATUS_LABEL = {
    "compliant": "compliant",
    "drift": "drift",
    "error": "error",
    "remediated": "remediated",
    "disabled": "disabled",
    "not_applicable": "n/a",
}

_HTML_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}.meta{color:#555;margin-bottom:1em}
.counts span{display:inline-block;padding:.3em .7em;margin:0 .4em .4em 0;border-radius:4px}
table.grid{border-collapse:collapse;margin-top:1em}
.grid th,.grid td{border:1px solid #ccc;padding:.25em .4em;vertical-align:top;text-align:left}
.grid thead th{position:sticky;top:0;background:#f4f4f4;cursor:help;font-size:12px}
.s-compliant{background:#d8f0d8}.s-drift{background:#f9d9a8}.s-error{background:#f3b3b3}
.s-remediated{background:#cfe3fa}.s-disabled{background:#e4e4e4}
.s-not_applicable{background:#f2f2f2;color:#777}.s-absent{color:#bbb;text-align:center}
details summary{cursor:pointer;white-space:nowrap}
details[open]{min-width:28em;max-width:60em}
.ev{margin:.3em 0;padding:.3em;background:#fff;border:1px solid #ddd;font-size:12px}
.ev pre{white-space:pre-wrap;word-break:break-word;margin:.2em 0;max-height:30em;overflow:auto}
.add{color:#060}.del{color:#a00}.trunc{color:#a00;font-style:italic}
#legend td{font-size:12px}
"""

_HTML_JS = """
document.getElementById('failing').addEventListener('change',function(e){
  document.querySelectorAll('tr.host').forEach(function(r){
    r.style.display=(e.target.checked&&!r.classList.contains('failing'))?'none':'';});});
document.getElementById('expand').addEventListener('click',function(){
  document.querySelectorAll('td.s-drift details,td.s-error details').forEach(
    function(d){d.open=!d.open;});});
"""


def _html_pre(text: str, diff: bool = False) -> str:
    lines = []
    for line in _clean(text).split("\n"):
        esc = html.escape(line)
        if diff and line.startswith("+") and not line.startswith("+++"):
            esc = f'<span class="add">{esc}</span>'
        elif diff and line.startswith("-") and not line.startswith("---"):
            esc = f'<span class="del">{esc}</span>'
        lines.append(esc)
    return "<pre>" + "\n".join(lines) + "</pre>"


def _html_evidence(cell: Mapping[str, Any]) -> str:
    parts = []
    for entry in failing_first(cell["evidence"]):
        title = html.escape(_clean(f"[{entry.get('result')}] {entry.get('task')}"))
        if "item" in entry:
            title += html.escape(_clean(f" (item: {_text(entry['item'])})"))
        body = [f"<div class='ev'><b>{title}</b>"]
        for key in ("false_condition", "msg", "rc", "stderr", "evidence", "diff"):
            if key in entry:
                body.append(f"<div>{key}:</div>" + _html_pre(_text(entry[key]), key == "diff"))
        if entry.get("truncated"):
            body.append("<div class='trunc'>evidence truncated</div>")
        body.append("</div>")
        parts.append("".join(body))
    if cell.get("evidence_omitted"):
        parts.append(
            f"<div class='trunc'>{int(cell['evidence_omitted'])} evidence entries omitted "
            "(size cap)</div>"
        )
    return "".join(parts)


def render_html(report: Mapping[str, Any]) -> str:
    """Self-contained page: summary counts, hosts x controls grid, evidence per cell."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>hvguard compliance report</title>",
        f"<style>{_HTML_CSS}</style></head><body>",
        _html_summary(report),
        _html_grid(report),
        _html_legend(report),
        f"<script>{_HTML_JS}</script></body></html>\n",
    ]
    return "".join(parts)


def _html_summary(report: Mapping[str, Any]) -> str:
    run, summary = report["run"], report["summary"]
    esc = html.escape
    meta = (
        f"{'Check mode (audit)' if run.get('check_mode') else 'Apply run'} · "
        f"generated {run.get('generated', '')} · playbooks: "
        f"{', '.join(run.get('playbooks') or [])} · ansible-core "
        f"{run.get('ansible_version', '')} · catalogue sha256 "
        f"{str((run.get('catalogue') or {}).get('sha256', ''))[:12]}"
    )
    verdict = "PASSED" if summary["passed"] else "FAILED"
    out = [
        f"<h1>hvguard compliance report</h1><div class='meta'>{esc(_clean(meta))}</div>",
        f"<div class='counts'><span class='{'s-compliant' if summary['passed'] else 's-error'}'>",
        f"<b>{verdict}</b> · {summary['hosts']} hosts · {summary['controls']} controls</span>",
    ]
    for status in STATUSES:
        count = summary["by_status"][status]
        out.append(f"<span class='s-{status}'>{esc(_STATUS_LABEL[status])}: {count}</span>")
    if summary.get("reboot_required"):
        hosts = esc(_clean(", ".join(summary["reboot_required"])))
        out.append(f"<span class='s-drift'>reboot required: {hosts}</span>")
    out.append(
        "</div><label><input type='checkbox' id='failing'> only hosts with drift or error"
        "</label> <button id='expand' type='button'>toggle drift/error evidence</button>"
    )
    return "".join(out)


def _html_grid(report: Mapping[str, Any]) -> str:
    controls = report["controls"]
    esc = html.escape
    out = ["<table class='grid'><thead><tr><th>host</th><th>reboot required</th>"]
    for cid, meta in controls.items():
        tip = (
            f"{meta.get('title')}\nseverity: {meta.get('severity')} · disruption: "
            f"{meta.get('disruption')} · reboot: {meta.get('reboot')}\n"
            f"{_refs(meta.get('references') or {})}"
        )
        out.append(f"<th title='{esc(_clean(tip), quote=True)}'>{esc(cid)}</th>")
    out.append("</tr></thead><tbody>")
    for host, hdata in report["hosts"].items():
        statuses = {c["status"] for c in hdata["controls"].values()}
        failing = " failing" if statuses & set(FAILING) else ""
        reboot = {True: "yes", False: "no", None: "—"}[hdata.get("reboot_required")]
        out.append(f"<tr class='host{failing}'><th>{esc(_clean(host))}</th><td>{reboot}</td>")
        out.extend(_html_cell(hdata["controls"].get(cid)) for cid in controls)
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _html_cell(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return "<td class='s-absent' title='not evaluated on this host'>·</td>"
    status = cell["status"]
    label = html.escape(_STATUS_LABEL[status])
    return (
        f"<td class='s-{status}'><details><summary>{label}</summary>"
        f"{_html_evidence(cell)}</details></td>"
    )


def _html_legend(report: Mapping[str, Any]) -> str:
    esc = html.escape
    out = ["<h2>Controls</h2><table class='grid' id='legend'><thead><tr>"]
    out.append("<th>ID</th><th>title</th><th>severity</th><th>references</th>")
    out.extend(f"<th>{esc(_STATUS_LABEL[s])}</th>" for s in STATUSES)
    out.append("</tr></thead><tbody>")
    for cid, meta in report["controls"].items():
        counts = report["summary"]["by_control"].get(cid, {})
        out.append(
            f"<tr><td>{esc(cid)}</td><td>{esc(_clean(meta.get('title') or ''))}</td>"
            f"<td>{esc(str(meta.get('severity')))}</td>"
            f"<td>{esc(_clean(_refs(meta.get('references') or {})))}</td>"
        )
        out.extend(f"<td>{counts.get(s, 0)}</td>" for s in STATUSES)
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _md_cell(text: Any) -> str:
    # Markdown renderers pass raw HTML through: escape it, and the table's pipes.
    return html.escape(_clean(text), quote=False).replace("|", "\\|").replace("\n", " ")


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}\n{text}\n{ticks}"


MD_MAX_CHARS = 60000  # GitHub/GitLab comment limits are 65536 / 1 000 000 characters
MD_MAX_HOSTS_LISTED = 10
MD_MAX_DETAIL_HOSTS = 5


def render_markdown(report: Mapping[str, Any], max_chars: int = MD_MAX_CHARS) -> str:
    """Merge-request comment: counts, one row per control, collapsible drift evidence."""
    run, summary, controls = report["run"], report["summary"], report["controls"]
    mode = "check mode (audit)" if run.get("check_mode") else "apply run"
    verdict = "PASSED" if summary["passed"] else "FAILED"
    lines = [
        f"## hvguard compliance: {verdict}",
        "",
        f"{mode} · {summary['hosts']} hosts · {summary['controls']} controls · "
        f"generated {run.get('generated', '')}",
        "",
        "| " + " | ".join(_STATUS_LABEL[s] for s in STATUSES) + " |",
        "|" + "---:|" * len(STATUSES),
        "| " + " | ".join(str(summary["by_status"][s]) for s in STATUSES) + " |",
        "",
    ]
    if summary.get("reboot_required"):
        lines += [f"Reboot required: {_md_cell(', '.join(summary['reboot_required']))}", ""]
    head = "| Control | Title | Severity | " + " | ".join(_STATUS_LABEL[s] for s in STATUSES)
    lines += [head + " | Hosts with drift or error |", "|---|---|---|" + "---:|" * 6 + "---|"]
    for cid, meta in controls.items():
        counts = summary["by_control"].get(cid, {})
        bad = [
            h
            for h, d in report["hosts"].items()
            if d["controls"].get(cid, {}).get("status") in FAILING
        ]
        shown = ", ".join(bad[:MD_MAX_HOSTS_LISTED])
        if len(bad) > MD_MAX_HOSTS_LISTED:
            shown += f" and {len(bad) - MD_MAX_HOSTS_LISTED} more"
        lines.append(
            f"| {cid} | {_md_cell(meta.get('title') or '')} | {meta.get('severity')} | "
            + " | ".join(str(counts.get(s, 0)) for s in STATUSES)
            + f" | {_md_cell(shown)} |"
        )
    body = "\n".join(lines) + "\n"
    details = list(_md_details(report))
    for i, block in enumerate(details):
        if len(body) + len(block) > max_chars:
            body += (
                f"\n_{len(details) - i} more evidence blocks left out (size cap): "
                "see the HTML or JSON report._\n"
            )
            break
        body += block
    return body


def _md_details(report: Mapping[str, Any]) -> Iterator[str]:
    for cid in report["controls"]:
        bad = [
            (h, d["controls"][cid])
            for h, d in report["hosts"].items()
            if d["controls"].get(cid, {}).get("status") in FAILING
        ]
        if not bad:
            continue
        parts = [f"\n<details><summary>{cid}: drift or error on {len(bad)} host(s)</summary>\n"]
        for host, cell in bad[:MD_MAX_DETAIL_HOSTS]:
            # A merge-request comment shows what is wrong, not every task that was fine.
            relevant = [e for e in cell["evidence"] if e.get("status") in FAILING]
            text = _clean(evidence_text(relevant or cell["evidence"]))
            parts.append(
                f"\n**{_md_cell(host)}** ({cell['status']})\n\n{_fence(_clip(text, 3000))}\n"
            )
        if len(bad) > MD_MAX_DETAIL_HOSTS:
            parts.append(f"\n_{len(bad) - MD_MAX_DETAIL_HOSTS} more host(s) not shown._\n")
        parts.append("\n</details>\n")
        yield "".join(parts)


def render_console(report: Mapping[str, Any], paths: Iterable[str] = ()) -> list[str]:
    """Compact per-control table for the end of the run."""
    cols = [
        ("compl", "compliant"),
        ("drift", "drift"),
        ("error", "error"),
        ("remed", "remediated"),
        ("disab", "disabled"),
        ("n/a", "not_applicable"),
    ]
    summary = report["summary"]
    verdict = "PASSED" if summary["passed"] else "FAILED"
    mode = "check mode" if report["run"].get("check_mode") else "apply run"
    lines = [f"hvguard compliance ({mode}): {verdict}, {summary['hosts']} hosts"]
    lines.append(f"{'control':<12} {'title':<40} " + " ".join(f"{c:>5}" for c, _ in cols))
    for cid, meta in report["controls"].items():
        title = str(meta.get("title") or "")
        title = title if len(title) <= 40 else title[:39] + "…"
        counts = summary["by_control"].get(cid, {})
        lines.append(
            f"{cid:<12} {title:<40} " + " ".join(f"{counts.get(s, 0):>5}" for _, s in cols)
        )
    total = summary["by_status"]
    lines.append(f"{'total':<12} {'':<40} " + " ".join(f"{total[s]:>5}" for _, s in cols))
    if summary.get("reboot_required"):
        lines.append("reboot required: " + ", ".join(summary["reboot_required"]))
    lines.extend(f"report: {p}" for p in paths)
    return lines


RENDERERS = {"json": render_json, "junit": render_junit, "html": render_html, "md": render_markdown}


def write_atomic(path: Path, text: str) -> None:
    """tmp file in the same directory + rename: readers never see a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # Evidence can quote host configuration: not world-readable.
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(
    report: Mapping[str, Any], report_dir: Path, formats: Iterable[str]
) -> list[Path]:
    written = []
    for fmt in formats:
        path = report_dir / FORMAT_FILES[fmt]
        write_atomic(path, RENDERERS[fmt](report))
        written.append(path)
    return written


# --------------------------------------------------------------------------------------
# Ansible adapter
# --------------------------------------------------------------------------------------

try:
    from ansible import context
    from ansible.plugins.callback import CallbackBase
    from ansible.release import __version__ as ANSIBLE_VERSION
except ImportError:  # pure functions above stay importable without Ansible
    CallbackBase = object  # type: ignore[assignment,misc]
    context = None  # type: ignore[assignment]
    ANSIBLE_VERSION = "unknown"


_INCLUDE_ACTIONS = frozenset(
    f"{prefix}{name}"
    for prefix in ("", "ansible.builtin.", "ansible.legacy.")
    for name in ("include_tasks", "include_role")
)


def _walk_tasks(items: Iterable[Any]) -> Iterator[Any]:
    for item in items or ():
        if hasattr(item, "block") and hasattr(item, "rescue"):
            yield from _walk_tasks([*item.block, *item.rescue, *item.always])
        else:
            yield item


def _role_names(roles: Iterable[Any]) -> set[str]:
    names: set[str] = set()
    for role in roles or ():
        names.add(role.get_name())
        names.update(dep.get_name() for dep in role.get_all_dependencies())
    return names


def _will_be_rescued(task: Any) -> bool:
    """True when a failure of ``task`` lands in an enclosing block's rescue section."""
    child, parent = task, getattr(task, "_parent", None)
    while parent is not None:
        rescue = getattr(parent, "rescue", None)
        body = getattr(parent, "block", None)
        if rescue and body is not None:
            uuids = {getattr(t, "_uuid", None) for t in body}
            if getattr(child, "_uuid", None) in uuids:
                return True
        child, parent = parent, getattr(parent, "_parent", None)
    return False


def _play_hosts(play: Any) -> list[str]:
    """Names of the hosts a play (batch) targets; empty when that cannot be told."""
    try:
        inventory = play.get_variable_manager()._inventory
        return [h.get_name() for h in inventory.get_hosts(play.hosts)]
    except Exception:  # only an optimisation of the report: never break the run
        return []


def _cli(key: str, default: Any = None) -> Any:
    if context is None:
        return default
    try:
        return context.CLIARGS.get(key, default)
    except AttributeError:
        return default


class CallbackModule(CallbackBase):  # type: ignore[misc,valid-type]
    """Thin adapter: Ansible events -> Aggregator, reports at play start and at the end."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "hvguard_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display: Any = None, options: Any = None) -> None:
        super().__init__(display=display, options=options)
        self._lock = threading.Lock()
        self._agg: Aggregator | None = None
        self._catalogue: dict[str, Any] = {}
        self._playbooks: list[str] = []
        self._warnings: list[str] = []
        self._started = _now()
        self._report_dir = Path("reports")
        self._formats: list[str] = list(FORMAT_FILES)
        self._dirty = False
        self._last_play: str | None = None
        self._play_diff = False

    # -- setup --------------------------------------------------------------------------
    def set_options(
        self, task_keys: Any = None, var_options: Any = None, direct: Any = None
    ) -> None:
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._report_dir = Path(self.get_option("report_dir") or "reports").absolute()
        os.environ["HVGUARD_REPORT_JSON"] = str(self._report_dir / FORMAT_FILES["json"])
        formats = [str(f).strip().lower() for f in self.get_option("formats") or []]
        bad = [f for f in formats if f not in FORMAT_FILES]
        if bad:
            self._warn(f"hvguard_report: unknown formats ignored: {', '.join(bad)}")
        self._formats = [f for f in formats if f in FORMAT_FILES]
        path = self.get_option("catalogue") or str(default_catalogue_path())
        try:
            self._catalogue = load_catalogue(path)
        except (OSError, ValueError) as exc:
            self._catalogue = {"path": path, "controls": {}}
            self._warn(f"hvguard_report: cannot read the control catalogue {path}: {exc}")
        except Exception as exc:  # a YAML error must not kill the playbook
            self._catalogue = {"path": path, "controls": {}}
            self._warn(f"hvguard_report: cannot parse the control catalogue {path}: {exc}")
        evidence_max = int(self.get_option("evidence_max_bytes") or DEFAULT_EVIDENCE_MAX)
        self._agg = Aggregator(self._catalogue["controls"], evidence_max=evidence_max)

    def _warn(self, msg: str) -> None:
        self._warnings.append(msg)
        self._display.warning(msg)

    # -- metadata -----------------------------------------------------------------------
    def _run_meta(self) -> dict[str, Any]:
        cat = self._catalogue
        return {
            "started": self._started,
            "check_mode": bool(_cli("check", False)),
            "diff_mode": bool(_cli("diff", False)) or self._play_diff,
            "ansible_version": ANSIBLE_VERSION,
            "playbooks": list(self._playbooks),
            "catalogue": {
                "path": cat.get("path"),
                "schema_version": cat.get("schema_version"),
                "sha256": cat.get("sha256"),
            },
            "complete": False,
            "warnings": list(self._warnings),
        }

    # -- events -------------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbooks.append(str(getattr(playbook, "_file_name", playbook)))

    def v2_playbook_on_play_start(self, play: Any) -> None:
        if self._agg is None:
            return
        # With `serial` every batch starts the same play again; only a new play can be a
        # gate reading the report, so batches do not rewrite it (hundreds of hosts).
        uuid = getattr(play, "_uuid", None)
        new_play = uuid is None or uuid != self._last_play
        self._last_play = uuid
        if new_play and self._agg.has_results() and self._dirty:
            self._write(complete=False)
        roles = _role_names(play.get_roles())
        tagged: set[str] = set()
        for task in _walk_tasks([*play.pre_tasks, *play.tasks, *play.post_tasks]):
            role = getattr(task, "_role", None)
            if role is not None:
                roles.add(role.get_name())
            if getattr(task, "_role_name", None):
                roles.add(str(task._role_name))
            tagged.update(control_ids(getattr(task, "tags", ()) or (), self._agg.catalogue)[0])
        expected = expected_controls(
            self._agg.catalogue,
            roles,
            tagged,
            only_tags=_cli("tags", ("all",)) or ("all",),
            skip_tags=_cli("skip_tags", ()) or (),
        )
        check_mode = getattr(play, "check_mode", None)
        self._play_diff = self._play_diff or bool(getattr(play, "diff", False))
        with self._lock:
            self._agg.start_play(
                play.get_name(),
                expected,
                None if check_mode is None else bool(check_mode),
                hosts=_play_hosts(play),
            )

    def _handle(self, result: Any, outcome: str, stops_host: bool = False) -> None:
        if self._agg is None:
            return
        task = getattr(result, "task", None) or result._task
        host = getattr(result, "host", None) or result._host
        data = getattr(result, "result", None)
        if data is None:
            data = result._result
        name = task.get_name() if task is not None else "?"
        tags = list(getattr(task, "tags", None) or ())
        check_mode = bool(getattr(task, "check_mode", False)) or bool(_cli("check", False))
        roles = {r.get_name() for r in [getattr(task, "_role", None)] if r is not None}
        if getattr(task, "_role_name", None):
            roles.add(str(task._role_name))  # include_role: the role is about to run
        with self._lock:
            if roles:
                self._agg.expect(
                    cid for cid, c in self._agg.catalogue.items() if c.get("role") in roles
                )
            if outcome == "ok" and getattr(task, "action", None) in _INCLUDE_ACTIONS:
                # A dynamic include that ran says nothing about the host: what it includes
                # does. (A skipped or failed include still counts.)
                return
            unknown = self._agg.record(
                host.get_name(), name, tags, outcome, data, check_mode, stops_host=stops_host
            )
            self._dirty = True
        for cid in unknown:
            self._warn(f"hvguard_report: task '{name}' is tagged {cid}, not in the catalogue")

    def v2_runner_on_ok(self, result: Any) -> None:
        self._handle(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if ignore_errors:
            self._handle(result, "failed_ignored")
            return
        task = getattr(result, "task", None)
        stops = not (task is not None and _will_be_rescued(task))
        self._handle(result, "failed", stops_host=stops)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._handle(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        task = getattr(result, "task", None)
        stops = not bool(getattr(task, "ignore_unreachable", False))
        self._handle(result, "unreachable", stops_host=stops)

    # Loop items: the final v2_runner_on_* result carries every item (its `results` list),
    # so items are accounted there once; counting them here too would double count.
    def v2_runner_item_on_ok(self, result: Any) -> None:
        return None

    def v2_runner_item_on_failed(self, result: Any) -> None:
        return None

    def v2_runner_item_on_skipped(self, result: Any) -> None:
        return None

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if self._agg is None:
            return
        report, paths = self._write(complete=True)
        if self.get_option("console"):
            for line in render_console(report, [str(p) for p in paths]):
                self._display.display(line)

    # -- output -------------------------------------------------------------------------
    def _write(self, complete: bool) -> tuple[dict[str, Any], list[Path]]:
        assert self._agg is not None
        with self._lock:
            meta = self._run_meta()
            meta["complete"] = complete
            report = build_report(self._agg, meta)
            self._dirty = False
        try:
            return report, write_reports(report, self._report_dir, self._formats)
        except OSError as exc:
            self._warn(f"hvguard_report: cannot write reports to {self._report_dir}: {exc}")
            return report, []
