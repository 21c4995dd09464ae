# SPDX-License-Identifier: Apache-2.0
"""Host tests run real roles on this machine against sandboxes.

Two guards keep that honest:
- ``other_roles_off(role)``: site.yml applies every role, so a test of one role turns every
  other role's control toggles off (from the catalogue, so a new role is covered by default).
  It also opts in to applying to this machine (``hvguard_apply_to_controller``): site.yml
  refuses the controller otherwise, and these tests apply to sandboxes on purpose.
- ``host_config_untouched``: a session-wide fixture that fails the run if any host test
  changed the system configuration a role would manage (a sandbox leak is a real change on
  whoever runs the tests, CI included).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = yaml.safe_load((ROOT / "controls" / "catalogue.yml").read_text())

# Every path one of the roles writes on a real hypervisor.
GUARDED = [
    "/etc/pki",
    "/etc/libvirt/libvirtd.conf",
    "/etc/libvirt/qemu.conf",
    "/etc/libvirt/virtproxyd.conf",
    "/etc/libvirt/virtqemud.conf",
    "/etc/libvirt/hooks",
    "/etc/default/grub.d",
    "/etc/tmpfiles.d",
    "/etc/lvm/lvmlocal.conf",
    "/etc/nftables.conf",
    "/etc/nftables.d",
    "/etc/hvguard",
    "/etc/systemd/system",
    "/usr/local/sbin",
    "/usr/local/lib/hvguard",
    "/etc/apt/apt.conf.d",
    "/etc/needrestart",
    "/etc/default/libvirt-guests",
    "/var/lib/hvguard",
]


def other_roles_off(role: str) -> dict[str, bool]:
    """Toggle variables of every control that does not belong to ``role``, all False, plus
    the opt-in that lets site.yml apply to this machine (the sandboxes are the target)."""
    off = {c["variable"]: False for c in CATALOGUE["controls"] if c["role"] != role}
    return {**off, "hvguard_apply_to_controller": True}


def config_fingerprint(paths: list[str] = GUARDED) -> dict[str, str]:
    """Path -> digest of content, mode and owner, for every file under the guarded paths."""
    found: dict[str, str] = {}
    for top in map(Path, paths):
        candidates = [top] if not top.is_dir() else sorted(top.rglob("*"))
        if top.is_dir():
            found[str(top)] = "dir"
        for path in candidates:
            if path.is_symlink():
                found[str(path)] = "->" + str(path.readlink())
            elif path.is_file():
                st = path.stat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path)] = f"{digest}:{st.st_mode:o}:{st.st_uid}:{st.st_gid}"
            elif path.is_dir():
                found[str(path)] = "dir"
    return found


@pytest.fixture(scope="session", autouse=True)
def host_config_untouched() -> Iterator[None]:
    before = config_fingerprint()
    yield
    after = config_fingerprint()
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"host tests changed this machine's configuration: {changed}"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[object]:
    """The mirror tests' network-namespace lab (tests/host/mirror_netns.py), torn down
    even when the test fails."""
    from mirror_netns import Lab

    netns_lab = Lab(tmp_path)
    try:
        yield netns_lab.up()
    finally:
        netns_lab.down()
