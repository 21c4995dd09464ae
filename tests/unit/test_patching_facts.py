# SPDX-License-Identifier: Apache-2.0
"""library/hvguard_patch_facts: the parts that need no running process or APT root.

Debian version order against the real ``dpkg --compare-versions``, apt-get's simulation
lines, QEMU command lines, the ELF note parser on synthetic 32/64-bit files, the reboot
state from a fake sentinel and /boot (HVG-PAT-005), the unattended-upgrades log, and the
module's argument checks and documentation.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import ansible_doc, load_library, run_module

mod = load_library("hvguard_patch_facts")
DAY = 86400

VERSION_PAIRS = [
    ("1.0", "1.0"), ("1.0", "1.0~rc1"), ("1.0~rc1", "1.0~rc2"), ("1:1.0", "2.0"),
    ("1.0a", "1.0"), ("1.0-1", "1.0-1+deb12u1"), ("2.9.1+nmu3", "2.9.1+nmu10"),
    ("6.1.0-30-amd64", "6.1.0-28-amd64"), ("6.1.0-9-amd64", "6.1.0-10-amd64"),
    ("1:7.2+dfsg-7+deb12u6", "1:7.2+dfsg-7+deb12u12"), ("1.0.0", "1.0"), ("a", "1"),
    ("1.0-1", "1.0"), ("0:1.0", "1.0"), ("1.2-3~bpo12+1", "1.2-3"),
]  # fmt: skip


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg not installed")
@pytest.mark.parametrize(("a", "b"), VERSION_PAIRS)
def test_version_order_matches_dpkg(a: str, b: str) -> None:
    ours = mod.compare_versions(a, b)
    for op, want in (("lt", ours < 0), ("eq", ours == 0), ("gt", ours > 0)):
        dpkg = subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False).returncode
        assert (dpkg == 0) == want, f"{a} {op} {b}: dpkg says {dpkg == 0}"


SEC = "Debian-Security:12/stable-security"
SIMULATION = "\n".join(
    [
        "NOTE: This is only a simulation!",
        "Reading package lists...",
        f"Inst libssl3 [3.0.11-1~deb12u1] (3.0.11-1~deb12u2 Debian:12.8/stable, {SEC} [amd64])",
        "Inst tzdata [2024a-0+deb12u1] (2024b-0+deb12u1 Debian:12.8/stable [all])",
        f"Inst qemu-system-x86 [1:7.2+dfsg-7+deb12u6] (1:7.2+dfsg-7+deb12u7 {SEC} [amd64]) []",
        f"Inst linux-image-6.1.0-30-amd64 (6.1.0-30 {SEC} [amd64])",
        f"Conf libssl3 (3.0.11-1~deb12u2 Debian:12.8/stable, {SEC} [amd64])",
        "",
    ]
)


@pytest.mark.control("HVG-PAT-003")
def test_simulation_lines_split_into_security_and_other() -> None:
    security, other = mod.parse_simulation(SIMULATION, re.compile("-security$"))
    assert [(s["name"], s["installed"], s["candidate"]) for s in security] == [
        ("libssl3", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2"),
        ("qemu-system-x86", "1:7.2+dfsg-7+deb12u6", "1:7.2+dfsg-7+deb12u7"),
        ("linux-image-6.1.0-30-amd64", None, "6.1.0-30"),
    ]
    assert security[0]["origins"] == ["Debian:12.8/stable", "Debian-Security:12/stable-security"]
    assert [(o["name"], o["origins"]) for o in other] == [("tzdata", ["Debian:12.8/stable"])]


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["-name", "guest=web1,debug-threads=on", "-uuid", "u-1"], ("web1", "u-1")),
        (["-name", "guest=a,,b,debug-threads=on"], ("a,b", None)),
        (["-name", "plain"], ("plain", None)),
        (["-machine", "pc", "-uuid", "u-2"], (None, "u-2")),
        (["-name"], (None, None)),
    ],
)
def test_qemu_identity(argv: list[str], want: tuple[str | None, str | None]) -> None:
    assert mod.qemu_identity(["/usr/bin/qemu-system-x86_64", *argv]) == want


def elf(path: Path, wide: bool, big: bool, build_id: bytes | None) -> Path:
    """A minimal ELF file with one PT_NOTE segment holding the given notes."""
    end = ">" if big else "<"
    notes = struct.pack(end + "III", 4, 4, 1) + b"ABC\0" + b"xxxx"  # another note first
    if build_id is not None:
        pad = b"\0" * (-len(build_id) % 4)
        notes += struct.pack(end + "III", 4, len(build_id), 3) + b"GNU\0" + build_id + pad
    ehsize, phsize = (64, 56) if wide else (52, 32)
    ident = b"\x7fELF" + bytes([2 if wide else 1, 2 if big else 1, 1]) + b"\0" * 9
    if wide:
        header = ident + struct.pack(end + "HHIQQQIHHHHHH", 2, 62, 1, 0, ehsize, 0, 0,
                                     ehsize, phsize, 1, 0, 0, 0)  # fmt: skip
        phdr = struct.pack(end + "IIQQQQQQ", 4, 4, ehsize + phsize, 0, 0, len(notes),
                           len(notes), 4)  # fmt: skip
    else:
        header = ident + struct.pack(end + "HHIIIIIHHHHHH", 2, 3, 1, 0, ehsize, 0, 0,
                                     ehsize, phsize, 1, 0, 0, 0)  # fmt: skip
        phdr = struct.pack(end + "IIIIIIII", 4, ehsize + phsize, 0, 0, len(notes),
                           len(notes), 4, 4)  # fmt: skip
    path.write_bytes(header + phdr + notes)
    return path


@pytest.mark.parametrize("wide", [True, False])
@pytest.mark.parametrize("big", [False, True])
def test_build_id_from_pt_note(tmp_path: Path, wide: bool, big: bool) -> None:
    path = elf(tmp_path / "a", wide, big, bytes.fromhex("0123456789abcdef01234567"))
    assert mod.build_id(str(path)) == "0123456789abcdef01234567"
    assert mod.build_id(str(elf(tmp_path / "b", wide, big, None))) is None


def test_content_id_falls_back_to_sha256(tmp_path: Path) -> None:
    plain = tmp_path / "script"
    plain.write_text("#!/bin/sh\n")
    assert mod.content_id(str(plain)).startswith("sha256:")
    assert mod.content_id(str(tmp_path / "missing")) is None
    with_id = elf(tmp_path / "e", True, False, b"\xaa\xbb")
    assert mod.content_id(str(with_id)) == "build-id:aabb"


# -- HVG-PAT-005: reboot pending -------------------------------------------------------------
def boot(tmp: Path, *releases: tuple[str, float]) -> Path:
    directory = tmp / "boot"
    directory.mkdir(exist_ok=True)
    for release, mtime in releases:
        path = directory / f"vmlinuz-{release}"
        path.write_text("k")
        os.utime(path, (mtime, mtime))
    return directory


@pytest.mark.control("HVG-PAT-005")
def test_newer_installed_kernel_is_a_pending_reboot_aged_from_its_install(tmp_path: Path) -> None:
    now = time.time()
    directory = boot(
        tmp_path, ("6.1.0-9-amd64", now - 90 * DAY), ("6.1.0-10-amd64", now - 40 * DAY)
    )
    facts = mod.reboot_facts(str(tmp_path / "none"), str(directory), "6.1.0-9-amd64", now)
    assert facts["required"] is True and facts["kernel_outdated"] is True
    assert facts["newest_kernel"] == "6.1.0-10-amd64" and facts["sentinel"] is False
    assert facts["age_days"] == 40.0
    current = mod.reboot_facts(str(tmp_path / "none"), str(directory), "6.1.0-10-amd64", now)
    assert (current["required"], current["age_days"], current["since"]) == (False, 0.0, None)


@pytest.mark.control("HVG-PAT-005")
def test_sentinel_is_a_pending_reboot_with_its_packages(tmp_path: Path) -> None:
    now = time.time()
    sentinel = tmp_path / "reboot-required"
    sentinel.write_text("*** System restart required ***\n")
    (tmp_path / "reboot-required.pkgs").write_text("libc6\nlinux-base\n")
    os.utime(sentinel, (now - 3 * DAY, now - 3 * DAY))
    facts = mod.reboot_facts(str(sentinel), str(tmp_path / "noboot"), "6.18.0", now)
    assert (facts["required"], facts["sentinel"], facts["kernel_outdated"]) == (True, True, False)
    assert facts["packages"] == ["libc6", "linux-base"] and facts["age_days"] == 3.0
    # Both: the older of the two starts the clock.
    directory = boot(tmp_path, ("6.19.0", now - 10 * DAY))
    assert mod.reboot_facts(str(sentinel), str(directory), "6.18.0", now)["age_days"] == 10.0


# -- unattended-upgrades log -----------------------------------------------------------------
UU_LOG = "\n".join(
    [
        "2026-11-28 06:10:01,101 INFO Starting unattended upgrades script",
        "2026-11-28 06:10:02,000 ERROR old error from an earlier run",
        "2026-11-30 06:12:33,123 INFO Starting unattended upgrades script",
        "2026-11-30 06:12:33,200 INFO Allowed origins are: origin=Debian,"
        "codename=bookworm-security,label=Debian-Security",
        "2026-11-30 06:12:40,000 INFO package linux-image-amd64 kept back because it needs a "
        "new package",
        "2026-11-30 06:12:41,000 ERROR Installing the upgrades failed!",
        "2026-11-30 06:12:41,001 ERROR error message: 'E:Sub-process /usr/bin/dpkg returned "
        "an error code (1)'",
        "",
    ]
)


def test_uu_log_last_run_errors_and_kept_back(tmp_path: Path) -> None:
    log = tmp_path / "uu.log"
    log.write_text(UU_LOG)
    last = time.mktime(time.strptime("2026-11-30 06:12:33", "%Y-%m-%d %H:%M:%S"))
    facts = mod.uu_facts(str(log), last + DAY / 2)
    assert facts["log_present"] is True and facts["last_run"] == last
    assert facts["last_run_age_days"] == 0.5
    assert facts["errors"] == [
        "Installing the upgrades failed!",
        "error message: 'E:Sub-process /usr/bin/dpkg returned an error code (1)'",
    ]
    assert facts["kept_back"] == [
        "package linux-image-amd64 kept back because it needs a new package"
    ]
    assert mod.uu_facts(str(tmp_path / "none"), last)["log_present"] is False


# -- module ----------------------------------------------------------------------------------
def test_bad_regex_fails_clearly(capsys: pytest.CaptureFixture) -> None:
    result = run_module(mod, capsys, {"security_suite_regex": "(", "updates": False})
    assert (
        result["failed"]
        and "security_suite_regex is not a valid regular expression" in (result["msg"])
    )


def test_without_apt_get_updates_report_an_error(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = run_module(
        mod, capsys, {"state_file": str(tmp_path / "s.json"), "proc_dir": str(tmp_path)}
    )
    updates = result["ansible_facts"]["hvguard_patch"]["updates"]
    assert (updates["ok"], updates["error"]) == (False, "apt-get not found")
    assert result["changed"] is False and not (tmp_path / "s.json").exists()


def test_documentation_renders() -> None:
    text = ansible_doc("hvguard_patch_facts")
    assert "state_file" in text and "security_suite_regex" in text


@pytest.mark.control("HVG-PAT-001")
@pytest.mark.skipif(not Path("/var/lib/dpkg/status").exists(), reason="no dpkg database")
def test_installed_packages_agree_with_dpkg_query() -> None:
    """The role installs only what this reports missing: it must agree with dpkg itself on
    this machine's database (installed, removed-but-configured, never heard of)."""
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\\t${db:Status-Status}\\t${Version}\\n"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    rows = [line.split("\t") for line in listed]
    installed = [r for r in rows if r[1] == "installed"][:40]
    others = [r for r in rows if r[1] != "installed"][:10]
    names = [r[0] for r in installed + others] + ["hvguard-no-such-package"]
    got = mod.installed_packages("/var/lib/dpkg/status", names)
    want = {r[0]: r[2] for r in installed} | {r[0]: None for r in others}
    assert got == want | {"hvguard-no-such-package": None}
    assert mod.installed_packages("/nonexistent/status", ["dpkg"]) == {"dpkg": None}
