# SPDX-License-Identifier: Apache-2.0
"""library/hvguard_files: one call that puts files and directories in place (issue 15).

It replaces `copy` (content) and `file` (state=directory) loops, so the differential test
runs the real modules on one tree and hvguard_files on an identical one, in check mode, in
apply mode and again: the same `changed` per path every time and the same resulting trees.
What it deliberately changes (type conflicts and missing parents refuse the whole call
before anything changes) is tested on its own.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import ROOT, ansible_doc, load_library, run_module

mod = load_library("hvguard_files")

if os.geteuid() != 0:
    pytest.skip("owner and group changes need root", allow_module_level=True)

GROUP = grp.getgrgid(1).gr_name  # "daemon" on Debian: any group other than root's
OLD, NEW = "old content\n", "new content\n"


def build(top: Path) -> list[dict[str, Any]]:
    """One tree with a case per kind of drift; returns the wanted state per path."""
    top.mkdir()
    cases: list[dict[str, Any]] = []

    def file(name: str, content: str | None, mode: int, group: str = "root") -> None:
        path = top / name
        if content is not None:
            path.write_text(content)
            os.chmod(path, mode)
            os.chown(path, 0, grp.getgrnam(group).gr_gid)
        cases.append({"path": str(path), "content": NEW, "owner": "root", "group": GROUP,
                      "mode": "0644"})  # fmt: skip

    file("absent.pem", None, 0)
    file("same.pem", NEW, 0o644, GROUP)
    file("content.pem", OLD, 0o644, GROUP)
    file("mode.pem", NEW, 0o600, GROUP)
    file("group.pem", NEW, 0o644, "root")
    file("both.pem", OLD, 0o600, "root")
    (top / "target.pem").write_text(NEW)
    (top / "link.pem").symlink_to(top / "target.pem")
    cases.append({"path": str(top / "link.pem"), "content": NEW, "owner": "root",
                  "group": GROUP, "mode": "0644"})  # fmt: skip
    for name, mode in (("dir-ok", 0o750), ("dir-mode", 0o700)):
        (top / name).mkdir()
        os.chmod(top / name, mode)
        os.chown(top / name, 0, grp.getgrnam(GROUP).gr_gid)
    for name in ("dir-ok", "dir-mode", "dir-absent", "dir-parent/child"):
        cases.append({"path": str(top / name), "state": "directory", "owner": "root",
                      "group": GROUP, "mode": "0750"})  # fmt: skip
    return cases


PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: "{{ phase }}: the real modules, one item each"
      ansible.builtin.copy:
        dest: "{{ item.path }}"
        content: "{{ item.content }}"
        owner: "{{ item.owner }}"
        group: "{{ item.group }}"
        mode: "{{ item.mode }}"
      loop: "{{ real | rejectattr('state', 'defined') }}"
      register: copies
    - name: "{{ phase }}: directories"
      ansible.builtin.file:
        path: "{{ item.path }}"
        state: directory
        owner: "{{ item.owner }}"
        group: "{{ item.group }}"
        mode: "{{ item.mode }}"
      loop: "{{ real | selectattr('state', 'defined') }}"
      register: dirs
    - name: "{{ phase }}: one call"
      hvguard_files:
        files: "{{ ours }}"
      register: one
    - name: "{{ phase }}: record"
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'real': copies.results + dirs.results, 'ours': one} | to_json }}"
      check_mode: false
"""


def run_play(work: Path, phase: str, real: list, ours: list, check: bool) -> dict[str, Any]:
    play, out = work / f"{phase}.yml", work / f"{phase}.json"
    play.write_text(PLAY)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        HVGUARD_REPORT_DIR=str(work / "reports"),
    )
    extra = {"phase": phase, "real": real, "ours": ours, "out": str(out),
             "ansible_python_interpreter": sys.executable}  # fmt: skip
    argv = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local"]
    argv += ["-e", json.dumps(extra), str(play)] + (["--check", "--diff"] if check else [])
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def snapshot(top: Path) -> dict[str, Any]:
    out = {}
    for path in sorted(top.rglob("*")):
        info = path.lstat()
        entry: dict[str, Any] = {"mode": stat.filemode(info.st_mode), "uid": info.st_uid,
                                 "gid": info.st_gid}  # fmt: skip
        if stat.S_ISREG(info.st_mode):
            entry["content"] = path.read_text()
        if stat.S_ISLNK(info.st_mode):
            entry["link"] = os.readlink(path)
        out[str(path.relative_to(top))] = entry
    return out


