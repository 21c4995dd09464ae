# SPDX-License-Identifier: Apache-2.0
"""What the user asks for: VMs with memory, vCPUs and extra disks (CLI flags or platforms)."""

import json
import re
from dataclasses import dataclass, field
from typing import Any

from lab.errors import LabError
from lab.net import check_hostname

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
DEFAULT_MEM = 1536
DEFAULT_CPUS = 2
MAX_DISKS = 8


@dataclass(frozen=True)
class VmSpec:
    name: str
    memory: int = DEFAULT_MEM
    cpus: int = DEFAULT_CPUS
    disks: tuple[int, ...] = field(default_factory=tuple)


def parse_size(text: str, what: str = "disk size") -> int:
    """'4G', '512M', '10GiB' -> bytes; bare numbers are bytes."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise LabError(f"invalid {what} '{text}'", "use a number with K, M, G or T, e.g. 4G")
    size = int(match.group(1)) * _UNITS[match.group(2).upper()]
    if size < 1024**2:
        raise LabError(f"{what} '{text}' is below 1 MiB", "use e.g. 1G")
    return size


def _positive_int(value: Any, what: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise LabError(f"{what} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise LabError(f"{what} must be between {low} and {high}, got {number}")
    return number


def vm_spec(raw: dict[str, Any]) -> VmSpec:
    """One platform entry: {name, memory|mem, cpus, disks: [size, ...]}."""
    if not isinstance(raw, dict) or "name" not in raw:
        raise LabError(f"platform entry {raw!r} has no 'name'")
    name = check_hostname(str(raw["name"]))
    mem = _positive_int(
        raw.get("memory", raw.get("mem", DEFAULT_MEM)), f"{name}: memory (MiB)", 256, 65536
    )
    cpus = _positive_int(raw.get("cpus", DEFAULT_CPUS), f"{name}: cpus", 1, 64)
    disks_raw = raw.get("disks", [])
    if isinstance(disks_raw, str):
        disks_raw = [disks_raw]
    if not isinstance(disks_raw, list) or len(disks_raw) > MAX_DISKS:
        raise LabError(
            f"{name}: disks must be a list of at most {MAX_DISKS} sizes, got {disks_raw!r}"
        )
    disks = tuple(parse_size(str(d), f"{name}: disk size") for d in disks_raw)
    return VmSpec(name=name, memory=mem, cpus=cpus, disks=disks)


def platforms_from_json(text: str) -> list[VmSpec]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabError(f"--platforms is not valid JSON: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise LabError("--platforms must be a non-empty JSON list of {name, memory, cpus, disks}")
    specs = [vm_spec(item) for item in raw]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LabError(f"duplicate VM names in platforms: {', '.join(dupes)}")
    return specs


def platforms_from_flags(
    name: str, vms: int, memory: int, cpus: int, disks: list[str]
) -> list[VmSpec]:
    """`--vms N`: one VM is named like the scenario, several are <scenario>-1..N."""
    count = _positive_int(vms, "--vms", 1, 8)
    names = [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]
    return [vm_spec({"name": n, "memory": memory, "cpus": cpus, "disks": disks}) for n in names]
