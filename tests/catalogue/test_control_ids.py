# SPDX-License-Identifier: Apache-2.0
"""Control-ID integrity across the tree: every HVG-* string means a catalogue control.

Every `HVG-<AREA>-<N>` in a tracked text file must be a catalogue ID, and where it names
something (`HVG-XXX-NNN | text`: a task, an example, a verify step) the text must be about
that control: it shares a word stem with the control's title, verification, rationale or
toggle. Module EXAMPLES are checked harder: an example filed under an ID uses a module that
a role task carrying the same ID uses. Made-up IDs use a reserved area (HVG-TST-*,
HVG-XMP-*) and only under tests/.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import control_story as story

ROOT = story.ROOT
CONTROLS = story.controls_by_id()
NAMED = re.compile(r"(?<![\w-])(HVG-[A-Z]+-\d+)\s*\|\s*([^\"'\n]+)")
STOP = {
    *("the", "and", "for", "with", "from", "that", "this", "its", "not", "are", "any", "one"),
    *("all", "only", "now", "into", "over", "out", "off", "per", "via", "has", "have", "was"),
    *("own", "every", "each", "when", "after", "before", "then", "than", "but", "can"),
}
# TODO(lead): IDs that break the rules in files other helpers own; rename them to the
# reserved area (HVG-TST-*) there, then drop the entries. Each entry: (file, ID) -> why.
ALLOWED_UNKNOWN: dict[tuple[str, str], str] = {
    ("tests/unit/test_report_callback.py", "HVG-XYZ-999"): "unknown-ID case of the report",
    ("tests/unit/test_report_callback.py", "HVG-NOPE-001"): "unknown-ID case of the report",
    ("tests/unit/test_report_callback.py", "HVG-ZZZ-123"): "unknown-ID case of the report",
    ("tests/unit/test_report_callback.py", "HVG-XX-1"): "malformed-ID case of the report",
    ("tests/fixtures/report/roles/report_fixture/tasks/main.yml", "HVG-XYZ-999"): (
        "unknown-ID task of the report fixture role"
    ),
    ("tests/fixtures/report/golden/fixture-playbook.json", "HVG-XYZ-999"): (
        "the fixture role's unknown-ID task, as the golden report records it"
    ),
}
# TODO(lead): the report fixture reuses real IDs with fixture meanings (its own catalogue,
# tests/fixtures/report/catalogue.yml); move it to HVG-TST-* with the report helper.
ALLOWED_MEANING_PREFIXES = ("tests/fixtures/report/",)
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()  # it lists the IDs above


def allowed_unknown(path: str, cid: str) -> bool:
    if path == THIS_FILE:
        return cid in {key[1] for key in ALLOWED_UNKNOWN}
    return (path, cid) in ALLOWED_UNKNOWN


def tracked_text_files() -> dict[str, str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files = {}
    for name in out.split("\0"):
        path = ROOT / name
        if not name or not path.is_file() or name == "LICENSE":
            continue
        try:
            files[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
    return files


def stems(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {w[:5] for w in words if len(w) >= 3 and w not in STOP}


def vocabulary(control: dict[str, Any]) -> set[str]:
    parts = [control["title"], control["verification"], control["rationale"]]
    return stems(" ".join([*parts, control["variable"].replace("_", " ")]))


def id_problems(path: str, text: str, controls: dict[str, dict[str, Any]]) -> list[str]:
    """Every rule an HVG-* string of one file breaks."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        for cid in story.ID_IN_TEXT.findall(line):
            area = cid.split("-")[1]
            if area in story.RESERVED_AREAS:
                if not path.startswith("tests/"):
                    problems.append(f"{where}: reserved {cid} outside tests/")
            elif cid not in controls and not allowed_unknown(path, cid):
                problems.append(f"{where}: {cid} is not in the catalogue")
        if path.startswith(ALLOWED_MEANING_PREFIXES):
            continue
        for cid, label in NAMED.findall(line):
            if cid in controls and not stems(label) & vocabulary(controls[cid]):
                problems.append(f"{where}: {label.strip()!r} is not about {cid}")
    return problems


