# SPDX-License-Identifier: Apache-2.0
"""Issue 10: the execution environment definition validates with ansible-builder (schema v3)
and carries the runtime, not the development toolchain; the requirements split keeps
`make venv` (requirements.txt) installing everything it did.

ansible-builder comes from the dev toolchain (requirements-dev.txt); HVGUARD_ANSIBLE_BUILDER
names another copy (e.g. a temporary venv) when the shared one predates it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILDER = os.environ.get("HVGUARD_ANSIBLE_BUILDER") or str(
    ROOT / ".venv" / "bin" / "ansible-builder"
)
DEV_ONLY = {"molecule", "ansible-lint", "pytest", "ruff", "yamllint", "mitogen", "ansible-builder"}


def pins(name: str) -> dict[str, str]:
    """Package -> version of one requirements file, following -r includes."""
    out: dict[str, str] = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out |= pins(line[3:].strip())
        elif line:
            pkg, _, version = line.partition("==")
            assert version, f"{name}: {line} is not pinned"
            out[pkg.lower()] = version
    return out


def test_requirements_split_runtime_from_dev() -> None:
    runtime, everything = pins("requirements-runtime.txt"), pins("requirements.txt")
    assert {"ansible", "ansible-core", "cryptography", "jinja2", "pyyaml"} <= set(runtime)
    assert not DEV_ONLY & set(runtime), DEV_ONLY & set(runtime)
    assert set(runtime) <= set(everything) and set(everything) >= DEV_ONLY
    assert pins("requirements-dev.txt") == everything


def test_venv_stamp_depends_on_every_requirements_file() -> None:
    rule = re.search(r"^\$\(VENV\)/\.stamp: (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert rule, "no venv stamp rule"
    assert set(rule.group(1).split()) == {p.name for p in ROOT.glob("requirements*.txt")}


def builder() -> str:
    if not shutil.which(BUILDER):
        pytest.skip(f"ansible-builder not installed ({BUILDER}); make venv installs it")
    return BUILDER


def create(definition: Path, context: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [builder(), "create", "-f", str(definition), "-c", str(context)],
        cwd=definition.parent, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_execution_environment_validates(tmp_path: Path) -> None:
    definition = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    proc = create(ROOT / "execution-environment.yml", tmp_path / "ctx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = tmp_path / "ctx" / "_build"
    recipe = next(
        p for p in (tmp_path / "ctx").iterdir() if p.name in ("Containerfile", "Dockerfile")
    )
    text = recipe.read_text()
    core = pins("requirements-runtime.txt")["ansible-core"]
    assert f"ansible-core=={core}" in text, "the EE's ansible-core differs from the pinned one"
    assert (build / "requirements.txt").read_text() == (
        ROOT / "requirements-runtime.txt"
    ).read_text()
    assert (build / "bindep.txt").read_text() == (ROOT / "bindep.txt").read_text()
    assert (build / "requirements.yml").read_text() == (ROOT / "requirements.yml").read_text()


def test_a_broken_definition_is_rejected(tmp_path: Path) -> None:
    """ansible-builder create really validates (an unknown key fails it)."""
    for name in ("requirements-runtime.txt", "requirements.yml", "bindep.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    definition = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    definition["dependencies"]["pyhton"] = definition["dependencies"].pop("python")
    (tmp_path / "ee.yml").write_text(yaml.safe_dump(definition))
    proc = create(tmp_path / "ee.yml", tmp_path / "ctx")
    assert proc.returncode != 0
    assert "pyhton" in proc.stdout + proc.stderr
