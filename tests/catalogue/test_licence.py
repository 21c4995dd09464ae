# SPDX-License-Identifier: Apache-2.0
"""One licence for the whole project: LICENSE, every Python header and the Galaxy metadata."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LICENCE = "Apache-2.0"
SPDX = f"# SPDX-License-Identifier: {LICENCE}"
# Other licences a header could still name (the pack was once labelled GPL-3.0+).
FOREIGN = ("GNU General Public License", "GPL-3.0", "see COPYING")


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / name for name in out.split("\0") if name and (ROOT / name).is_file()]


def is_python(path: Path) -> bool:
    if path.suffix == ".py":
        return True
    with path.open("rb") as fh:
        first = fh.readline(200)
    return first.startswith(b"#!") and b"python" in first


def python_files() -> list[Path]:
    return [p for p in tracked_files() if is_python(p)]


def header_problem(text: str) -> str | None:
    """Why a Python file's header is not the project's licence header (None when it is)."""
    lines = text.splitlines()
    head = lines[1:4] if lines and lines[0].startswith("#!") else lines[:3]
    if SPDX not in head:
        return f"no `{SPDX}` in the first lines (after the shebang)"
    for word in FOREIGN:
        if word in "\n".join(lines[:10]):
            return f"header still names another licence ({word!r})"
    return None


def test_licence_file_is_the_full_apache_text() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text, "LICENSE must carry the full text"
    assert not (ROOT / "COPYING").exists(), "a second licence file contradicts LICENSE"


def test_python_files_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in python_files()}
    # the scrub engine has no .py suffix: it is found by its shebang
    assert {"tools/gen_docs.py", "roles/hvguard_scrub/files/hvguard-scrub"} <= names


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"{SPDX}\n'''doc'''\n", None),
        (f"#!/usr/bin/python\n# Copyright: hvguard contributors\n{SPDX}\n", None),
        ("'''doc'''\n", "no `"),
        (f"'''doc'''\n\n\n\n{SPDX}\n", "no `"),
        (f"{SPDX}\n# GNU General Public License v3.0+ (see COPYING)\n", "another licence"),
    ],
)
def test_header_rule(text: str, problem: str | None) -> None:
    found = header_problem(text)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_every_python_file_carries_the_spdx_line() -> None:
    bad = {}
    for path in python_files():
        problem = header_problem(path.read_text(encoding="utf-8"))
        if problem:
            bad[path.relative_to(ROOT).as_posix()] = problem
    assert not bad, bad


def test_galaxy_metadata_names_the_same_licence() -> None:
    for meta in sorted((ROOT / "roles").glob("*/meta/main.yml")):
        info = (yaml.safe_load(meta.read_text(encoding="utf-8")) or {}).get("galaxy_info", {})
        assert info.get("license") == LICENCE, f"{meta.relative_to(ROOT)}: {info.get('license')}"


def test_ruff_lints_every_python_file() -> None:
    """`ruff check .` picks files by suffix: a Python executable without `.py` needs an
    `extend-include` entry in pyproject.toml, or lint silently skips it."""
    ruff = ROOT / ".venv" / "bin" / "ruff"
    if not ruff.exists():
        pytest.fail(f"{ruff} missing: run `make venv`")
    out = subprocess.run(
        [str(ruff), "check", "--show-files", "."], cwd=ROOT, capture_output=True, text=True
    ).stdout
    linted = {Path(line.strip()).resolve() for line in out.splitlines() if line.strip()}
    missed = [p.relative_to(ROOT).as_posix() for p in python_files() if p.resolve() not in linted]
    assert not missed, f"not linted by ruff (add them to extend-include): {missed}"
