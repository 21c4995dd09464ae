# SPDX-License-Identifier: Apache-2.0
"""tools/mutation.py: parsing, stale detection, applying, scoring, and real pytest runs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import mutation as mt  # noqa: E402

ONE = """
- name: check-mode-writes
  file: library/x.py
  find: |
    if not check_mode:
        write()
  replace: |
    if check_mode:
        write()
  tests: [tests/unit/test_x.py]
  critical: true
"""


def make(find: str, replace: str = "X", name: str = "m", critical: bool = False) -> mt.Mutation:
    return mt.Mutation(name, "f.py", find, replace, ("t.py",), critical, "x.yml")


# -- parsing -------------------------------------------------------------------------------
def test_parse_reads_every_field():
    (m,) = mt.parse_mutations(ONE, "tests/mutation/x.yml")
    assert m == mt.Mutation(
        "check-mode-writes", "library/x.py", "if not check_mode:\n    write()\n",
        "if check_mode:\n    write()\n", ("tests/unit/test_x.py",), True, "tests/mutation/x.yml",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (("  critical: true\n", ""), r"missing \['critical'\]"),
        (("  critical: true\n", "  critical: true\n  why: x\n"), r"unknown \['why'\]"),
        (("check-mode-writes", "Check_Mode"), "kebab-case"),
        (("check-mode-writes", "a--b"), "kebab-case"),
        (("critical: true", "critical: yes please"), "critical must be true or false"),
        (("[tests/unit/test_x.py]", "tests/unit/test_x.py"), "tests must be a non-empty list"),
        (("[tests/unit/test_x.py]", "[]"), "tests must be a non-empty list"),
        (("file: library/x.py", "file: ''"), "file must be a non-empty string"),
        (("    if check_mode:", "    if not check_mode:"), "replace equals find"),
    ],
)
def test_parse_rejects_malformed_entries(edit, error):
    with pytest.raises(mt.MutationSpecError, match=error):
        mt.parse_mutations(ONE.replace(*edit), "x.yml")


def test_parse_rejects_a_non_list_document():
    with pytest.raises(mt.MutationSpecError, match="expected a list"):
        mt.parse_mutations("name: x\n", "x.yml")


def test_empty_replace_deletes(tmp_path):
    (m,) = mt.parse_mutations(ONE.replace("  replace: |\n    if check_mode:\n        write()\n",
                                          "  replace: ''\n"), "x.yml")  # fmt: skip
    assert m.replace == ""
    assert mt.apply_mutation(m, "a\nif not check_mode:\n    write()\nb\n") == "a\nb\n"


def test_names_are_unique_across_files(tmp_path):
    (tmp_path / "a.yml").write_text(ONE)
    (tmp_path / "b.yml").write_text(ONE)
    with pytest.raises(mt.MutationSpecError, match="duplicate mutation name check-mode-writes"):
        mt.load_mutations([tmp_path / "a.yml", tmp_path / "b.yml"], tmp_path)


# -- stale detection and applying ----------------------------------------------------------
def test_stale_when_missing_repeated_or_file_gone():
    m = make("needle")
    assert mt.stale_reason(m, "hay needle hay") is None
    assert mt.stale_reason(m, "hay") == "find text not in f.py"
    assert mt.stale_reason(m, "needle needle") == "find text occurs 2 times in f.py"
    assert mt.stale_reason(m, None) == "f.py does not exist"
    with pytest.raises(mt.MutationSpecError, match="stale mutation m: find text occurs 2"):
        mt.apply_mutation(m, "needle needle")


def test_text_without_final_newline_is_replaced_once_in_place():
    assert mt.apply_mutation(make("b = 1", "b = 2"), "a = 0\nb = 1\nc = 3\n") == (
        "a = 0\nb = 2\nc = 3\n"
    )
    assert mt.apply_mutation(make("1 + 1", "2"), "x = f(1 + 1)\n") == "x = f(2)\n"


def test_whole_lines_match_only_whole_lines():
    text = "    x = 1  # note\n    y = x\n"
    assert mt.stale_reason(make("x = 1\n"), text) == "find text not in f.py"
    assert mt.stale_reason(make("y = x\n"), "    y = x\n    zy = x\n") is None
    # deleting an indented line removes all of it, indentation included
    assert mt.apply_mutation(make("y = x\n", ""), text) == "    x = 1  # note\n"


CODE = textwrap.dedent(
    """\
    def f(check_mode):
        if not check_mode:
            write()

            flush()
        return 1
    """
)


def test_dedented_block_matches_at_its_indentation_and_replace_follows_it():
    # What YAML's `|` gives for lines pasted from inside the function.
    m = make("if not check_mode:\n    write()\n\n    flush()\n", "if check_mode:\n    write()\n")
    assert mt.stale_reason(m, CODE) is None
    assert mt.apply_mutation(m, CODE) == (
        "def f(check_mode):\n    if check_mode:\n        write()\n    return 1\n"
    )


def test_dedented_block_repeated_at_two_places_is_stale():
    m = make("write()\n")
    assert mt.stale_reason(m, CODE + "    write()\n") == "find text occurs 2 times in f.py"
    assert mt.stale_reason(make("if not check_mode:\n  write()\n"), CODE) == (
        "find text not in f.py"  # wrong relative indentation is no match
    )


# -- scoring -------------------------------------------------------------------------------
def result(name: str, status: str, critical: bool = False) -> mt.Result:
    return mt.Result(name, "f.py", critical, status, 1.0)


def test_score_counts_timeouts_as_killed_and_leaves_stale_out():
    results = [
        result("a", "killed"),
        result("b", "survived"),
        result("c", "timeout"),
        result("d", "stale"),
        result("e", "error"),
    ]
    summary = mt.score(results)
    assert (summary["killed"], summary["total"], summary["score"]) == (2, 3, 0.667)
    assert summary["survived"] == ["b"] and summary["timeouts"] == ["c"]
    assert summary["stale"] == ["d"] and summary["errors"] == ["e"]
    assert mt.exit_code(summary) == 1


@pytest.mark.parametrize(
    ("results", "code"),
    [
        ([result("a", "killed", True), result("b", "survived")], 0),
        ([result("a", "survived", True)], 1),
        ([result("a", "timeout", True)], 0),
        ([result("a", "killed"), result("b", "stale")], 1),
        ([result("a", "error")], 1),
    ],
)
def test_exit_code_fails_on_critical_survivor_stale_or_error(results, code):
    assert mt.exit_code(mt.score(results)) == code


def test_table_lists_every_mutation():
    table = mt.render_table([result("short", "killed", True), result("a-longer-name", "survived")])
    lines = table.splitlines()
    assert lines[0].split() == ["mutation", "result", "crit", "seconds", "detail"]
    assert lines[1].split() == ["short", "killed", "yes", "1.0"]
    assert lines[2].split() == ["a-longer-name", "survived", "1.0"]


# -- real runs -----------------------------------------------------------------------------
@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "lib.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "test_lib.py").write_text(
        "import time\nfrom lib import double\n\n"
        "def test_double():\n    assert double(2) == 4\n\n"
        "def test_slow():\n    if double(1) == 0:\n        time.sleep(60)\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    return tmp_path


def tiny_mutation(find: str, replace: str, tests: tuple[str, ...] = ("test_lib.py",)):
    return mt.Mutation("m", "lib.py", find, replace, tests, True, "x.yml")


def test_run_kills_survives_times_out_and_restores(tiny):
    before = (tiny / "lib.py").read_text()
    killed = mt.run_mutation(tiny, tiny_mutation("2 * x", "3 * x"), timeout=60)
    assert killed.status == "killed" and killed.killed
    survived = mt.run_mutation(tiny, tiny_mutation("2 * x", "x + x"), timeout=60)
    assert survived.status == "survived" and not survived.killed
    slow = mt.run_mutation(tiny, tiny_mutation("2 * x", "0 * x", ("test_lib.py::test_slow",)), 3)
    assert slow.status == "timeout" and slow.killed and slow.seconds < 30
    stale = mt.run_mutation(tiny, tiny_mutation("4 * x", "5 * x"), timeout=60)
    assert stale.status == "stale"
    assert (tiny / "lib.py").read_text() == before


def test_a_mutant_that_breaks_the_import_is_killed(tiny):
    assert mt.run_mutation(tiny, tiny_mutation("return 2 * x", "return ("), 60).status == "killed"


def test_a_selection_pytest_cannot_run_is_an_error_not_a_kill(tiny):
    res = mt.run_mutation(tiny, tiny_mutation("2 * x", "3 * x", ("test_nope.py",)), 60)
    assert res.status == "error" and "pytest exit 4" in res.detail


def test_baseline_flags_selections_that_fail_unmutated(tiny):
    (tiny / "test_broken.py").write_text("def test_fails():\n    assert False\n")
    good = tiny_mutation("2 * x", "3 * x")
    bad = tiny_mutation("2 * x", "3 * x", ("test_broken.py",))
    failing = mt.baseline_failures(tiny, [good, bad, bad], timeout=60)
    assert list(failing) == [("test_broken.py",)]
    assert "tests fail unmutated (exit 1)" in failing[("test_broken.py",)]


def test_repository_mutations_are_well_formed_and_apply():
    mutations = mt.load_mutations(sorted((ROOT / "tests" / "mutation").glob("*.yml")))
    assert mutations, "no mutations in tests/mutation"
    for m in mutations:
        path = ROOT / m.file
        assert mt.stale_reason(m, path.read_text() if path.is_file() else None) is None, m.name
        for test in m.tests:
            assert (ROOT / test.split("::")[0]).exists(), f"{m.name}: no {test}"
