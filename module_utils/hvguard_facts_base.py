# SPDX-License-Identifier: Apache-2.0
"""hvguard_facts, shared part: running commands and reading the host below a root.

The collectors of each area (hvguard_facts_host, hvguard_facts_libvirt) build on the
``FactsBase`` helpers; ``library/hvguard_facts.py`` combines them into one module call.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

URI = "qemu:///system"
SBIN_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/libexec")
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)


@dataclass
class CmdResult:
    rc: int
    out: str
    err: str


def run_command(argv: list[str], timeout: int) -> CmdResult:
    """Run argv; a missing binary is rc 127 and a timeout rc 124, never an exception."""
    env = dict(os.environ, LC_ALL="C", LANG="C")
    env.pop("LIBVIRT_DEFAULT_URI", None)
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError as exc:
        return CmdResult(127, "", str(exc))
    except PermissionError as exc:
        return CmdResult(126, "", str(exc))
    except subprocess.TimeoutExpired:
        return CmdResult(124, "", f"{argv[0]}: timed out after {timeout}s")
    return CmdResult(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class FactsBase:
    """Reads the host below ``root`` (``/`` in production, a fake tree in tests)."""

    root: str = "/"
    timeout: int = 10
    with_domains: bool = True
    uri: str = URI  # tests point this at libvirt's test:///default driver
    qemu_run_dir: str = "/run/libvirt/qemu"  # where qemu:///system keeps <domain>.pid
    runner: Callable[[list[str], int], CmdResult] = run_command
    warnings: list[str] = field(default_factory=list)

    # -- filesystem helpers --------------------------------------------------------------
    def path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def read(self, path: str) -> str | None:
        try:
            with open(self.path(path), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    def read_int(self, path: str) -> int | None:
        text = self.read(path)
        try:
            return int(text.strip()) if text is not None else None
        except ValueError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(self.path(path))

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

    def find_binary(self, name: str) -> str | None:
        """Host path of an installed binary (searched below root in the usual dirs)."""
        for directory in SBIN_DIRS:
            candidate = f"{directory}/{name}"
            if os.access(self.path(candidate), os.X_OK):
                return candidate
        return None

    def command(self, name: str) -> str | None:
        """What to execute for ``name``: PATH first (tests put fakes there), then sbin."""
        for directory in os.environ.get("PATH", "").split(os.pathsep) + list(SBIN_DIRS):
            candidate = os.path.join(directory or ".", name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        return None

    def run(self, name: str, *args: str) -> CmdResult:
        executable = self.command(name)
        if executable is None:
            return CmdResult(127, "", f"{name}: not installed")
        return self.runner([executable, *args], self.timeout)
