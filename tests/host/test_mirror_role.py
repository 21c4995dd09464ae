# SPDX-License-Identifier: Apache-2.0
"""hvguard_mirror through playbooks/mirror.yml on this machine in check mode, against a
sandbox: the role's paths point into a temporary tree and its facts say libvirt runs with no
domain (no libvirtd is needed: the reconciler is given the domain list). Every file control
drifts with evidence, the hook's evidence is its checksum and size (not its source), the
kernel's missing gate is drift, nothing is written, and the audit's round trips are counted
(issue 15: the staged roles will join the baseline's budget).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import given_facts, other_roles_off

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
NFT = shutil.which("nft") or "/usr/sbin/nft"
HOOK = ROOT / "roles" / "hvguard_mirror" / "files" / "hvguard-mirror-hook"
# Round trips of the mirror role's check-mode audit here (its facts are given, so 5 + 1 on a
# host), a ratchet: it was 11 with one copy, file or template task per file.
MIRROR_ROUND_TRIPS = 5

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path(NFT).exists(), reason="needs root and nft"
)


def tree_digest(top: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(top.rglob("*")):
        digest.update(str(path).encode() + (path.read_bytes() if path.is_file() else b"d"))
    return digest.hexdigest()


@pytest.mark.control("HVG-NET-001", "HVG-NET-002")
def test_check_mode_reports_every_missing_piece_and_writes_nothing(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    extra = {
        "hvguard": given_facts(running=True, error=None),
        "ansible_python_interpreter": sys.executable,
        "__hvguard_mirror_hook_dir": str(etc / "hooks" / "qemu.d"),
        "__hvguard_mirror_conf_dir": str(etc / "hvguard"),
        "__hvguard_mirror_nft_dir": str(etc / "nftables.d"),
        "__hvguard_mirror_unit_dir": str(etc / "systemd"),
        "__hvguard_mirror_state_dir": str(tmp_path / "run"),
        "__hvguard_mirror_log": str(tmp_path / "mirror.log"),
        "__hvguard_mirror_nft_bin": NFT,
        # A gate table name no host has: its absence is the drift, whatever this host runs.
        "__hvguard_mirror_gate_table": f"hvgtest_gate_{os.getpid()}",
        **other_roles_off("hvguard_mirror"),
    }
    varfile = tmp_path / "extra.json"
    varfile.write_text(json.dumps(extra))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CALLBACKS_ENABLED": "hvguard_report,hvguard_rtt",
           "HVGUARD_REPORT_DIR": str(tmp_path / "reports"),
           "HVGUARD_RTT_FILE": str(tmp_path / "rtt.json")}  # fmt: skip
    before = tree_digest(etc)
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbooks/mirror.yml", "-e", f"@{varfile}",
         "--check", "--diff"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert tree_digest(etc) == before, "the check-mode audit wrote into the sandbox"
    report = json.loads((tmp_path / "reports" / "hvguard-report.json").read_text())
    controls = report["hosts"]["localhost"]["controls"]
    assert controls["HVG-NET-001"]["status"] == "drift", controls["HVG-NET-001"]
    assert controls["HVG-NET-002"]["status"] == "drift", controls["HVG-NET-002"]
    evidence = json.dumps(controls["HVG-NET-001"])
    hook_sum = hashlib.sha256(HOOK.read_bytes()).hexdigest()
    assert f"sha256 {hook_sum}, {HOOK.stat().st_size} bytes" in evidence
    assert "def main" not in evidence, "the hook's source is in the evidence"
    assert '"monitor"' in evidence.replace('\\"', '"'), "the hook configuration's text is shown"
    rtt = json.loads((tmp_path / "rtt.json").read_text())["hosts"]["localhost"]
    assert rtt["round_trips"] <= MIRROR_ROUND_TRIPS, rtt["by_task"]
