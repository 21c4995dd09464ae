# SPDX-License-Identifier: Apache-2.0
"""Host-side helpers: required commands, subprocess runs with readable failures."""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lab.errors import LabError

# command -> Debian package that provides it (the fix we print when it is missing)
REQUIRED_COMMANDS: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}
BUILD_COMMANDS: dict[str, str] = {
    "debootstrap": "debootstrap",
    "mke2fs": "e2fsprogs",
    "losetup": "mount",
    "mount": "mount",
    "chroot": "coreutils",
}


def missing_packages(commands: dict[str, str], which: object = shutil.which) -> list[str]:
    """Debian packages to install for the commands not on PATH (sorted, unique)."""
    return sorted({pkg for cmd, pkg in commands.items() if not which(cmd)})  # type: ignore[operator]


def require(commands: dict[str, str]) -> None:
    missing = missing_packages(commands)
    if missing:
        raise LabError(
            f"missing host packages: {' '.join(missing)}",
            f"apt-get install --no-install-recommends {' '.join(missing)}  (or `make deps`)",
        )


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root (loop devices, mounts, chroot)", "run it as root")


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str | Path],
    logfile: Path | None = None,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> str:
    """Run a command; on failure raise LabError with the command and its last output lines."""
    args = [str(a) for a in argv]
    full_env = {**os.environ, **(env or {})}
    t0 = time.monotonic()
    proc = subprocess.run(
        args,
        input=input_text,
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
    )
    if logfile is not None:
        with logfile.open("a") as fh:
            fh.write(f"$ {' '.join(args)}  # rc={proc.returncode} {time.monotonic() - t0:.1f}s\n")
            fh.write(proc.stdout)
            fh.write(proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        where = f" (full log: {logfile})" if logfile else ""
        raise LabError(f"command failed (rc={proc.returncode}): {' '.join(args)}{where}\n{tail}")
    return proc.stdout
