#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Run the named mutations of tests/mutation/*.yml and score how many the tests kill.

Each mutation replaces one exact snippet of a production file and runs the pytest paths it
names against the mutant in a scratch copy of the repository. ``find`` must occur exactly
once, else the mutation is stale; a ``find`` ending in a newline is a block of whole lines,
matched at its indentation in the file (YAML's ``|`` strips it).

A mutant is killed when pytest fails (exit 1, or 2 for an import/collection error); a
timeout counts as killed but is reported. Before the mutants, each distinct test selection
runs once unmutated: a selection that already fails, or that pytest cannot run (exit 3-5:
internal error, bad path, nothing collected), would make every mutant look killed, so its
mutations are reported as errors instead.

Exit status 1 when a ``critical: true`` mutant survives, a mutation is stale or in error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MUTATION_DIR = ROOT / "tests" / "mutation"
DEFAULT_OUTPUT = ROOT / "bench" / "mutation-score.json"
NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
FIELDS = {"name", "file", "find", "replace", "tests", "critical"}
# pytest exit codes: 1 tests failed, 2 interrupted (collection/import error of the mutant).
KILLING_CODES = {1, 2}


class MutationSpecError(ValueError):
    """A mutation file that does not follow the format."""


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]
    critical: bool
    source: str  # the YAML file it came from, relative to the repo


@dataclass
class Result:
    name: str
    file: str
    critical: bool
    status: str  # killed | survived | timeout | stale | error
    seconds: float
    detail: str = ""

    @property
    def killed(self) -> bool:
        return self.status in {"killed", "timeout"}


# -- parsing -------------------------------------------------------------------------------
def parse_mutations(text: str, source: str) -> list[Mutation]:
    """The mutations of one YAML document; MutationSpecError names the first problem."""
    data = yaml.safe_load(text)
    if not isinstance(data, list):
        raise MutationSpecError(f"{source}: expected a list of mutations")
    mutations = []
    for index, item in enumerate(data):
        where = f"{source}[{index}]"
        if not isinstance(item, dict):
            raise MutationSpecError(f"{where}: expected a mapping")
        missing = sorted(FIELDS - item.keys())
        unknown = sorted(item.keys() - FIELDS)
        if missing or unknown:
            raise MutationSpecError(f"{where}: missing {missing}, unknown {unknown}")
        name = item["name"]
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise MutationSpecError(f"{where}: name must be kebab-case, got {name!r}")
        for key in ("file", "find", "replace"):
            if not isinstance(item[key], str) or (key != "replace" and not item[key]):
                raise MutationSpecError(f"{where} {name}: {key} must be a non-empty string")
        if item["find"] == item["replace"]:
            raise MutationSpecError(f"{where} {name}: replace equals find")
        tests = item["tests"]
        if not tests or not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise MutationSpecError(f"{where} {name}: tests must be a non-empty list of strings")
        if not isinstance(item["critical"], bool):
            raise MutationSpecError(f"{where} {name}: critical must be true or false")
        mutations.append(
            Mutation(name, item["file"], item["find"], item["replace"], tuple(tests),
                     item["critical"], source)
        )  # fmt: skip
    return mutations


def load_mutations(paths: Iterable[Path], root: Path = ROOT) -> list[Mutation]:
    mutations: list[Mutation] = []
    for path in sorted(paths):
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        mutations += parse_mutations(path.read_text(encoding="utf-8"), rel)
    seen: dict[str, str] = {}
    for mutation in mutations:
        if mutation.name in seen:
            raise MutationSpecError(
                f"duplicate mutation name {mutation.name} ({seen[mutation.name]}, "
                f"{mutation.source})"
            )
        seen[mutation.name] = mutation.source
    return mutations


# -- applying ------------------------------------------------------------------------------
def indented(block: str, indent: str) -> str:
    """``block`` with ``indent`` before every non-blank line."""
    return "".join(
        indent + line if line.strip() else line for line in block.splitlines(keepends=True)
    )