def examples(path: Path) -> list[dict[str, Any]]:
    """The EXAMPLES tasks of an Ansible module."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "EXAMPLES" for t in node.targets
        ):
            return yaml.safe_load(ast.literal_eval(node.value)) or []
    return []


def role_modules_by_control() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for role in sorted((ROOT / "roles").iterdir()):
        if (role / "tasks").is_dir():
            for task in story.role_tasks(role):
                for cid in task.ids:
                    out.setdefault(cid, set()).add(task.module.rsplit(".", 1)[-1])
    return out


def example_problems(path: Path, used: dict[str, set[str]]) -> list[str]:
    problems = []
    module = path.stem
    for task in examples(path):
        match = re.match(r"(HVG-[A-Z]+-\d+)\s*\|", str(task.get("name", "")))
        if not match:
            continue
        cid = match.group(1)
        calls = {k.rsplit(".", 1)[-1] for k in task} - {"name", "tags", "when", "register"}
        if module in calls and module not in used.get(cid, set()):
            problems.append(f"{path.name}: example {task['name']!r}: no {cid} task uses {module}")
    return problems


def test_every_control_id_in_the_tree_is_known_and_meant() -> None:
    problems = []
    for path, text in sorted(tracked_text_files().items()):
        problems += id_problems(path, text, CONTROLS)
    assert not problems, "\n".join(problems)


def test_module_examples_use_the_module_as_the_roles_do_for_that_control() -> None:
    used = role_modules_by_control()
    problems = []
    for path in sorted((ROOT / "library").glob("*.py")):
        problems += example_problems(path, used)
    assert not problems, "\n".join(problems)


def test_allow_list_entries_still_exist() -> None:
    """An allow-list entry whose ID is gone must go too (the list only shrinks)."""
    files = tracked_text_files()
    stale = [key for key in ALLOWED_UNKNOWN if key[1] not in files.get(key[0], "")]
    assert not stale, stale


# -- the rules themselves, on made-up files ------------------------------------------------
# Wrong IDs are built here, never written out: this file is scanned like any other.
MEM1, MEM2, MEM4 = (f"HVG-MEM-00{n}" for n in (1, 2, 4))
MEM5, MEMX = "HVG-MEM-" + "005", "HVG-MEMX-" + "001"


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("docs/x.md", "see HVG-MEM-002 and HVG-STO-001..005", []),
        ("docs/x.md", f"{MEM5} does not exist", [f"{MEM5} is not in the catalogue"]),
        ("library/m.py", f"- name: {MEM2} | Stop KSM merging now", []),
        ("library/m.py", f"- name: {MEM1} | Stop KSM merging now", [f"not about {MEM1}"]),
        ("library/m.py", f"- name: {MEM4} | Transparent hugepages", [f"not about {MEM4}"]),
        ("tests/fixtures/x.yml", "- name: HVG-TST-001 | Anything at all", []),
        ("docs/x.md", "HVG-TST-001", ["reserved HVG-TST-001 outside tests/"]),
        ("tests/unit/x.py", 'CONTROLS = [f"HVG-MIG-00{i}" for i in (1, 2)]', []),
        ("tests/unit/x.py", f'"HVGUARD-MARKER-1" {MEMX}', [f"{MEMX} is not"]),
    ],
)
def test_id_rules(path: str, text: str, expected: list[str]) -> None:
    found = id_problems(path, text, CONTROLS)
    assert len(found) == len(expected), found
    for problem, want in zip(found, expected, strict=True):
        assert want in problem


def test_example_rule_catches_a_module_filed_under_the_wrong_control(tmp_path: Path) -> None:
    module = tmp_path / "hvguard_sysfs.py"
    module.write_text(
        'EXAMPLES = r"""\n'
        f"- name: {MEM1} | Stop KSM merging now\n  hvguard_sysfs: {{path: /x, value: '0'}}\n"
        f"- name: {MEM2} | Stop KSM merging now\n  hvguard_sysfs: {{path: /x, value: '0'}}\n"
        '"""\n'
    )
    problems = example_problems(module, role_modules_by_control())
    assert len(problems) == 1 and f"no {MEM1} task uses hvguard_sysfs" in problems[0]
