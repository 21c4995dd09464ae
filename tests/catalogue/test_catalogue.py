# SPDX-License-Identifier: Apache-2.0
"""The control catalogue, the roles' tasks and the generated docs agree with each other."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = yaml.safe_load((ROOT / "controls" / "catalogue.yml").read_text())
CONTROLS = {c["id"]: c for c in CATALOGUE["controls"]}
ID_RE = re.compile(r"^HVG-[A-Z]+-\d{3}$")
SEVERITIES = {"low", "medium", "high"}
REQUIRED = {
    "id", "title", "area", "role", "variable", "severity", "disruption", "reboot",
    "rationale", "verification", "references",
}  # fmt: skip
REF_KEYS = {"nist_800_53", "disa_vmm_srg", "nist_800_125a"}
TASK_KEYS_SKIP = {"block", "rescue", "always"}
INCLUDES = ("include_tasks", "import_tasks", "include_role", "import_role")


def _tasks(items: list[dict[str, Any]] | None, inherited: list[str]) -> Iterator[dict[str, Any]]:
    for item in items or []:
        if not isinstance(item, dict):
            continue
        tags = item.get("tags") or []
        tags = [tags] if isinstance(tags, str) else list(tags)
        if any(k in item for k in TASK_KEYS_SKIP):
            for key in TASK_KEYS_SKIP:
                yield from _tasks(item.get(key), inherited + tags)
            continue
        yield {**item, "_all_tags": inherited + tags}


def role_tasks(role: str) -> list[tuple[str, dict[str, Any]]]:
    """Every task (flattened blocks) of a role's tasks/ and handlers/ files."""
    out = []
    for sub in ("tasks", "handlers"):
        for path in sorted((ROOT / "roles" / role / sub).glob("**/*.yml")):
            data = yaml.safe_load(path.read_text()) or []
            out += [(f"{role}/{sub}/{path.name}", t) for t in _tasks(data, [])]
    return out


def all_roles() -> list[str]:
    return sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())


def control_ids(task: dict[str, Any]) -> list[str]:
    return [t for t in task["_all_tags"] if isinstance(t, str) and t.startswith("HVG-")]


def test_catalogue_entries_are_complete() -> None:
    assert CATALOGUE["schema_version"] == 1
    seen = set()
    for c in CATALOGUE["controls"]:
        assert set(c) >= REQUIRED, f"{c.get('id')}: missing {REQUIRED - set(c)}"
        assert ID_RE.match(c["id"]), c["id"]
        assert c["id"] not in seen, f"duplicate {c['id']}"
        seen.add(c["id"])
        assert c["area"] in CATALOGUE["areas"], c["id"]
        assert c["severity"] in SEVERITIES and c["disruption"] in SEVERITIES, c["id"]
        assert isinstance(c["reboot"], bool), c["id"]
        assert set(c["references"]) == REF_KEYS, c["id"]
        assert all(isinstance(v, list) for v in c["references"].values()), c["id"]
        assert c["references"]["nist_800_53"], f"{c['id']} maps to no NIST SP 800-53 control"
        assert c["variable"].startswith(c["role"] + "_"), f"{c['id']}: toggle not role-prefixed"


@pytest.mark.parametrize("control_id", sorted(CONTROLS))
def test_every_control_has_tasks_and_a_toggle(control_id: str) -> None:
    control = CONTROLS[control_id]
    role = ROOT / "roles" / control["role"]
    if not role.is_dir():
        pytest.skip(f"role {control['role']} not in this tree yet")
    tagged = [t for _, t in role_tasks(control["role"]) if control_id in control_ids(t)]
    assert tagged, f"{control_id}: no task in {control['role']} is tagged with it"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    assert defaults.get(control["variable"]) is True, f"{control['variable']} not defaulted true"
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    option = specs["argument_specs"]["main"]["options"].get(control["variable"])
    assert option and option["type"] == "bool", f"{control['variable']} not in argument_specs"


@pytest.mark.parametrize("role", all_roles())
def test_tagged_tasks_follow_the_conventions(role: str) -> None:
    for where, task in role_tasks(role):
        for cid in control_ids(task):
            assert cid in CONTROLS, f"{where}: task {task.get('name')!r} has unknown ID {cid}"
            control = CONTROLS[cid]
            assert control["role"] == role, f"{where}: {cid} belongs to {control['role']}"
            assert control["area"] in task["_all_tags"], f"{where}: {cid} task lacks area tag"
            if any(k.endswith(INCLUDES) for k in task):
                continue  # an include of a control's task file: its tasks carry the ID
            assert str(task.get("name", "")).startswith(cid), f"{where}: name must start {cid}"
            when = task.get("when")
            if when:  # the toggle is the first condition, so skips report `disabled`
                first = when[0] if isinstance(when, list) else when
                assert control["variable"] in str(first), (
                    f"{where}: {task.get('name')!r}: first `when` must be {control['variable']}"
                )


