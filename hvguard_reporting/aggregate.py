# SPDX-License-Identifier: Apache-2.0
"""Aggregation: task results -> host x control cells -> the JSON report (schema 1.x)."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import waivers as _waivers
from .advice import action
from .classify import classify, items
from .evidence import as_text, clip, entry
from .model import (
    _RANK,
    FAILING,
    SCHEMA_VERSION,
    STATUSES,
    control_ids,
    control_summary,
    verdict,
)

DEFAULT_EVIDENCE_MAX = 16 * 1024


def _size(item: Mapping[str, Any]) -> int:
    return len(json.dumps(item, default=str))


@dataclass
class Cell:
    """One host x control."""

    status: str = "not_applicable"
    evidence: list[dict[str, Any]] = field(default_factory=list)
    results: int = 0
    omitted: int = 0
    size: int = 0
    seen: bool = False
    duration: float = 0.0
    remedy: str | None = None  # a finding's manual fix (the pack cannot apply it here)

    def add(
        self, status: str, entries: list[dict[str, Any]], cap: int, duration: float = 0.0
    ) -> None:
        if not self.seen or _RANK[status] > _RANK[self.status]:
            self.status = status
        self.seen = True
        self.results += 1
        self.duration += max(0.0, duration)
        for item in entries:
            self._keep(item, cap)

    def _keep(self, item: dict[str, Any], cap: int) -> None:
        size = _size(item)
        # Make room by dropping lower-ranked evidence first, so a late drift or error is
        # never lost behind a pile of compliant results.
        while self.size + size > cap:
            victim = min(
                (
                    i
                    for i, e in enumerate(self.evidence)
                    if _RANK[e["status"]] < _RANK[item["status"]]
                ),
                key=lambda i: _RANK[self.evidence[i]["status"]],
                default=None,
            )
            if victim is None:
                break
            self.size -= _size(self.evidence.pop(victim))
            self.omitted += 1
        if self.size + size > cap:
            small = _shrink(item, cap - self.size)
            if small is None:
                self.omitted += 1
                return
            item, size = small, _size(small)
        self.evidence.append(item)
        self.size += size

    def as_dict(self) -> dict[str, Any]:
        extra = {"remedy": self.remedy} if self.remedy else {}
        return extra | {
            "status": self.status,
            "results": self.results,
            "evidence": list(self.evidence),
            "evidence_truncated": self.omitted > 0
            or any(e.get("truncated") for e in self.evidence),
            "evidence_omitted": self.omitted,
            "duration": round(self.duration, 3),
        }


def _shrink(item: dict[str, Any], room: int) -> dict[str, Any] | None:
    """Cut the long text fields of an entry so that it fits in ``room`` bytes."""
    if room < 200:
        return None
    small = dict(item)
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
        self.groups: dict[str, list[str]] = {}  # host -> inventory groups (waiver patterns)
        self.domains: dict[str, list[str]] = {}  # host -> running domains (from the facts)

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
        duration: float = 0.0,
    ) -> list[str]:
        """Account one final task result; returns control IDs not in the catalogue."""
        self.results += 1
        self.modes["check" if check_mode else "apply"] += 1
        if self.plays:
            self.plays[-1].results += 1
        self._capture_facts(host, result)
        known, unknown = control_ids(tags, self.catalogue)
        fresh_unknown = [u for u in unknown if u not in self.unknown_ids]
        self.unknown_ids.update(unknown)
        for cid in known:
            variable = self.catalogue[cid].get("variable")
            status, entries = classify(outcome, task, result, check_mode, variable)
            host_cells = self.cells.setdefault(host, {})
            cell = host_cells.setdefault(cid, Cell())
            cell.add(status, entries, self.evidence_max, duration)
            if status in FAILING and result.get("hvguard_remedy"):
                cell.remedy = clip(as_text(result["hvguard_remedy"]), 1024)
        if stops_host and self.plays:
            msg = as_text(result.get("msg")) or outcome
            self.plays[-1].stopped.setdefault(host, {"task": task, "msg": clip(msg, 2048)})
        return fresh_unknown

    def _capture_facts(self, host: str, result: Mapping[str, Any]) -> None:
        for res in [result, *items(result)]:
            facts = res.get("ansible_facts")
            if isinstance(facts, Mapping) and "hvguard_reboot_required" in facts:
                # Last write wins, as for the fact itself.
                self.reboot[host] = as_bool(facts["hvguard_reboot_required"])
            if isinstance(facts, Mapping) and isinstance(facts.get("hvguard"), Mapping):
                self.set_domains(host, facts["hvguard"])

    def set_domains(self, host: str, hvguard_facts: Mapping[str, Any]) -> None:
        """Running domains from the hvguard facts (libvirt.domains), when they list them."""
        libvirt = hvguard_facts.get("libvirt")
        domains = libvirt.get("domains") if isinstance(libvirt, Mapping) else None
        if isinstance(domains, list):
            self.domains[host] = sorted(
                str(d.get("name"))
                for d in domains
                if isinstance(d, Mapping) and d.get("state") == "running"
            )

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
                    host_cells[cid] = {
                        "status": "error",
                        "results": 0,
                        "evidence": [entry(why["task"], "host_failed", "error", msg=msg)],
                        "evidence_truncated": False,
                        "evidence_omitted": 0,
                        "duration": 0.0,
                    }
        return out


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y")
    return bool(value)


def now() -> str:
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


def _waive(
    agg: Aggregator,
    cells: dict[str, dict[str, dict[str, Any]]],
    waivers: Sequence[_waivers.Waiver],
    today: _dt.date,
) -> None:
    """Drift with an active waiver becomes ``waived``; an expired one is noted, still drift."""
    for host, host_cells in cells.items():
        for cid, cell in host_cells.items():
            if cell["status"] != "drift":
                continue
            waiver = _waivers.find(waivers, cid, host, agg.groups.get(host, ()))
            if waiver is None:
                continue
            cell["waiver"] = waiver.as_dict(today)
            if not cell["waiver"]["expired"]:
                cell["status"] = "waived"


def build_report(
    agg: Aggregator,
    run: Mapping[str, Any],
    waivers: Sequence[_waivers.Waiver] = (),
    today: _dt.date | None = None,
) -> dict[str, Any]:
    """The JSON report (schema 1.x) from the aggregated state and run metadata."""
    cells = agg.final_cells()
    _waive(agg, cells, waivers, today or _dt.datetime.now(_dt.UTC).date())
    hosts: dict[str, Any] = {}
    by_status = dict.fromkeys(STATUSES, 0)
    by_control: dict[str, dict[str, int]] = {}
    by_host: dict[str, dict[str, int]] = {}
    for host in sorted(set(cells) | set(agg.reboot)):
        controls = dict(sorted(cells.get(host, {}).items()))
        domains = agg.domains.get(host)
        for cid, cell in controls.items():
            remedy = cell.pop("remedy", None)
            if cell["status"] in FAILING:
                meta = agg.catalogue[cid]
                cell["action"] = action(cid, meta, host, cell["status"], domains, remedy)
        hosts[host] = {
            "reboot_required": agg.reboot.get(host),
            "running_domains": domains,
            "controls": controls,
        }
        by_host[host] = dict.fromkeys(STATUSES, 0)
        for cid, cell in controls.items():
            status = cell["status"]
            by_status[status] += 1
            by_control.setdefault(cid, dict.fromkeys(STATUSES, 0))[status] += 1
            by_host[host][status] += 1
    used = sorted({cid for h in hosts.values() for cid in h["controls"]})
    # No control judged on any host (no catalogue, so no control could be; or every host
    # unreachable): nothing was audited, and that must not read as a pass.
    audited = bool(used)
    summary = {
        "hosts": len(hosts),
        "controls": len(used),
        "passed": audited and all(by_status[s] == 0 for s in FAILING),
        "verdict": verdict(by_status) if audited else "error",
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
        "run": {**run, "generated": now()},
        "summary": summary,
        "controls": {cid: control_summary(agg.catalogue[cid]) for cid in used},
        "hosts": hosts,
    }
