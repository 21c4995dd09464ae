# SPDX-License-Identifier: Apache-2.0
"""Issue 10, GitOps: `ansible-pull ... playbooks/pull.yml` from a git repository holding this
working tree. Audit mode (default) audits this machine in check mode and gates with the
usual exit codes; apply mode runs site.yml on this machine (the opt-in is pull.yml's) but
refuses to mint a migration TLS CA per host; an unknown mode is refused. Nothing here
changes this machine: the apply run turns every control off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import config_fingerprint

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "modules"))
from hvguard_baseline import baseline_controls  # noqa: E402

BIN = ROOT / ".venv" / "bin"
CATALOGUE = yaml.safe_load((ROOT / "controls" / "catalogue.yml").read_text())
ALL_OFF = {c["variable"]: False for c in CATALOGUE["controls"]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository with this working tree's files (tracked and new, not ignored)."""
    repo = tmp_path_factory.mktemp("pull") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, files):
        src, dst = ROOT / name.decode(), repo / name.decode()
        if src.is_file() and not src.is_symlink():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
            dst.chmod(src.stat().st_mode)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "snapshot"], cwd=repo, check=True)
    return repo


def pull(repo: Path, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {"ANSIBLE_NOCOLOR": "1", "HVGUARD_REPORT_DIR": str(tmp_path / "reports")}
    proc = subprocess.run(
        [str(BIN / "ansible-pull"), "-U", f"file://{repo}", "-d", str(tmp_path / "checkout"),
         "-i", "inventories/localhost/hosts.yml", "playbooks/pull.yml", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    return proc, proc.stdout + proc.stderr


def report(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "reports" / "hvguard-report.json").read_text())


def test_pull_audit_checks_this_machine_and_gates(repo: Path, tmp_path: Path) -> None:
    before = config_fingerprint()
    proc, out = pull(repo, tmp_path, "-e", "hvguard_audit_fail_on_drift=true")
    assert config_fingerprint() == before, "the pull-mode audit changed this machine"
    rep = report(tmp_path)
    assert rep["run"]["mode"] == "check", rep["run"]
    controls = rep["hosts"]["localhost"]["controls"]
    assert set(controls) == baseline_controls()
    failing = [cid for cid, c in controls.items() if c["status"] in ("drift", "error")]
    assert proc.returncode == (2 if failing else 0), out[-3000:]
    if failing:
        assert f"localhost {failing[0]}:" in out


def test_pull_apply_runs_site_on_this_machine(repo: Path, tmp_path: Path) -> None:
    extra = tmp_path / "off.json"
    extra.write_text(json.dumps({**ALL_OFF, "hvguard_pull_mode": "apply"}))
    before = config_fingerprint()
    proc, out = pull(repo, tmp_path, "-e", f"@{extra}")
    assert config_fingerprint() == before
    assert proc.returncode == 0, out[-3000:]
    assert "refusing" not in out and "Apply the hvguard baseline" in out
    rep = report(tmp_path)
    assert rep["run"]["mode"] == "apply", rep["run"]
    statuses = {c["status"] for c in rep["hosts"]["localhost"]["controls"].values()}
    assert statuses == {"disabled"}, statuses


def test_pull_apply_refuses_a_ca_per_host(repo: Path, tmp_path: Path) -> None:
    proc, out = pull(repo, tmp_path, "-e", "hvguard_pull_mode=apply")
    assert proc.returncode == 2, out[-3000:]
    assert "would generate a migration TLS CA on localhost" in out
    assert "changed=0" in out


def test_pull_refuses_an_unknown_mode(repo: Path, tmp_path: Path) -> None:
    proc, out = pull(repo, tmp_path, "-e", "hvguard_pull_mode=enforce")
    assert proc.returncode != 0
    assert "hvguard_pull_mode must be audit or apply, not enforce" in out