@pytest.mark.parametrize("role", all_roles())
def test_role_variables_are_prefixed(role: str) -> None:
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    for name in defaults:
        assert name.startswith(f"{role}_"), f"{role}: public variable {name} lacks the prefix"
    vars_dir = ROOT / "roles" / role / "vars"
    for path in vars_dir.glob("*.yml"):
        for name in yaml.safe_load(path.read_text()) or {}:
            assert name.startswith(f"__{role}_"), f"{path}: internal {name} must be __{role}_*"


@pytest.mark.parametrize("role", all_roles())
def test_argument_specs_cover_defaults(role: str) -> None:
    base = ROOT / "roles" / role
    defaults = yaml.safe_load((base / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"].get("options") or {}
    assert set(defaults) <= set(options), f"{role}: undocumented {set(defaults) - set(options)}"
    for name, value in defaults.items():
        if "default" in options[name]:
            assert options[name]["default"] == value, f"{role}: {name} default differs from spec"


def _plays(name: str) -> tuple[dict, dict]:
    """(validation play, apply play) of a baseline playbook."""
    plays = yaml.safe_load((ROOT / "playbooks" / name).read_text())
    return plays[0], plays[1]


def _applied(name: str) -> list[str]:
    return [r["role"] if isinstance(r, dict) else r for r in _plays(name)[1]["roles"]]


def _validated(name: str) -> list[str]:
    """Roles the first play validates: a loop over include_role, or one include_role."""
    task = _plays(name)[0]["tasks"][0]
    include = task["ansible.builtin.include_role"]
    assert include["tasks_from"] == "validate"
    return task["loop"] if "loop" in task else [include["name"]]


def test_site_and_audit_apply_the_same_roles() -> None:
    assert _applied("site.yml") == _applied("audit.yml")
    validation, audit = _plays("audit.yml")
    assert audit["check_mode"] is True and audit["diff"] is True
    assert validation["check_mode"] is True


def test_every_applied_role_is_validated_first() -> None:
    """Bad input to any role stops the run before the first role changes anything."""
    for name in ("site.yml", "audit.yml"):
        assert _validated(name) == _applied(name), name
    for role in _applied("site.yml"):
        assert (ROOT / "roles" / role / "tasks" / "validate.yml").is_file(), role
        specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
        entry = specs["argument_specs"]
        assert entry["validate"]["options"] == entry["main"]["options"], role


# Roles applied by a playbook of their own instead of the baseline, each with the reason; a
# role moves into site.yml/audit.yml (and out of here) once a lab VM scenario proves it.
# Such a playbook has the same shape: a validation play, then the play applying the role.
OWN_PLAYBOOK = {
    "hvguard_patching": (
        "patching.yml",
        "issue 12: its findings depend on the repositories and the time, and the rolling "
        "maintenance playbook is the next slice; the baseline scenarios stay as they were",
    ),
    "hvguard_mirror": ("mirror.yml", "issue 11: no lab VM scenario proves it yet"),
}


def test_every_catalogue_role_is_in_the_baseline() -> None:
    in_site = set(_applied("site.yml"))
    for role in {c["role"] for c in CONTROLS.values()}:
        if not (ROOT / "roles" / role).is_dir():
            continue
        if role in OWN_PLAYBOOK:
            playbook, reason = OWN_PLAYBOOK[role]
            assert reason and role not in in_site, f"{role}: drop it from OWN_PLAYBOOK"
            assert _applied(playbook) == [role] and _validated(playbook) == [role], playbook
            continue
        assert role in in_site, f"{role} exists but site.yml does not apply it"


@pytest.mark.parametrize("role", sorted(OWN_PLAYBOOK))
def test_a_staged_role_has_its_own_validated_playbook(role: str) -> None:
    """Strict: a role that joins site.yml must leave OWN_PLAYBOOK (its playbook goes too)."""
    playbook = OWN_PLAYBOOK[role][0]
    assert role not in _applied("site.yml"), f"{role} is in site.yml: remove it from OWN_PLAYBOOK"
    assert _applied(playbook) == [role] and _validated(playbook) == [role]
    assert (ROOT / "roles" / role / "tasks" / "validate.yml").is_file()
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    entry = specs["argument_specs"]
    assert entry["validate"]["options"] == entry["main"]["options"], role


def test_generated_docs_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("role", all_roles())
def test_validation_loops_do_not_print_failure_messages(role: str) -> None:
    """Issue 10, bug 5: a passing validation loop labelled its items with their failure
    messages, so every clean run printed every error text."""
    path = ROOT / "roles" / role / "tasks" / "validate.yml"
    if not path.is_file():
        return
    for task in yaml.safe_load(path.read_text()) or []:
        label = str((task.get("loop_control") or {}).get("label", ""))
        if "loop" in task and any("msg" in (i or {}) for i in task["loop"] if isinstance(i, dict)):
            assert label, f"{role}: {task.get('name')!r} loops over messages without a label"
            assert "item.msg |" not in label.replace("(item.msg | string).split()", ""), label
