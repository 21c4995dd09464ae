# SPDX-License-Identifier: Apache-2.0
"""Per-scenario state on disk: which VMs run where (survives the lab process for `down`)."""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import paths

STATE_FILE = "state.json"


@dataclass
class VmState:
    name: str
    index: int
    ssh_port: int
    private_ip: str
    private_mac: str
    memory: int
    cpus: int
    disks: list[int] = field(default_factory=list)
    pid: int = 0

    def dir(self, scenario: Path) -> Path:
        return scenario / self.name


@dataclass
class ScenarioState:
    name: str
    slot: int
    accel: str
    image: str
    vms: list[VmState] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ScenarioState":
        raw = json.loads(text)
        vms = [VmState(**vm) for vm in raw.pop("vms", [])]
        return cls(vms=vms, **raw)


def load(cache: Path, name: str) -> ScenarioState | None:
    path = paths.scenario_dir(cache, name) / STATE_FILE
    if not path.is_file():
        return None
    return ScenarioState.from_json(path.read_text())


def save(cache: Path, state: ScenarioState) -> None:
    path = paths.scenario_dir(cache, state.name) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, path)


def all_names(cache: Path) -> list[str]:
    run = paths.run_dir(cache)
    if not run.is_dir():
        return []
    return sorted(p.name for p in run.iterdir() if p.is_dir())