def changed_per_path(run: dict[str, Any], tree: Path) -> tuple[dict, dict]:
    """`changed` per file name: the real modules' (one loop item each) and hvguard_files'."""
    real = {Path(r["item"]["path"]).name: bool(r.get("changed")) for r in run["real"]}
    ours = {Path(p).name: r["changed"] for p, r in run["ours"]["files"].items()}
    return real, ours


@pytest.mark.control("HVG-MIG-001", "HVG-MIG-007")
def test_differential_against_copy_and_file(tmp_path: Path) -> None:
    real_cases, our_cases = build(tmp_path / "real"), build(tmp_path / "ours")
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(tmp_path / "real"), snapshot(tmp_path / "ours")

    checked = run_play(work, "check", real_cases, our_cases, check=True)
    real, ours = changed_per_path(checked, tmp_path)
    assert ours == real, "check mode: hvguard_files and copy/file disagree on drift"
    assert real == {"absent.pem": True, "same.pem": False, "content.pem": True,
                    "mode.pem": True, "group.pem": True, "both.pem": True, "link.pem": True,
                    "dir-ok": False, "dir-mode": True, "dir-absent": True,
                    "child": True}  # fmt: skip
    assert (snapshot(tmp_path / "real"), snapshot(tmp_path / "ours")) == before
    assert checked["ours"]["changed"] is True and checked["ours"]["diff"]

    applied = run_play(work, "apply", real_cases, our_cases, check=False)
    real, ours = changed_per_path(applied, tmp_path)
    assert ours == real
    assert snapshot(tmp_path / "ours") == snapshot(tmp_path / "real")
    assert snapshot(tmp_path / "ours")["link.pem"].get("link") is None, "the link was kept"
    assert (tmp_path / "ours" / "target.pem").read_text() == NEW  # never written through

    again = run_play(work, "again", real_cases, our_cases, check=False)
    real, ours = changed_per_path(again, tmp_path)
    assert ours == real == dict.fromkeys(real, False)


@pytest.mark.parametrize(
    ("setup", "spec", "message"),
    [
        ("dir", {"state": "file", "content": "x"}, "is a directory, a file is wanted"),
        ("file", {"state": "directory"}, "is not a directory, a directory is wanted"),
        ("link", {"state": "directory"}, "is a link, a directory is wanted"),
        ("none", {"state": "file", "content": "x", "parent": "missing"}, "parent directory"),
    ],
)
def test_a_conflict_refuses_the_whole_call_before_any_change(
    tmp_path: Path, capsys, setup: str, spec: dict[str, Any], message: str
) -> None:
    first = tmp_path / "first.pem"
    target = tmp_path / "target"
    if setup == "dir":
        target.mkdir()
    elif setup == "file":
        target.write_text("keep\n")
    elif setup == "link":
        target.symlink_to(tmp_path)
    if spec.pop("parent", None):
        target = tmp_path / "missing" / "target"
    files = [
        {"path": str(first), "content": "written?\n", "mode": "0644"},
        dict(spec, path=str(target), mode="0755"),
    ]
    result = run_module(mod, capsys, {"files": files})
    assert result["failed"] and message in result["msg"], result
    assert not first.exists(), "an entry before the conflict was changed"


def test_check_mode_with_a_missing_parent_is_drift_not_an_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "later" / "cert.pem"
    result = run_module(
        mod, capsys, {"files": [{"path": str(path), "content": "x", "mode": "0644"}]}, check=True
    )
    assert result["changed"] is True and not result.get("failed")
    assert not (tmp_path / "later").exists()


