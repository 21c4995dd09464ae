# SPDX-License-Identifier: Apache-2.0
"""HVG-STO-001: the scrub scenario's own scripts fail when their checks fail.

molecule/scrub/files/sigkill.sh runs on the lab VM; here its commands are bash functions
(exported functions win over PATH, which the script resets), so a failing raw-disk scan can
be staged on any host.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SIGKILL = Path(__file__).resolve().parents[2] / "molecule/scrub/files/sigkill.sh"

STUBS = r"""
log() { echo "CALL $*" >>"$CALLS"; }
systemctl() { log systemctl "$@"; }
lvcreate() { log lvcreate "$@"; }
lvs() { log lvs "$@"; }
lvm() { log lvm "$@"; }
dd() { log dd "$@"; }
journalctl() { :; }
grep() { log grep "$@"; return 2; }  # the device cannot be read
hvguard-scrub() {
  case "$1" in
    queue) echo '{"jobs": [{"id": "j1", "done": 4096, "state": "scrubbing",
                            "quarantine": "vmvg/hvgscrub-j1-big"}]}' ;;
    scrub) sleep 30 ;;
  esac
}
export -f log systemctl lvcreate lvs lvm dd journalctl grep hvguard-scrub
"""


def test_sigkill_scan_failure_fails_the_script(tmp_path):
    """`fail` used to run inside $(count ...): it ended only the subshell, its message became
    the count, and the script went on (here to remove the grab LV and blame the marker)."""
    calls = tmp_path / "calls"
    res = subprocess.run(
        ["bash", "-c", f"{STUBS}\nbash {SIGKILL}"],
        env={"CALLS": str(calls), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    fails = [line for line in res.stdout.splitlines() if line.startswith("FAIL")]
    assert res.returncode == 1
    assert fails == ["FAIL scan of /dev/vmvg/grab failed (grep rc=2)"]
    assert "RESULT PASS" not in res.stdout
    assert "CALL lvm lvremove -q -f vmvg/grab" not in calls.read_text()
