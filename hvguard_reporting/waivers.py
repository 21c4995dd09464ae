# SPDX-License-Identifier: Apache-2.0
"""Waivers: a versioned YAML file in the inventory that accepts a control's drift on some
hosts, for a reason, by someone, until a date. A waived drift is status ``waived`` and does
not fail the gate; an expired waiver leaves the drift (with a note). Errors are never
waived: a control that could not be evaluated says nothing a waiver could accept.

File format (``inventories/<inv>/hvguard_waivers.yml``)::

    waivers:
      - control: HVG-MEM-001
        hosts: [hv-legacy-*, legacy]       # host names or group names, shell patterns
        justification: legacy BIOS boots no drop-in; replaced in Q2
        approver: jane.doe
        expires: 2027-03-31                # valid through that day (UTC)
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import CONTROL_ID_RE

WAIVER_FILE = "hvguard_waivers.yml"
_FIELDS = ("control", "hosts", "justification", "approver", "expires")


@dataclass(frozen=True)
class Waiver:
    control: str
    hosts: tuple[str, ...]
    justification: str
    approver: str
    expires: _dt.date
    source: str

    def matches(self, host: str, groups: Iterable[str] = ()) -> bool:
        names = [host, *groups]
        return any(fnmatch.fnmatchcase(n, p) for p in self.hosts for n in names)

    def as_dict(self, today: _dt.date) -> dict[str, Any]:
        return {
            "justification": self.justification,
            "approver": self.approver,
            "expires": self.expires.isoformat(),
            "expired": today > self.expires,
            "source": self.source,
        }


def _date(value: Any) -> _dt.date:
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    return _dt.date.fromisoformat(str(value))


def parse(data: Any, source: str) -> tuple[list[Waiver], list[str]]:
    """Waivers from the parsed file; a bad entry is left out with a warning (fail closed:
    its drift stays drift)."""
    entries = data.get("waivers") if isinstance(data, Mapping) else None
    if not isinstance(entries, list):
        return [], [f"hvguard_report: {source}: no 'waivers' list; no waiver applied"]
    found: list[Waiver] = []
    warnings: list[str] = []
    for i, raw in enumerate(entries):
        where = f"{source}: waiver {i + 1}"
        if not isinstance(raw, Mapping):
            warnings.append(f"hvguard_report: {where} is not a mapping; ignored")
            continue
        missing = [f for f in _FIELDS if raw.get(f) in (None, "", [])]
        if missing:
            warnings.append(f"hvguard_report: {where} lacks {', '.join(missing)}; ignored")
            continue
        hosts = raw["hosts"] if isinstance(raw["hosts"], list) else [raw["hosts"]]
        try:
            expires = _date(raw["expires"])
        except ValueError:
            warnings.append(f"hvguard_report: {where}: expires is no date (YYYY-MM-DD); ignored")
            continue
        if not CONTROL_ID_RE.match(str(raw["control"])):
            warnings.append(f"hvguard_report: {where}: {raw['control']!r} is no control ID")
            continue
        found.append(
            Waiver(
                control=str(raw["control"]),
                hosts=tuple(str(h) for h in hosts),
                justification=str(raw["justification"]),
                approver=str(raw["approver"]),
                expires=expires,
                source=source,
            )
        )
    return found, warnings


def load(paths: Iterable[str | Path]) -> tuple[list[Waiver], list[str]]:
    """Waivers from every existing file of ``paths``; unreadable files warn."""
    import yaml

    waivers: list[Waiver] = []
    warnings: list[str] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            warnings.append(f"hvguard_report: cannot read waivers {path}: {exc}")
            continue
        more, warn = parse(data, str(path))
        waivers += more
        warnings += warn
    return waivers, warnings


def inventory_files(inventories: Iterable[str]) -> list[Path]:
    """hvguard_waivers.yml beside (or in) each inventory source."""
    out: list[Path] = []
    for source in inventories or ():
        path = Path(str(source)).expanduser()
        if "," in str(source) and not path.exists():
            continue  # a host list such as "localhost,"
        candidate = (path if path.is_dir() else path.parent) / WAIVER_FILE
        if candidate not in out:
            out.append(candidate)
    return out


def find(
    waivers: Iterable[Waiver], control: str, host: str, groups: Iterable[str] = ()
) -> Waiver | None:
    """The waiver for this host x control: an active one before an expired one."""
    matching = [w for w in waivers if w.control == control and w.matches(host, groups)]
    return max(matching, key=lambda w: w.expires, default=None)
