# SPDX-License-Identifier: Apache-2.0
"""A control's whole story: markers, proofs, effect proofs and the generated control pages."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from tools import control_story as story
from tools import gen_docs

ROOT = story.ROOT
CATALOGUE = story.load_catalogue()
CONTROLS = story.controls_by_id(CATALOGUE)
PROOFS = story.all_proofs(CATALOGUE)


# -- markers ---------------------------------------------------------------------------------
def test_control_markers_name_catalogue_ids() -> None:
    """Static twin of the collection check in tests/conftest.py, for molecule tests too."""
    bad = []
    for marker in story.all_markers():
        unknown = [cid for cid in marker.ids if cid not in CONTROLS]
        if unknown or marker.problems:
            bad.append(f"{marker.file}:{marker.line}: {unknown or ''} {marker.problems or ''}")
    assert not bad, bad


def _conftest(config: pytest.Config) -> object:
    """The suite's tests/conftest.py as pytest loaded it."""
    path = ROOT / "tests" / "conftest.py"
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == str(path):
            return plugin
    raise AssertionError("tests/conftest.py is not loaded")


def _item(*args: str, **kwargs: object) -> SimpleNamespace:
    mark = SimpleNamespace(args=args, kwargs=kwargs)
    return SimpleNamespace(nodeid="t.py::test_x", iter_markers=lambda name: [mark])


@pytest.mark.parametrize(
    ("args", "kwargs", "ok"),
    [
        (("HVG-MEM-001",), {"effect": True}, True),
        (("HVG-MIG-001", "HVG-MIG-006"), {}, True),
        (("HVG-" + "MEM-099",), {}, False),
        ((), {"effect": True}, False),
        (("HVG-MEM-001",), {"effects": True}, False),
    ],
)
def test_collection_rejects_a_marker_without_catalogue_ids(
    pytestconfig: pytest.Config, args, kwargs, ok
) -> None:
    hook = _conftest(pytestconfig).pytest_collection_modifyitems
    if ok:
        hook(None, [_item(*args, **kwargs)])
    else:
        with pytest.raises(pytest.UsageError, match="control marker"):
            hook(None, [_item(*args, **kwargs)])


def test_marker_parsing_reads_decorators_and_pytestmark(tmp_path: Path) -> None:
    path = tmp_path / "test_fake.py"
    path.write_text(
        textwrap.dedent('''
        import pytest
        pytestmark = [pytest.mark.skipif(False, reason="x"), pytest.mark.control("HVG-MEM-003")]

        @pytest.mark.control("HVG-MEM-001", effect=True)
        @pytest.mark.parametrize("x", [1])
        def test_one(x):
            """HVG-MEM-001: freed pages read back as zeroes."""

        def test_two():
            pass
        ''')
    )
    module, tests = story.module_markers(path)
    assert [m.ids for m in module] == [("HVG-MEM-003",)]
    assert [(m.ids, m.effect) for m in tests["test_one"][1]] == [(("HVG-MEM-001",), True)]
    assert tests["test_two"][1] == []
    assert (
        story._attack("test_one", "HVG-MEM-001: freed pages read back.") == "freed pages read back."
    )


# -- proofs ----------------------------------------------------------------------------------
def test_catalogue_proof_entries_resolve() -> None:
    """A `proofs:` entry that names a missing scenario, task, script or test fails."""
    _, problems = story.catalogue_proofs(CATALOGUE)
    assert not problems, problems


def test_a_stale_catalogue_proof_entry_is_reported() -> None:
    control = {**CONTROLS["HVG-MIG-003"]}
    control["proofs"] = [
        {"scenario": "migration", "task": "Verify | no such task", "effect": True},
        {"scenario": "nope", "task": "x", "effect": True},
        {"scenario": "scrub", "script": "files/matrix.sh"},
        {"test": "tests/host/test_tls_libvirtd.py::test_gone", "effect": True},
    ]
    _, problems = story.catalogue_proofs({"controls": [control]})
    assert len(problems) == 4, problems
    assert "matches nothing" in problems[0] and "unknown scenario" in problems[1]
    assert "effect: true|false" in problems[2] and "no such test" in problems[3]


