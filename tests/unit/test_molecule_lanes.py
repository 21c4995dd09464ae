# SPDX-License-Identifier: Apache-2.0
"""mk/molecule.sh schedules lanes: "a>b+c" runs a then b in one lane, c beside them.

A fake `molecule` on PATH logs start and end of each scenario; the order of those events is
the schedule. Also checked: every scenario's lab is torn down, a failed scenario fails the
run but does not stop its lane, and make passes the group quoted (`>` is a redirect).
"""

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_MOLECULE = """#!/bin/sh
# molecule test -s NAME: log start, sleep a little, log end; NAME=bad fails.
echo "start $3" >> "$LOG"
sleep "${{FAKE_SLEEP:-0.3}}"
echo "end $3" >> "$LOG"
[ "$3" != bad ]
"""
FAKE_LAB = """#!/bin/sh
# python -m lab down --name molecule-NAME
echo "down $5" >> "$LOG"
"""


def _run(tmp_path: Path, *groups: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    for name, body in (("molecule", FAKE_MOLECULE), ("fakepy", FAKE_LAB)):
        script = bin_dir / name
        script.write_text(body.format())
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LAB_PY": str(bin_dir / "fakepy"),
        "LOG": str(log),
        "HVGUARD_TIMINGS": str(tmp_path / "timings"),
    }
    done = subprocess.run(
        ["bash", str(ROOT / "mk/molecule.sh"), *groups],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, log.read_text().splitlines()


def test_a_lane_runs_in_order_beside_the_other_lane(tmp_path):
    done, events = _run(tmp_path, "a>b+c")
    assert done.returncode == 0, done.stdout + done.stderr
    assert events.index("end a") < events.index("start b")
    assert events.index("start c") < events.index("end a")  # c runs beside a
    assert {e for e in events if e.startswith("down")} == {
        "down molecule-a",
        "down molecule-b",
        "down molecule-c",
    }
    timings = (tmp_path / "timings").read_text()
    assert "molecule a>b+c" in timings and "molecule b " in timings


def test_groups_run_one_after_the_other(tmp_path):
    done, events = _run(tmp_path, "a+b", "c")
    assert done.returncode == 0, done.stdout + done.stderr
    assert max(events.index("end a"), events.index("end b")) < events.index("start c")


def test_a_failure_fails_the_run_but_its_lane_goes_on(tmp_path):
    done, events = _run(tmp_path, "bad>b+c")
    assert done.returncode == 1
    assert "start b" in events and "end c" in events
    assert "molecule FAILED: bad" in done.stdout


def test_make_passes_the_ci_groups_quoted():
    out = subprocess.run(
        ["make", "-n", "molecule"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "mk/molecule.sh 'default+scrub' 'migration'" in out
    lanes = subprocess.run(
        ["make", "-n", "molecule", "MOLECULE_CI_GROUPS=default>migration+scrub"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "mk/molecule.sh 'default>migration+scrub'" in lanes
