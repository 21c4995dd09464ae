# SPDX-License-Identifier: Apache-2.0
"""hvguard_lvm_conf: LVM config editing (pure) and real module runs against a copied /etc/lvm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "library"))
import hvguard_lvm_conf as mod  # noqa: E402

LVM = shutil.which("lvm") or "/sbin/lvm"
needs_lvm = pytest.mark.skipif(
    not Path("/etc/lvm/lvm.conf").exists() or not os.path.exists(LVM), reason="LVM not installed"
)


def test_set_key_replaces_in_place():
    text = 'devices {\n\tissue_discards = 0 # old\n\tfilter = [ "a|.*|" ]\n}\n'
    out = mod.set_key(text, "devices", "issue_discards", "1")
    assert out == 'devices {\n\tissue_discards = 1\n\tfilter = [ "a|.*|" ]\n}\n'


def test_set_key_adds_to_existing_section_and_new_section():
    text = "# c\nlocal {\n\t# host_id = 0\n}\n"
    out = mod.set_key(text, "local", "host_id", "7")
    assert out == "# c\nlocal {\n\t# host_id = 0\n\thost_id = 7\n}\n"
    out = mod.set_key(out, "devices", "issue_discards", "1")
    assert out.endswith("\n# Managed by hvguard\ndevices {\n\tissue_discards = 1\n}\n")


def test_section_span_ignores_nested_and_comment_braces():
    lines = "a {\n\t# } not the end\n\tb {\n\t\tx = 1\n\t}\n}\ndevices {\n}\n".splitlines(True)
    assert mod.section_span(lines, "a") == (0, 5)
    assert mod.section_span(lines, "devices") == (6, 7)
    assert mod.section_span(lines, "b") is None  # not top level


def test_render_value():
    assert mod.render_value(True) == "1"
    assert mod.render_value(3) == "3"
    assert mod.render_value("5") == "5"
    assert mod.render_value('a"b') == '"a\\"b"'


def run_module(lvmdir: Path, check: bool, lvm: str = LVM, extra: dict | None = None, **settings):
    """Run the module as Ansible does (args file), with the venv's ansible importable."""
    args = {
        "path": str(lvmdir / "lvmlocal.conf"),
        "settings": settings,
        "lvm": lvm,
        "_ansible_check_mode": check,
        "_ansible_diff": True,
        **(extra or {}),
    }
    argfile = lvmdir.parent / "args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    res = subprocess.run(
        [sys.executable, str(ROOT / "library/hvguard_lvm_conf.py"), str(argfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(res.stdout)


def effective(lvmdir: Path, key: str) -> str:
    env = dict(os.environ, LVM_SYSTEM_DIR=str(lvmdir), LVM_SUPPRESS_FD_WARNINGS="1")
    out = subprocess.run(
        [LVM, "lvmconfig", "--type", "full", key], capture_output=True, text=True, env=env
    ).stdout
    return out.strip().split("=", 1)[1]


@pytest.fixture
def lvmdir(tmp_path):
    d = tmp_path / "lvm"
    shutil.copytree("/etc/lvm", d)
    return d


@needs_lvm
def test_module_check_apply_idempotent(lvmdir):
    before = (lvmdir / "lvmlocal.conf").read_text()
    assert effective(lvmdir, "devices/issue_discards") == "0"
    res = run_module(lvmdir, True, **{"devices/issue_discards": 1})
    assert res["changed"] and res["changed_keys"] == ["devices/issue_discards"]
    assert res["effective"] == {"devices/issue_discards": "0"}
    assert (lvmdir / "lvmlocal.conf").read_text() == before  # check mode wrote nothing
    assert res["diff"]["before"] == before
    assert res["diff"]["after"] == mod.set_key(before, "devices", "issue_discards", "1")
    assert sorted(p.name for p in lvmdir.iterdir()) == sorted(os.listdir("/etc/lvm"))
    res = run_module(lvmdir, False, **{"devices/issue_discards": 1})
    assert res["changed"]
    assert effective(lvmdir, "devices/issue_discards") == "1"
    res = run_module(lvmdir, False, **{"devices/issue_discards": 1})
    assert not res["changed"]


@needs_lvm
def test_module_overrides_lvm_conf_setting(lvmdir):
    conf = lvmdir / "lvm.conf"
    conf.write_text(mod.set_key(conf.read_text(), "allocation", "thin_pool_zero", "0"))
    assert effective(lvmdir, "allocation/thin_pool_zero") == "0"
    res = run_module(lvmdir, False, **{"allocation/thin_pool_zero": 1})
    assert res["changed"]
    assert effective(lvmdir, "allocation/thin_pool_zero") == "1"


@needs_lvm
def test_module_rejects_bad_key_and_invalid_result(lvmdir):
    before = (lvmdir / "lvmlocal.conf").read_text()
    res = run_module(lvmdir, False, **{"issue_discards": 1})
    assert res["failed"] and "section/key" in res["msg"]
    res = run_module(lvmdir, False, **{"devices/no_such_key": 1})
    assert res["failed"]
    assert (lvmdir / "lvmlocal.conf").read_text() == before


@needs_lvm
def test_module_refuses_a_value_lvm_rejects_and_writes_nothing(lvmdir):
    before = (lvmdir / "lvmlocal.conf").read_text()
    res = run_module(lvmdir, False, **{"devices/issue_discards": "maybe"})
    assert res["failed"] and "lvmconfig --validate failed" in res["msg"], res
    assert (lvmdir / "lvmlocal.conf").read_text() == before
    assert effective(lvmdir, "devices/issue_discards") == "0"


@needs_lvm
def test_module_refuses_an_edit_that_does_not_take_effect(lvmdir):
    # LVM merges repeated sections and the last value wins: editing the first one would
    # change nothing, so the read-back in the scratch copy must stop the write.
    local = lvmdir / "lvmlocal.conf"
    local.write_text(local.read_text() + "devices {\n}\ndevices {\n\tissue_discards = 0\n}\n")
    before = local.read_text()
    res = run_module(lvmdir, False, **{"devices/issue_discards": 1})
    assert res["failed"] and "would be '0', not 1" in res["msg"], res
    assert local.read_text() == before


@needs_lvm
def test_module_creates_a_missing_lvmlocal_conf_world_readable(lvmdir):
    (lvmdir / "lvmlocal.conf").unlink()
    res = run_module(lvmdir, False, **{"devices/issue_discards": 1})
    assert res["changed"], res
    assert (lvmdir / "lvmlocal.conf").stat().st_mode & 0o777 == 0o644
    assert effective(lvmdir, "devices/issue_discards") == "1"
    assert not [p.name for p in lvmdir.iterdir() if p.name.startswith(".hvguard-")]


POOLS = {"vg0/pool": "0", "vg1/zeroed": "1"}


@pytest.fixture
def scripted_lvm(tmp_path):
    """make(pools) -> (lvm, log): an lvm that answers lvs with ``pools`` (thin pool ->
    zero flag) and a plain LV, logs lvchange calls and hands the rest (lvmconfig) to lvm."""

    def make(pools: dict[str, str]) -> tuple[Path, Path]:
        bindir = tmp_path / "bin"
        bindir.mkdir()
        lvs = [{"vg_name": k.split("/")[0], "lv_name": k.split("/")[1], "zero": v}
               for k, v in pools.items()]  # fmt: skip
        plain = {"vg_name": "vg0", "lv_name": "root", "zero": ""}
        (bindir / "pools.json").write_text(json.dumps({"report": [{"lv": lvs}]}))
        (bindir / "all.json").write_text(json.dumps({"report": [{"lv": [*lvs, plain]}]}))
        script = bindir / "lvm"
        script.write_text(
            f"""#!/bin/sh
case "$1" in
  lvs) case " $* " in
         *" -S segtype=thin-pool "*) cat {bindir}/pools.json ;;
         *) cat {bindir}/all.json ;;
       esac ;;
  lvchange) echo "$*" >> {bindir}/lvchange.log ;;
  *) exec {LVM} "$@" ;;
esac
"""
        )
        script.chmod(0o755)
        return script, bindir / "lvchange.log"

    return make


@needs_lvm
def test_thin_pools_zero_check_mode_reports_and_changes_nothing(lvmdir, scripted_lvm):
    lvm, log = scripted_lvm(POOLS)
    res = run_module(lvmdir, True, str(lvm), {"thin_pools_zero": True})
    assert res["changed"] is True, res
    assert res["thin_pools_fixed"] == ["vg0/pool"]
    assert not log.exists(), log.read_text()


@needs_lvm
def test_thin_pools_zero_apply_turns_zeroing_on_for_those_pools_only(lvmdir, scripted_lvm):
    lvm, log = scripted_lvm(POOLS)
    res = run_module(lvmdir, False, str(lvm), {"thin_pools_zero": True})
    assert res["changed"] is True and res["thin_pools_fixed"] == ["vg0/pool"], res
    assert log.read_text().splitlines() == ["lvchange --zero y vg0/pool"]


@needs_lvm
def test_thin_pools_all_zeroing_is_no_change(lvmdir, scripted_lvm):
    lvm, log = scripted_lvm({"vg1/zeroed": "1"})
    res = run_module(lvmdir, False, str(lvm), {"thin_pools_zero": True})
    assert res["changed"] is False and res["thin_pools_fixed"] == [], res
    assert not log.exists()