def matches(text: str, find: str) -> list[tuple[int, str]]:
    """(offset, indent) of every occurrence of ``find`` in ``text``.

    A ``find`` without a final newline is plain text, matched anywhere. One that ends with a
    newline is a block of whole lines (what a YAML ``|`` scalar gives): it matches at line
    starts, as written or re-indented with that line's leading whitespace, since ``|`` strips
    the common indentation of code pasted from inside a function.
    """
    found: list[tuple[int, str]] = []
    if not find.endswith("\n"):
        pos = text.find(find)
        while pos >= 0:
            found.append((pos, ""))
            pos = text.find(find, pos + 1)
        return found
    start = 0
    while start < len(text):
        line_end = text.find("\n", start)
        line = text[start:] if line_end < 0 else text[start:line_end]
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        for prefix in dict.fromkeys(("", indent)):
            if text.startswith(indented(find, prefix), start):
                found.append((start, prefix))
        if line_end < 0:
            break
        start = line_end + 1
    return found


def stale_reason(mutation: Mutation, text: str | None) -> str | None:
    """Why the mutation cannot be applied to ``text`` (None: it applies)."""
    if text is None:
        return f"{mutation.file} does not exist"
    count = len(matches(text, mutation.find))
    if count == 0:
        return f"find text not in {mutation.file}"
    if count > 1:
        return f"find text occurs {count} times in {mutation.file}"
    return None


def apply_mutation(mutation: Mutation, text: str) -> str:
    reason = stale_reason(mutation, text)
    if reason:
        raise MutationSpecError(f"stale mutation {mutation.name}: {reason}")
    ((start, indent),) = matches(text, mutation.find)
    end = start + len(indented(mutation.find, indent))
    return text[:start] + indented(mutation.replace, indent) + text[end:]


# -- scoring -------------------------------------------------------------------------------
def score(results: Sequence[Result]) -> dict[str, Any]:
    """Totals over the mutations that ran (stale and error ones are not scored)."""
    scored = [r for r in results if r.status in {"killed", "survived", "timeout"}]
    killed = [r for r in scored if r.killed]
    return {
        "killed": len(killed),
        "total": len(scored),
        "score": round(len(killed) / len(scored), 3) if scored else None,
        "survived": [r.name for r in scored if not r.killed],
        "critical_survived": [r.name for r in scored if r.critical and not r.killed],
        "timeouts": [r.name for r in results if r.status == "timeout"],
        "stale": [r.name for r in results if r.status == "stale"],
        "errors": [r.name for r in results if r.status == "error"],
    }


def exit_code(summary: dict[str, Any]) -> int:
    return 1 if summary["critical_survived"] or summary["stale"] or summary["errors"] else 0


def render_table(results: Sequence[Result]) -> str:
    width = max([len("mutation")] + [len(r.name) for r in results])
    lines = [f"{'mutation':<{width}}  {'result':<8}  {'crit':<4}  {'seconds':>7}  detail"]
    for r in results:
        crit = "yes" if r.critical else ""
        lines.append(
            f"{r.name:<{width}}  {r.status:<8}  {crit:<4}  {r.seconds:>7.1f}  {r.detail}".rstrip()
        )
    return "\n".join(lines)


