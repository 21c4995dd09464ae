# SPDX-License-Identifier: Apache-2.0
"""hvguard_finding action plugin: argument handling, results, and real ad-hoc runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from action_plugins import hvguard_finding as hf

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / ".venv" / "bin" / "ansible"


def action(args: dict, check_mode: bool = False) -> hf.ActionModule:
    task = SimpleNamespace(
        args=args, async_val=0, check_mode=check_mode, action="hvguard_finding", _uuid="u"
    )
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    return hf.ActionModule(
        task=task,
        connection=connection,
        play_context=SimpleNamespace(check_mode=check_mode),
        loader=mock.MagicMock(),
        templar=mock.MagicMock(),
        shared_loader_obj=mock.MagicMock(),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("yes", True), ("False", False), (1, True), (0, False)],
)
def test_parse_compliant_accepts_booleans(value, expected) -> None:
    assert hf.parse_compliant(value) is expected


@pytest.mark.parametrize("value", ["maybe", "", None, 2, [True], {"a": 1}, 1.5])
def test_parse_compliant_rejects_everything_else(value) -> None:
    with pytest.raises(AnsibleActionFail, match="'compliant' must be a boolean"):
        hf.parse_compliant(value)


def test_compliant_result() -> None:
    res = action({"compliant": True, "msg": "fine", "evidence": {"k": [1]}}).run(task_vars={})
    assert res == {
        "changed": False,
        "hvguard_status": "compliant",
        "msg": "fine",
        "evidence": {"k": [1]},
    }


def test_drift_result_does_not_fail_by_default() -> None:
    res = action({"compliant": "false", "msg": "swap on /dev/sda3"}).run(task_vars={})
    assert res["hvguard_status"] == "drift"
    assert res["changed"] is False
    assert "failed" not in res
    assert res["msg"] == "swap on /dev/sda3"


def test_fail_on_drift_fails_only_on_drift() -> None:
    res = action({"compliant": False, "msg": "x", "fail_on_drift": True}).run(task_vars={})
    assert res["failed"] is True
    assert res["hvguard_status"] == "drift"
    assert res["msg"] == "drift: x"
    ok = action({"compliant": True, "fail_on_drift": True}).run(task_vars={})
    assert "failed" not in ok
    assert ok["msg"] == "compliant"


def test_check_mode_is_supported() -> None:
    res = action({"compliant": False}, check_mode=True).run(task_vars={})
    assert res["hvguard_status"] == "drift"
    assert res["changed"] is False


def test_missing_compliant_is_a_clear_error() -> None:
    with pytest.raises(AnsibleActionFail, match="compliant"):
        action({"msg": "x"}).run(task_vars={})


def test_unknown_argument_is_rejected() -> None:
    with pytest.raises(AnsibleActionFail, match="complaint"):
        action({"compliant": True, "complaint": True}).run(task_vars={})


def test_no_connection_needed() -> None:
    assert hf.ActionModule._requires_connection is False
    assert hf.ActionModule._supports_check_mode is True


def adhoc(tmp_path: Path, args: str, *extra: str) -> tuple[int, dict]:
    if not ANSIBLE.exists():
        pytest.skip("no .venv/bin/ansible (run make venv)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "HVGUARD_REPORT_DIR": str(tmp_path / "reports"),
        "HVGUARD_REPORT_CONSOLE": "false",
    }
    # An unreachable connection proves the action never talks to the host.
    cmd = [str(ANSIBLE), "all", "-i", "nowhere.invalid,", "-c", "ssh", "-m", "hvguard_finding"]
    proc = subprocess.run(
        [*cmd, "-a", args, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    out = json.loads(proc.stdout)
    return proc.returncode, out["plays"][0]["tasks"][0]["hosts"]["nowhere.invalid"]


def test_adhoc_finding_runs_without_reaching_the_host(tmp_path) -> None:
    rc, res = adhoc(tmp_path, '{"compliant": false, "msg": "m", "evidence": {"a": 1}}', "--check")
    assert rc == 0
    assert (res["hvguard_status"], res["changed"], res["evidence"]) == ("drift", False, {"a": 1})


def test_adhoc_bad_compliant_names_the_argument(tmp_path) -> None:
    rc, res = adhoc(tmp_path, '{"compliant": "maybe"}')
    assert rc == 2
    assert res["failed"] is True
    assert "'compliant' must be a boolean, got str 'maybe'" in res["msg"]


def test_adhoc_fail_on_drift(tmp_path) -> None:
    rc, res = adhoc(tmp_path, '{"compliant": false, "fail_on_drift": true}')
    assert rc == 2
    assert res["hvguard_status"] == "drift"


def test_remedy_rides_on_drift_only() -> None:
    """A manual fix (issue 10, bug 4) is carried to the report only while the control fails."""
    assert hf.finding(False, "m", None, False, "add x by hand")["hvguard_remedy"] == "add x by hand"
    assert "hvguard_remedy" not in hf.finding(True, "m", None, False, "add x by hand")
    assert "hvguard_remedy" not in hf.finding(False, "m", None, False, None)


def test_a_remedy_becomes_the_cells_manual_action() -> None:
    from hvguard_reporting import advice

    meta = {"disruption": "medium", "reboot": True}
    plain = advice.action("HVG-MEM-001", meta, "hv1", "drift", [])
    manual = advice.action("HVG-MEM-001", meta, "hv1", "drift", [], remedy="add x, reboot")
    assert plain["command"].startswith("ansible-playbook playbooks/site.yml")
    assert "manual" not in plain
    assert manual["manual"] is True and manual["command"] == "by hand: add x, reboot"
    assert manual["verify"] == plain["verify"]
    assert manual["impact"].startswith("applying hvguard does not fix this on this host")