# Controls whose proofs check only their configuration today (each one's `known_gaps` in the
# catalogue says what the missing proof must do). Strict: the day a proof lands the case
# XPASSes, fails, and its entry must go. Tracked in issue 9.
NO_EFFECT_PROOF_YET = {
    "HVG-MEM-002": "KSM: no test shows two guests' identical pages staying unmerged",
    "HVG-MEM-003": "dump_guest_core: no test dumps a QEMU core and looks for guest RAM",
    "HVG-MIG-005": "firewall: no test reaches the TLS port from a non-peer while it listens",
    "HVG-NET-003": "mirror boot: no lab VM reboots or restarts libvirtd with running domains",
    "HVG-STO-003": "thin_pool_zero: the thin cells pass because the engine zeroes the LVs",
    "HVG-STO-004": "issue_discards: the matrix prints the cell as INFO, asserts nothing",
    "HVG-STO-005": "fstrim.timer: nothing runs a trim and reads the freed blocks",
    "HVG-PAT-005": "reboot pending: a fake sentinel and /boot, no kernel installed and booted",
}


@pytest.mark.parametrize(
    "control_id",
    [
        pytest.param(
            c,
            marks=pytest.mark.xfail(
                c in NO_EFFECT_PROOF_YET, reason=NO_EFFECT_PROOF_YET.get(c, ""), strict=True
            ),
        )
        for c in sorted(CONTROLS)
    ],
)
def test_every_control_has_an_effect_proof(control_id: str) -> None:
    """An effect proof runs the attack or observes the protected state on a running system.

    Claimed by `@pytest.mark.control(ID, effect=True)`, a Molecule verify task or script
    named by the ID, or a catalogue `proofs:` entry with `effect: true`. A control whose
    proofs only check its configuration fails here until someone writes the real proof; its
    `known_gaps` says what is missing.
    """
    mine = story.proofs_for(control_id, PROOFS)
    effect = [p for p in mine if p.effect]
    gaps = CONTROLS[control_id].get("known_gaps") or []
    assert effect, (
        f"{control_id} has no effect proof; checks only: "
        f"{[f'{p.file}::{p.name}' for p in mine]}; known gaps: {gaps}"
    )


# -- implemented by --------------------------------------------------------------------------
def _fake_role(tmp_path: Path) -> Path:
    role = tmp_path / "roles" / "fake"
    (role / "tasks").mkdir(parents=True)
    (role / "templates").mkdir()
    (role / "templates" / "a.conf.j2").write_text("x\n")
    (role / "tasks" / "main.yml").write_text(
        textwrap.dedent("""\
        ---
        - name: Block of one control
          when: fake_applicable
          tags: [HVG-TST-001, memory]
          block:
            - name: HVG-TST-001 | Inherits the block's ID
              ansible.builtin.template:
                src: a.conf.j2
                dest: /etc/a.conf
              when: fake_one_enabled
            - name: HVG-TST-002 | Own ID wins over the block's
              ansible.builtin.command: "true"
              tags: [HVG-TST-002]
        - name: Included with apply
          ansible.builtin.include_tasks:
            file: inc.yml
            apply:
              tags: [HVG-TST-003, migration]
          tags: [HVG-TST-003, migration]
        - name: Imported
          ansible.builtin.import_tasks: imp.yml
          tags: [HVG-TST-004, storage]
        """)
    )
    (role / "tasks" / "inc.yml").write_text("- name: HVG-TST-003 | In include\n  debug: {}\n")
    (role / "tasks" / "imp.yml").write_text("- name: HVG-TST-004 | In import\n  debug: {}\n")
    (role / "tasks" / "other.yml").write_text(
        "- name: HVG-TST-005 | Other entry point\n  debug: {}\n  tags: [HVG-TST-005]\n"
    )
    return role


def test_task_walk_follows_blocks_includes_and_imports(tmp_path: Path) -> None:
    tasks = story.role_tasks(_fake_role(tmp_path))
    got = {(Path(t.file).name, t.line, t.ids) for t in tasks}
    assert got == {
        ("main.yml", 6, ("HVG-TST-001",)),
        ("main.yml", 11, ("HVG-TST-002",)),
        ("inc.yml", 1, ("HVG-TST-003",)),
        ("imp.yml", 1, ("HVG-TST-004",)),
        ("other.yml", 1, ("HVG-TST-005",)),
    }
    first = next(t for t in tasks if t.line == 6)
    assert first.conditions == ("fake_applicable", "fake_one_enabled")
    assert first.installs == (("/etc/a.conf", first.installs[0][1]),)
    assert first.installs[0][1].endswith("roles/fake/templates/a.conf.j2")