# -- running -------------------------------------------------------------------------------
def tracked_files(repo: Path) -> list[str]:
    """Tracked files plus untracked ones that are not ignored (work in progress counts)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return sorted({name for name in out.decode().split("\0") if name})


def copy_repo(repo: Path, dest: Path) -> None:
    for name in tracked_files(repo):
        src = repo / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    # Tests call tools from <root>/.venv/bin: link the running interpreter's venv, never copy it.
    venv = Path(sys.prefix)
    if venv != Path(sys.base_prefix) and not (dest / ".venv").exists():
        (dest / ".venv").symlink_to(venv)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The strict-skip check (tests/conftest.py) would turn a skip into a kill: not here.
    env["HVGUARD_STRICT_SKIPS"] = "0"
    env.pop("PYTEST_ADDOPTS", None)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_pytest(copy: Path, tests: Sequence[str], timeout: float) -> tuple[int | None, str]:
    """(exit code or None on timeout, last output lines)."""
    argv = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    proc = subprocess.Popen(
        argv, cwd=copy, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out
    return proc.returncode, out


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:100] if lines else ""


def run_mutation(copy: Path, mutation: Mutation, timeout: float) -> Result:
    path = copy / mutation.file
    original = path.read_text(encoding="utf-8") if path.is_file() else None
    reason = stale_reason(mutation, original)
    result = Result(mutation.name, mutation.file, mutation.critical, "stale", 0.0)
    if reason or original is None:
        result.detail = reason or ""
        return result
    stat = path.stat()
    path.write_text(apply_mutation(mutation, original), encoding="utf-8")
    start = time.monotonic()
    try:
        code, out = run_pytest(copy, mutation.tests, timeout)
    finally:
        path.write_text(original, encoding="utf-8")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result.seconds = time.monotonic() - start
    if code is None:
        result.status, result.detail = "timeout", f"no result after {timeout:.0f} s"
    elif code in KILLING_CODES:
        result.status, result.detail = "killed", last_line(out)
    elif code == 0:
        result.status, result.detail = "survived", last_line(out)
    else:
        result.status, result.detail = "error", f"pytest exit {code}: {last_line(out)}"
    return result


def baseline_failures(
    copy: Path, mutations: Sequence[Mutation], timeout: float
) -> dict[tuple[str, ...], str]:
    """Test selections that do not pass unmutated, with why."""
    failures: dict[tuple[str, ...], str] = {}
    for tests in dict.fromkeys(m.tests for m in mutations):
        code, out = run_pytest(copy, tests, timeout)
        if code != 0:
            shown = "timeout" if code is None else f"exit {code}"
            failures[tests] = f"tests fail unmutated ({shown}): {last_line(out)}"
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run just this one")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per pytest run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated runs")
    parser.add_argument(
        "--output", type=Path, help=f"score file (default {DEFAULT_OUTPUT.relative_to(ROOT)}, "
        "not written with --only)",
    )  # fmt: skip
    parser.add_argument("files", nargs="*", type=Path, help="mutation files (default: all)")
    args = parser.parse_args(argv)

    try:
        mutations = load_mutations([p.resolve() for p in args.files] or MUTATION_DIR.glob("*.yml"))
    except (MutationSpecError, yaml.YAMLError) as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return 2
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in mutations})
        if unknown:
            print(f"mutation: no such mutation: {', '.join(unknown)}", file=sys.stderr)
            return 2
        mutations = [m for m in mutations if m.name in args.only]
    if not mutations:
        print("mutation: no mutations found", file=sys.stderr)
        return 2

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="hvguard-mutation-") as tmp:
        copy = Path(tmp)
        copy_repo(ROOT, copy)
        failing = {} if args.no_baseline else baseline_failures(copy, mutations, args.timeout)
        for mutation in mutations:
            if mutation.tests in failing:
                result = Result(mutation.name, mutation.file, mutation.critical, "error", 0.0,
                                failing[mutation.tests])  # fmt: skip
            else:
                result = run_mutation(copy, mutation, args.timeout)
            results.append(result)
            print(f"  {result.name}: {result.status} ({result.seconds:.1f} s)", flush=True)

    summary = score(results)
    print()
    print(render_table(results))
    print(f"\nscore: {summary['killed']}/{summary['total']} killed")
    for key in ("critical_survived", "stale", "errors", "timeouts"):
        if summary[key]:
            print(f"{key.replace('_', ' ')}: {', '.join(summary[key])}")
    output = args.output or (None if args.only or args.files else DEFAULT_OUTPUT)
    if output:
        document = {**summary, "mutations": [asdict(r) for r in results]}
        for row in document["mutations"]:
            row["seconds"] = round(row["seconds"], 1)
        output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"written: {output}")
    return exit_code(summary)


if __name__ == "__main__":
    sys.exit(main())
