# SPDX-License-Identifier: Apache-2.0
"""HVG-PAT-003 on this machine: pending security updates, their age and the deadline.

A private APT root (tests/fixtures/modules/aptrepo.py) with two local repositories built
offline with dpkg-deb and dpkg-scanpackages: one whose Release file carries the Debian-Security
origin (platform-facts: Origin Debian, Label Debian-Security, Suite stable-security) and one
plain Debian "stable". Two installed packages each have a newer version, one in each. The real
module runs the real apt-get against that root; only the security update counts, its age
comes from the state file, and the host's own APT state is never read or written.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from aptrepo import MAIN, SECURITY, AptWorld, have_tools
from hvguard_loader import load_library, run_module

mod = load_library("hvguard_patch_facts")
pytestmark = pytest.mark.skipif(not have_tools(), reason="needs dpkg-dev and apt")
DAY = 86400
HOST_APT = [Path("/var/lib/dpkg/status"), Path("/etc/apt"), Path("/var/lib/apt/lists")]


def host_apt_fingerprint() -> str:
    digest = hashlib.sha256()
    for top in HOST_APT:
        for path in sorted([top, *top.rglob("*")] if top.is_dir() else [top]):
            if path.is_file() and not path.is_symlink():
                st = path.stat()
                digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def host_apt_untouched() -> Iterator[None]:
    before = host_apt_fingerprint()
    yield
    assert host_apt_fingerprint() == before, "a test touched the host's APT state"


@pytest.fixture
def world(tmp_path: Path, host_apt_untouched: None) -> AptWorld:
    apt = AptWorld(tmp_path)
    apt.install("hvgtest-sec", "1.0-1")
    apt.install("hvgtest-main", "2.0-1")
    apt.publish("security", SECURITY, "hvgtest-sec", "1.0-1+deb12u1")
    apt.publish("main", MAIN, "hvgtest-main", "2.1-1")
    apt.update()
    return apt


def gather(capsys, world: AptWorld, state: Path, check: bool = False) -> dict[str, Any]:
    none = str(world.tmp / "none")
    result = run_module(
        mod,
        capsys,
        {
            "apt_config": str(world.apt_conf),
            "state_file": str(state),
            "process_regex": "hvguard-no-such-process",
            "reboot_required_file": none,
            "boot_dir": none,
            "uu_log": none,
        },
        check=check,
    )
    assert not result.get("failed"), result
    return result


def test_the_local_repository_carries_the_security_origin(world: AptWorld) -> None:
    policy = world.policy()
    assert "o=Debian,a=stable-security,n=bookworm-security,l=Debian-Security" in policy, policy
    assert "o=Debian,a=stable,n=bookworm,l=Debian" in policy, policy
    assert "Candidate: 1.0-1+deb12u1" in world.policy("hvgtest-sec")


@pytest.mark.control("HVG-PAT-003")
def test_only_the_security_update_counts_and_is_recorded(
    world: AptWorld, capsys, tmp_path: Path
) -> None:
    state = tmp_path / "state" / "first-seen.json"
    before = time.time()
    result = gather(capsys, world, state)
    updates = result["ansible_facts"]["hvguard_patch"]["updates"]
    assert updates["ok"] is True, updates
    [sec] = updates["security"]
    assert (sec["name"], sec["installed"], sec["candidate"]) == (
        "hvgtest-sec", "1.0-1", "1.0-1+deb12u1"
    )  # fmt: skip
    assert sec["origins"] == ["Debian-Security:stable-security"]
    assert sec["recorded"] is True and sec["age_days"] == 0.0
    assert before <= sec["first_seen"] <= time.time()
    assert [(o["name"], o["candidate"]) for o in updates["other"]] == [("hvgtest-main", "2.1-1")]
    assert result["changed"] is True
    recorded = json.loads(state.read_text())["first_seen"]
    assert recorded == {"hvgtest-sec=1.0-1+deb12u1": sec["first_seen"]}
    # Second run: same first-seen, nothing written.
    again = gather(capsys, world, state)
    assert again["changed"] is False
    assert (
        again["ansible_facts"]["hvguard_patch"]["updates"]["security"][0]["first_seen"]
        == (sec["first_seen"])
    )


@pytest.mark.control("HVG-PAT-003")
def test_check_mode_writes_no_state_and_reports_unrecorded(
    world: AptWorld, capsys, tmp_path: Path
) -> None:
    state = tmp_path / "first-seen.json"
    result = gather(capsys, world, state, check=True)
    [sec] = result["ansible_facts"]["hvguard_patch"]["updates"]["security"]
    assert (sec["recorded"], sec["first_seen"], sec["age_days"]) == (False, None, 0.0)
    assert result["changed"] is False and not state.exists()
    assert result["ansible_facts"]["hvguard_patch"]["updates"]["state_changed"] is True


@pytest.mark.control("HVG-PAT-003", effect=True)
def test_age_comes_from_first_seen_and_installing_the_fix_clears_it(
    world: AptWorld, capsys, tmp_path: Path
) -> None:
    """An update first seen 40 days ago is 40 days old (also in check mode); once installed it
    is no longer pending and its entry goes. The non-security update never ages."""
    state = tmp_path / "first-seen.json"
    old = time.time() - 40 * DAY
    entries = {"hvgtest-sec=1.0-1+deb12u1": old, "hvgtest-main=2.1-1": old}
    state.write_text(json.dumps({"version": 1, "first_seen": entries}))
    stamp = state.stat().st_mtime_ns
    checked = gather(capsys, world, state, check=True)["ansible_facts"]["hvguard_patch"]
    [sec] = checked["updates"]["security"]
    assert sec["recorded"] is True and sec["first_seen"] == old
    assert 39.99 < sec["age_days"] < 40.01
    assert state.stat().st_mtime_ns == stamp, "check mode wrote the state file"

    world.install("hvgtest-sec", "1.0-1+deb12u1")
    result = gather(capsys, world, state)
    updates = result["ansible_facts"]["hvguard_patch"]["updates"]
    assert updates["security"] == [] and [o["name"] for o in updates["other"]] == ["hvgtest-main"]
    assert json.loads(state.read_text())["first_seen"] == {}
