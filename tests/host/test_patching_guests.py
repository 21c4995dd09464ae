# SPDX-License-Identifier: Apache-2.0
"""HVG-PAT-002 with Debian's real libvirt-guests.sh: a host shutdown never leaves guests off.

The role's rendered /etc/default/libvirt-guests is bind-mounted over the real path inside a
private mount namespace (tmpfs over /run and /var/lib/libvirt, where the script keeps its lock
and its list of guests), and /usr/lib/libvirt/libvirt-guests.sh runs ``stop`` (what a host
shutdown runs) and then ``start`` (what the next boot runs) against a scripted ``virsh`` first
on PATH: two running guests, one shut off. With the role's policy the two running guests are
shut down cleanly (or managed-saved) and started again, the stopped one stays off, and nothing
is destroyed. With Debian 12's defaults (ON_BOOT=ignore) they stay off: the negative control.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "hvguard_patching"
SCRIPT = Path("/usr/lib/libvirt/libvirt-guests.sh")
pytestmark = pytest.mark.skipif(
    not (SCRIPT.exists() and shutil.which("unshare") and os.geteuid() == 0),
    reason="needs root, unshare and libvirt-daemon-system's libvirt-guests.sh",
)
GUESTS = {"11111111-1111-1111-1111-111111111111": ("web1", "running"),
          "22222222-2222-2222-2222-222222222222": ("db1", "running"),
          "33333333-3333-3333-3333-333333333333": ("idle1", "off")}  # fmt: skip
# A scripted virsh: state in $VIRSH_STATE/<uuid> ("name state"), every call in calls.
FAKE_VIRSH = r"""#!/bin/sh
S="$VIRSH_STATE"
[ "$1" = "-c" ] && shift 2
echo "$*" >> "$S/calls"
uuid_of() {
  for f in "$S"/*-*; do
    read n st < "$f"; { [ "$n" = "$1" ] || [ "${f##*/}" = "$1" ]; } && echo "${f##*/}"
  done
}
set_state() { u="$(uuid_of "$1")"; read n st < "$S/$u"; echo "$n $2" > "$S/$u"; }
case "$1" in
  connect|uri) exit 0 ;;
  list)
    [ "$3" = "--transient" ] && exit 0
    for f in "$S"/*-*; do read n st < "$f"; [ "$st" = running ] && echo "${f##*/}"; done; exit 0 ;;
  domname) read n st < "$S/$2"; echo "$n" ;;
  domid) read n st < "$S/$2"; [ "$st" = running ] && echo 7 || echo - ;;
  shutdown) set_state "$2" off ;;
  managedsave) shift; [ "$1" = "--bypass-cache" ] && shift; set_state "$1" saved ;;
  start) shift; [ "$1" = "--bypass-cache" ] && shift; set_state "$1" running ;;
  domtime) exit 0 ;;
  *) echo "fake virsh: unexpected $*" >&2; exit 1 ;;
esac
"""


def render(**overrides: object) -> str:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"), trim_blocks=True,
        keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
    )  # fmt: skip
    return env.get_template("libvirt-guests.j2").render({**defaults, **overrides})


def shutdown_and_boot(tmp: Path, config: str) -> tuple[dict[str, str], list[str]]:
    """Run the real script's stop, then start; return the guests' states and virsh calls."""
    state = tmp / "state"
    state.mkdir()
    for uuid, (name, st) in GUESTS.items():
        (state / uuid).write_text(f"{name} {st}\n")
    fakebin = tmp / "bin"
    fakebin.mkdir()
    (fakebin / "virsh").write_text(FAKE_VIRSH)
    (fakebin / "virsh").chmod(0o755)
    conf = tmp / "libvirt-guests"
    conf.write_text(config)
    inner = (
        "mount -t tmpfs tmpfs /run && mkdir -p /run/lock && "
        "mount -t tmpfs tmpfs /var/lib/libvirt && "
        f'mount --bind "{conf}" /etc/default/libvirt-guests && '
        f'sh "{SCRIPT}" stop && sh "{SCRIPT}" start'
    )
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
        env={**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}",
             "VIRSH_STATE": str(state), "LC_ALL": "C"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    states = {GUESTS[u][0]: (state / u).read_text().split()[1] for u in GUESTS}
    return states, (state / "calls").read_text().splitlines()


@pytest.mark.control("HVG-PAT-002", effect=True)
@pytest.mark.parametrize(
    ("policy", "stop_call"), [("shutdown", "shutdown"), ("suspend", "managedsave")]
)
def test_guests_stopped_by_a_host_shutdown_come_back(
    tmp_path: Path, policy: str, stop_call: str
) -> None:
    states, calls = shutdown_and_boot(tmp_path, render(hvguard_patching_guests_on_shutdown=policy))
    assert states == {"web1": "running", "db1": "running", "idle1": "off"}, calls
    verbs = [c.split()[0] for c in calls]
    assert verbs.count(stop_call) == 2 and verbs.count("start") == 2, calls
    assert not {"destroy", "undefine"} & set(verbs), calls
    started = sorted(c.split()[-1] for c in calls if c.startswith("start"))
    assert started == ["db1", "web1"]


def test_debian_defaults_leave_the_guests_off(tmp_path: Path) -> None:
    """Negative control: Debian 12's shipped settings (ON_SHUTDOWN=shutdown, ON_BOOT=ignore)."""
    states, calls = shutdown_and_boot(tmp_path, "#ON_BOOT=start\n#ON_SHUTDOWN=shutdown\n")
    assert states == {"web1": "off", "db1": "off", "idle1": "off"}, calls
    assert not [c for c in calls if c.startswith("start")]
