# SPDX-License-Identifier: Apache-2.0
"""Every hvguard filter is documented: `ansible-doc -t filter NAME` renders it (issue 10).

Ansible reads a filter's documentation from a sidecar ``filter_plugins/NAME.yml``. The test
asserts one per filter, that ansible-doc renders all of them and lists none as
UNDOCUMENTED, and that each documents exactly the parameters its Python function takes (a
renamed or added parameter makes the page wrong, so it fails here).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "filter_plugins"
DOC = [str(ROOT / ".venv" / "bin" / "ansible-doc"), "-t", "filter"]


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_hvguard_filters_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def filters() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(PLUGINS.glob("*.py")):
        out.update(_load(path).FilterModule().filters())
    return out


FILTERS = filters()


def run_doc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DOC, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_each_filter_documents_the_parameters_it_takes(name: str) -> None:
    sidecar = PLUGINS / f"{name}.yml"
    assert sidecar.exists(), f"{name}: no {sidecar.relative_to(ROOT)} (ansible-doc -t filter)"
    doc = yaml.safe_load(sidecar.read_text())["DOCUMENTATION"]
    assert doc["name"] == name
    params = list(inspect.signature(FILTERS[name]).parameters)
    documented = list(doc.get("options") or {})
    assert documented[:1] == ["_input"], f"{name}: the first option documents the input"
    assert set(documented[1:]) == set(params[1:]), (
        f"{name}: documents {documented[1:]}, the function takes {params[1:]}"
    )


def test_ansible_doc_renders_every_filter_and_lists_none_undocumented() -> None:
    rendered = run_doc("--json", *sorted(FILTERS))
    assert rendered.returncode == 0, rendered.stderr
    docs = json.loads(rendered.stdout)
    assert sorted(docs) == sorted(FILTERS)
    for name, entry in docs.items():
        assert entry["doc"]["short_description"], name
        assert entry["examples"] and name in entry["examples"], f"{name}: no example uses it"
        assert entry["return"]["_value"]["description"], name
    listing = run_doc("-l")
    assert listing.returncode == 0, listing.stderr
    undocumented = [
        line.split()[0]
        for line in listing.stdout.splitlines()
        if "hvguard_" in line and "UNDOCUMENTED" in line
    ]
    assert undocumented == []
