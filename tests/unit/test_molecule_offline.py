# SPDX-License-Identifier: Apache-2.0
"""Molecule scenarios start without a network: CI reaches PyPI and Debian, never Galaxy.

Molecule's prerun, with galaxy.yml at the top, builds this whole tree (venv and lab images
included) as a collection and asks Galaxy for its dependencies: in CI that hung until the
90-minute limit. Each scenario's `molecule syntax` runs here in a network namespace with no
route anywhere; it must finish, and quickly, or the scenario would not start in CI either.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in ROOT.glob("molecule/*/molecule.yml"))
# A hang guard, not a speed target: syntax takes ~2 s; the prerun it replaces took > 6 min.
HANG_S = 120


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_starts_with_no_network(scenario: str) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
    }
    try:
        done = subprocess.run(
            ["unshare", "--net", "molecule", "syntax", "-s", scenario],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=HANG_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"molecule syntax -s {scenario} still running after {HANG_S}s offline: "
            f"{(exc.stdout or b'')[-2000:]!r}"
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "prerun" not in done.stdout + done.stderr
