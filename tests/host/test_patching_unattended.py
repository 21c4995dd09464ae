# SPDX-License-Identifier: Apache-2.0
"""HVG-PAT-001 with the real unattended-upgrades: only the security update is picked.

The private APT root of tests/fixtures/modules/aptrepo.py (a Debian-Security repository and a
plain Debian one, one pending update in each) gets Debian's own 50unattended-upgrades (shipped
in /usr/share/unattended-upgrades/) and the role's rendered drop-in. unattended-upgrades runs
in --dry-run mode through its ``main(options, rootdir=...)`` (the command line resets APT's
Dir to /, so APT_CONFIG cannot sandbox it), inside a private mount namespace with tmpfs over
/run, /var/lib/apt, /var/cache/apt and /var/log: its hard-coded lock, pid and progress files
and any download stay off this machine. Its log must list only the security package; with
Debian's defaults alone (no drop-in) it also picks the non-security one.

unattended-upgrades comes from the installed package (CI: .ci/apt-packages.txt) or, on a
development machine without it, from an unpacked tree named by HVGUARD_UU_ROOT
(``apt-get download unattended-upgrades python3-distro-info python3-dbus`` and
``dpkg-deb -x`` each into one directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from aptrepo import MAIN, SECURITY, AptWorld, have_tools
from hvguard_loader import load_library

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "hvguard_patching"
UU_ROOT = Path(os.environ.get("HVGUARD_UU_ROOT", "/"))
UU_SCRIPT = UU_ROOT / "usr/bin/unattended-upgrade"
DEBIAN_DEFAULTS = UU_ROOT / "usr/share/unattended-upgrades/50unattended-upgrades"
RUNNER = """
import importlib.machinery, importlib.util, sys
script, rootdir = sys.argv[1], sys.argv[2]
loader = importlib.machinery.SourceFileLoader("unattended_upgrade", script)
spec = importlib.util.spec_from_loader("unattended_upgrade", loader)
uu = importlib.util.module_from_spec(spec)
sys.modules["unattended_upgrade"] = uu
loader.exec_module(uu)
options = uu.Options()
options.dry_run = True
options.verbose = True
sys.exit(uu.main(options, rootdir=rootdir))
"""
pytestmark = pytest.mark.skipif(
    not (UU_SCRIPT.exists() and have_tools() and shutil.which("unshare") and os.geteuid() == 0),
    reason="needs root, unshare, dpkg-dev and unattended-upgrades (or HVGUARD_UU_ROOT)",
)


def render_dropin() -> str:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"), trim_blocks=True,
        keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
    )  # fmt: skip
    return env.get_template("52hvguard-unattended-upgrades.j2").render(defaults)


def dry_run(tmp: Path, with_dropin: bool) -> str:
    world = AptWorld(tmp)
    world.install("hvgtest-sec", "1.0-1")
    world.install("hvgtest-main", "2.0-1")
    world.publish("security", SECURITY, "hvgtest-sec", "1.0-1+deb12u1")
    world.publish("main", MAIN, "hvgtest-main", "2.1-1")
    world.update()
    root = world.root
    for sub in ("var/lib/dpkg/updates", "var/run", "var/log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    confd = root / "etc/apt/apt.conf.d"
    shutil.copy(DEBIAN_DEFAULTS, confd / "50unattended-upgrades")
    if with_dropin:
        (confd / "52hvguard-unattended-upgrades").write_text(render_dropin())
    # The test root only: no syslog socket in the namespace, the private dpkg status.
    (confd / "99hvguard-test").write_text(
        'Unattended-Upgrade::SyslogEnable "false";\n'
        f'Dir::State::status "{root}/var/lib/dpkg/status";\n'
        'Debug::NoLocking "true";\nAPT::Architecture "amd64";\n'
    )
    runner = tmp / "runner.py"
    runner.write_text(RUNNER)
    pythonpath = UU_ROOT / "usr/lib/python3/dist-packages"
    hide = " && ".join(
        f"mount -t tmpfs tmpfs {d}" for d in ("/run", "/var/lib/apt", "/var/cache/apt", "/var/log")
    )
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'{hide} && exec /usr/bin/python3 "$0" "$1" "$2"', str(runner), str(UU_SCRIPT),
         str(root)],
        env={**os.environ, "PYTHONPATH": str(pythonpath), "LC_ALL": "C.UTF-8"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return (root / "var/log/unattended-upgrades/unattended-upgrades.log").read_text()


@pytest.mark.control("HVG-PAT-001", effect=True)
def test_unattended_upgrades_picks_only_the_security_update(tmp_path: Path) -> None:
    """The role's drop-in on top of Debian's defaults: the real unattended-upgrades allows
    only the security origin and would upgrade only the security package."""
    log = dry_run(tmp_path, with_dropin=True)
    assert (
        "Allowed origins are: origin=Debian,codename=bookworm-security,label=Debian-Security\n"
        in log
    ), log
    assert "Packages that will be upgraded: hvgtest-sec\n" in log, log
    assert "hvgtest-main" not in log
    # hvguard_patch_facts reads this very log.
    facts = load_library("hvguard_patch_facts").uu_facts(
        str(tmp_path / "aptroot/var/log/unattended-upgrades/unattended-upgrades.log"), 0.0
    )
    assert facts["last_run"] is not None and facts["errors"] == []


def test_debian_defaults_alone_also_pick_the_plain_update(tmp_path: Path) -> None:
    """Negative control: what the drop-in prevents (Debian's defaults allow the point-release
    origin too)."""
    log = dry_run(tmp_path, with_dropin=False)
    assert "Packages that will be upgraded: hvgtest-main hvgtest-sec\n" in log, log