@pytest.mark.parametrize("control_id", sorted(CONTROLS))
def test_implemented_by_points_at_the_tagged_tasks(control_id: str) -> None:
    tasks = story.implementing_tasks(control_id)
    assert tasks, f"{control_id}: no implementing task found"
    for task in tasks:
        line = (ROOT / task.file).read_text().splitlines()[task.line - 1]
        assert line.lstrip("- ").startswith("name:"), f"{task.file}:{task.line}: {line!r}"
        assert task.name.startswith(control_id), task


# -- the pages -------------------------------------------------------------------------------
def test_every_control_has_a_linked_page() -> None:
    index = gen_docs.CONTROLS_MD.read_text(encoding="utf-8")
    for cid in CONTROLS:
        page = gen_docs.CONTROL_PAGES / f"{cid}.md"
        assert page.is_file(), f"{page} missing (run `make docs`)"
        assert f"](controls/{cid}.md)" in index, f"docs/controls.md does not link {cid}"


def test_pages_list_every_task_and_proof_with_working_links() -> None:
    for cid in CONTROLS:
        page = (gen_docs.CONTROL_PAGES / f"{cid}.md").read_text(encoding="utf-8")
        for task in story.implementing_tasks(cid):
            assert f"[{task.file}:{task.line}]" in page, (cid, task)
        for proof in story.proofs_for(cid, PROOFS):
            assert f"[{proof.file}:{proof.line}]" in page, (cid, proof)
        for target in re.findall(r"\]\(([^)#]+)(?:#L\d+)?\)", page):
            assert (gen_docs.CONTROL_PAGES / target).resolve().exists(), (cid, target)


def test_pages_are_deterministic() -> None:
    assert gen_docs.control_pages(CATALOGUE) == gen_docs.control_pages(story.load_catalogue())


def test_orphan_page_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen_docs, "CONTROL_PAGES", tmp_path)
    (tmp_path / "HVG-MEM-001.md").write_text("x")
    (tmp_path / ("HVG-" + "OLD-001.md")).write_text("x")
    expected = {tmp_path / "HVG-MEM-001.md": "x"}
    assert [p.name for p in gen_docs.orphan_pages(expected)] == ["HVG-" + "OLD-001.md"]


def _two_id_offenders(roles_dir: Path) -> list[str]:
    bad = []
    for role_dir in sorted(roles_dir.iterdir()):
        if (role_dir / "tasks").is_dir():
            for task in story.role_tasks(role_dir):
                if len(task.effective_ids) > 1:
                    bad.append(f"{task.file}:{task.line} {task.name!r}: {task.effective_ids}")
    return bad


def test_every_task_carries_at_most_one_control_id() -> None:
    """Issue 10, bug 1: `include_tasks: {apply: {tags: [A, B]}}` put both IDs on every included
    task, so one task's result (and evidence) was counted for two controls. Ansible merges
    the tags of blocks, imports and `apply:` into each task: count those too."""
    assert _two_id_offenders(ROOT / "roles") == []


def test_two_id_rule_sees_inherited_tags(tmp_path: Path) -> None:
    role = tmp_path / "roles" / "fake"
    (role / "tasks").mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text(
        textwrap.dedent("""\
        - name: Include
          ansible.builtin.include_tasks: {file: inc.yml, apply: {tags: [HVG-TST-001, HVG-TST-002]}}
          tags: [HVG-TST-001, HVG-TST-002]
        - name: Block
          tags: [HVG-TST-003]
          block:
            - name: HVG-TST-004 | In a block of another control
              ansible.builtin.debug: {}
              tags: [HVG-TST-004]
        """)
    )
    (role / "tasks" / "inc.yml").write_text(
        "- name: HVG-TST-001 | Included\n  ansible.builtin.debug: {}\n  tags: [HVG-TST-001]\n"
    )
    bad = _two_id_offenders(tmp_path / "roles")
    assert len(bad) == 2, bad
    assert "('HVG-TST-001', 'HVG-TST-002')" in bad[0] and "HVG-TST-003" in bad[1]