def test_a_new_file_is_never_readable_by_others_before_its_mode_is_set(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    seen: list[int] = []
    real_move = mod.AnsibleModule.atomic_move

    def spy(self: Any, src: str, dest: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(stat.S_IMODE(os.lstat(src).st_mode))
        return real_move(self, src, dest, *args, **kwargs)

    monkeypatch.setattr(mod.AnsibleModule, "atomic_move", spy)
    key = tmp_path / "key.pem"
    run_module(mod, capsys, {"files": [{"path": str(key), "content": "k", "mode": "0600"}]})
    assert seen == [0o600]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_ansible_doc_renders() -> None:
    text = ansible_doc("hvguard_files")
    assert "One call instead of a" in text and "RETURN VALUES" in text


@pytest.mark.control("HVG-MIG-005", "HVG-STO-001", "HVG-MEM-001")
def test_validate_checks_the_new_content_with_its_final_mode_before_it_replaces_the_file(
    tmp_path: Path, capsys
) -> None:
    """As copy's `validate`: the command sees the new content (with the entry's mode) in a
    temporary file; on failure the old file stays and no temporary file is left."""
    checker = tmp_path / "check.sh"
    checker.write_text('#!/bin/sh\n[ "$(stat -c %a "$1")" = 640 ] && sh -n "$1"\n')
    checker.chmod(0o755)
    conf = tmp_path / "conf.sh"
    conf.write_text("echo old\n")
    spec = {"path": str(conf), "mode": "0640", "validate": f"{checker} %s"}

    bad = run_module(mod, capsys, {"files": [dict(spec, content="if then\n")]})
    assert bad["failed"] and "failed to validate" in bad["msg"], bad
    assert conf.read_text() == "echo old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check.sh", "conf.sh"]

    good = run_module(mod, capsys, {"files": [dict(spec, content="echo new\n")]})
    assert good["changed"] and not good.get("failed"), good
    assert conf.read_text() == "echo new\n" and stat.S_IMODE(conf.stat().st_mode) == 0o640

    unchanged = run_module(mod, capsys, {"files": [dict(spec, content="echo new\n")]})
    assert unchanged["changed"] is False

    missing = run_module(mod, capsys, {"files": [dict(spec, content="x", validate="true")]})
    assert missing["failed"] and "must contain %s" in missing["msg"]


@pytest.mark.control("HVG-STO-001")
def test_summary_diff_names_checksums_and_sizes_never_the_text(tmp_path: Path, capsys) -> None:
    """Issue 10 bug 5: a program's evidence is its old and new checksum and size, not its
    source (the scrub engine's text filled every report cell)."""
    program = tmp_path / "tool"
    program.write_text("#!/bin/sh\necho old secret-looking text\n")
    program.chmod(0o755)
    new = "#!/bin/sh\necho new\n"
    spec = {"path": str(program), "content": new, "mode": "0755", "diff": "summary"}
    result = run_module(mod, capsys, {"files": [spec]}, check=True, diff=True)
    assert result["changed"] is True
    (diff,) = result["diff"]
    old_sum = hashlib.sha256(program.read_bytes()).hexdigest()
    new_sum = hashlib.sha256(new.encode()).hexdigest()
    assert diff["before"] == f"sha256 {old_sum}, {program.stat().st_size} bytes\n"
    assert diff["after"] == f"sha256 {new_sum}, {len(new)} bytes\n"
    assert "echo" not in json.dumps(diff)
    assert program.read_text().endswith("old secret-looking text\n"), "check mode wrote"

    absent = tmp_path / "absent"
    created = run_module(
        mod, capsys, {"files": [dict(spec, path=str(absent))]}, check=True, diff=True
    )
    assert created["diff"][0]["before"] == "absent\n"

    text = run_module(mod, capsys, {"files": [dict(spec, diff="text")]}, check=True, diff=True)
    assert text["diff"][0]["after"] == new, "the default diff is the whole text, as copy's"


def test_absent_removes_files_and_links_never_targets_nor_directories(
    tmp_path: Path, capsys
) -> None:
    """state=absent as file's: a file or a link goes (the link's target stays), a missing
    path is no change, check mode removes nothing; a directory there refuses the call."""
    target = tmp_path / "target"
    target.write_text("kept\n")
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "file").write_text("x\n")
    specs = [{"path": str(tmp_path / n), "state": "absent"} for n in ("file", "link", "gone")]

    check = run_module(mod, capsys, {"files": specs}, check=True, diff=True)
    assert check["changed"] is True
    assert {p: f["changed"] for p, f in check["files"].items()} == {
        str(tmp_path / "file"): True, str(tmp_path / "link"): True, str(tmp_path / "gone"): False
    }  # fmt: skip
    assert [d["before"] for d in check["diff"]] == [{"state": "file"}, {"state": "link"}]
    assert (tmp_path / "file").exists() and (tmp_path / "link").is_symlink()

    applied = run_module(mod, capsys, {"files": specs})
    assert applied["changed"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    assert target.read_text() == "kept\n"
    assert run_module(mod, capsys, {"files": specs})["changed"] is False

    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x\n")
    refused = run_module(
        mod, capsys, {"files": [specs[0], {"path": str(tmp_path / "dir"), "state": "absent"}]}
    )
    assert refused["failed"] and "is a directory" in refused["msg"], refused
    assert (tmp_path / "file").exists() and (tmp_path / "dir").is_dir()


def test_mode_is_required_for_files_and_directories(tmp_path: Path, capsys) -> None:
    for spec in ({"content": "x"}, {"state": "directory"}):
        result = run_module(mod, capsys, {"files": [dict(spec, path=str(tmp_path / "p"))]})
        assert result["failed"] and "mode" in result["msg"], result
