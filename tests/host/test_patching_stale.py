# SPDX-License-Identifier: Apache-2.0
"""HVG-PAT-004 on this machine: hvguard_patch_facts finds processes running replaced code.

No VM: a stand-in QEMU is a copy of the system Python named ``qemu-system-hvgpat<N>`` with a
QEMU-like command line (``-name guest=...``, ``-uuid``); it loads a copied shared library with
ctypes and sleeps. The tests then replace the executable or the library the way dpkg does
(write a new file, rename it over the old path) and run the real module against the real
/proc: an identical replacement shows ``(deleted)`` but the same build-id (not stale, per
platform-facts), a different binary or library is stale, a removed one is stale.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import load_library, run_module

mod = load_library("hvguard_patch_facts")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (/proc/PID/map_files)")


def _python_elf() -> str:
    """A real interpreter binary to copy (`python3` on PATH may be a pyenv shell shim)."""
    for cand in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        path = os.path.realpath(cand) if cand else ""
        if path and os.path.isfile(path):
            with open(path, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    return path
    raise RuntimeError("no ELF python3 interpreter found")


PYTHON = _python_elf()
SCRIPT = (
    "import ctypes, sys, time; ctypes.CDLL(sys.argv[1]); print('ready', flush=True); "
    "time.sleep(300)"
)


def _lib(name: str) -> str:
    for base in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"):
        path = Path(base) / name
        if path.exists():
            return os.path.realpath(path)
    pytest.fail(f"{name} not found")


LIBZ = _lib("libz.so.1")
LIBEXPAT = _lib("libexpat.so.1")


class FakeQemu:
    def __init__(self, tmp: Path) -> None:
        self.name = f"qemu-system-hvgpat{os.getpid()}"
        self.exe = tmp / "bin" / self.name
        self.lib = tmp / "lib" / "libhvgpat.so"
        self.exe.parent.mkdir()
        self.lib.parent.mkdir()
        shutil.copy2(PYTHON, self.exe)
        shutil.copy2(LIBZ, self.lib)
        self.domain = "dom-pat,1"
        self.uuid = str(uuid.uuid4())
        self.proc = subprocess.Popen(
            [str(self.exe), "-c", SCRIPT, str(self.lib), "-name",
             "guest=dom-pat,,1,debug-threads=on", "-uuid", self.uuid],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        assert ready and self.proc.stdout and self.proc.stdout.readline() == "ready\n", (
            self.proc.stderr.read() if self.proc.stderr else ""
        )

    def replace(self, target: Path, source: str) -> None:
        """What dpkg does: unpack next to the file, rename over it."""
        new = target.with_name(target.name + ".dpkg-new")
        shutil.copy2(source, new)
        os.rename(new, target)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def qemu(tmp_path: Path) -> Iterator[FakeQemu]:
    fake = FakeQemu(tmp_path)
    try:
        yield fake
    finally:
        fake.stop()


def facts(capsys: pytest.CaptureFixture, tmp_path: Path, fake: FakeQemu) -> dict[str, Any]:
    result = run_module(
        mod,
        capsys,
        {
            "updates": False,
            "process_regex": fake.name,
            "reboot_required_file": str(tmp_path / "none"),
            "boot_dir": str(tmp_path / "none"),
            "uu_log": str(tmp_path / "none"),
            "qemu_log_dir": str(tmp_path / "none"),
        },
        check=True,
    )
    assert not result.get("failed"), result
    assert result["changed"] is False
    found = result["ansible_facts"]["hvguard_patch"]["qemu"]
    mine = [p for p in found["processes"] if p["pid"] == fake.proc.pid]
    assert len(found["processes"]) == 1 and len(mine) == 1, found
    return mine[0]


@pytest.mark.control("HVG-PAT-004")
def test_a_fresh_process_is_not_stale(qemu: FakeQemu, capsys, tmp_path: Path) -> None:
    proc = facts(capsys, tmp_path, qemu)
    assert (proc["name"], proc["uuid"], proc["exe"]) == (qemu.domain, qemu.uuid, str(qemu.exe))
    assert proc["stale"] is False and proc["changed"] == [] and proc["unchanged_replacements"] == []


@pytest.mark.control("HVG-PAT-004")
def test_identical_exe_replacement_is_deleted_but_not_stale(
    qemu: FakeQemu, capsys, tmp_path: Path
) -> None:
    """platform-facts: rename-replacing with the same file shows (deleted), same build-id."""
    qemu.replace(qemu.exe, PYTHON)
    assert os.readlink(f"/proc/{qemu.proc.pid}/exe").endswith(" (deleted)")
    proc = facts(capsys, tmp_path, qemu)
    assert proc["stale"] is False, proc
    [same] = proc["unchanged_replacements"]
    assert same["kind"] == "exe" and same["reason"] == "identical replacement"
    assert same["running_build_id"] == same["installed_build_id"]
    assert same["running_build_id"] == f"build-id:{mod.build_id(PYTHON)}"


@pytest.mark.control("HVG-PAT-004", effect=True)
def test_different_exe_makes_the_domain_stale(qemu: FakeQemu, capsys, tmp_path: Path) -> None:
    """A QEMU upgrade under a running domain: the running build-id is not the installed one."""
    other = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
    qemu.replace(qemu.exe, other)
    proc = facts(capsys, tmp_path, qemu)
    assert proc["stale"] is True and (proc["name"], proc["uuid"]) == (qemu.domain, qemu.uuid)
    [changed] = proc["changed"]
    assert changed["kind"] == "exe" and changed["reason"] == "build-id differs"
    assert changed["running_build_id"] == f"build-id:{mod.build_id(PYTHON)}"
    assert changed["installed_build_id"] == f"build-id:{mod.build_id(other)}"


@pytest.mark.control("HVG-PAT-004", effect=True)
def test_replaced_library_makes_the_domain_stale(qemu: FakeQemu, capsys, tmp_path: Path) -> None:
    """A library upgrade (deleted mapping in /proc/PID/maps) is found as well."""
    qemu.replace(qemu.lib, LIBZ)
    proc = facts(capsys, tmp_path, qemu)
    assert proc["stale"] is False
    assert [(u["path"], u["kind"]) for u in proc["unchanged_replacements"]] == [
        (str(qemu.lib), "library")
    ]
    qemu.replace(qemu.lib, LIBEXPAT)
    proc = facts(capsys, tmp_path, qemu)
    assert proc["stale"] is True
    [changed] = proc["changed"]
    assert (changed["path"], changed["kind"], changed["reason"]) == (
        str(qemu.lib), "library", "build-id differs"
    )  # fmt: skip
    assert changed["running_build_id"] == f"build-id:{mod.build_id(LIBZ)}"


@pytest.mark.control("HVG-PAT-004", effect=True)
def test_removed_exe_makes_the_domain_stale(qemu: FakeQemu, capsys, tmp_path: Path) -> None:
    qemu.exe.unlink()
    proc = facts(capsys, tmp_path, qemu)
    assert proc["stale"] is True
    assert [(c["kind"], c["reason"]) for c in proc["changed"]] == [("exe", "file removed")]
