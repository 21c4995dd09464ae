# SPDX-License-Identifier: Apache-2.0
"""callback_plugins/hvguard_rtt.py: what counts as a round trip, on synthetic records and on
real playbook runs (local connection, linear and Mitogen)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT))

from callback_plugins import hvguard_rtt as rtt  # noqa: E402


def rec(kind: str = "module", host: str = "hv1", delegate: str | None = None,
        task: str = "t", uuid: str = "u1") -> dict[str, str]:  # fmt: skip
    return rtt.record(kind, host, delegate, task, uuid, "ansible.legacy.ping")


CASES = [
    # (records, expected figures of hv1)
    ([rec()], {"round_trips": 1, "tasks": 1, "commands": 0, "delegated": 0}),
    # a loop: one task, one execution per item
    ([rec(), rec(), rec()], {"round_trips": 3, "tasks": 1}),
    # an action plugin running stat then file in one task
    ([rec(task="tpl", uuid="u2"), rec(task="tpl", uuid="u2")], {"round_trips": 2, "tasks": 1}),
    # delegated to the controller: not a round trip of hv1
    ([rec(delegate="localhost")], {"round_trips": 0, "tasks": 0, "delegated": 1}),
    ([rec(delegate="127.0.0.1")], {"round_trips": 0, "delegated": 1}),
    # delegated to another host: not hv1's
    ([rec(delegate="hv2")], {"round_trips": 0, "delegated": 1}),
    # delegate_to the host itself is the host
    ([rec(delegate="hv1")], {"round_trips": 1, "delegated": 0}),
    # raw commands are counted apart, never as round trips
    ([rec(kind="command"), rec(kind="command"), rec()], {"round_trips": 1, "commands": 2}),
    ([rec(kind="command", delegate="localhost")], {"commands": 0, "delegated": 0}),
    # distinct tasks
    ([rec(uuid="a"), rec(uuid="b"), rec(uuid="b")], {"round_trips": 3, "tasks": 2}),
]


@pytest.mark.parametrize(("records", "expected"), CASES)
def test_summarize(records: list[dict[str, str]], expected: dict[str, int]) -> None:
    got = rtt.summarize(records)["hv1"]
    assert {k: got[k] for k in expected} == expected


def test_localhost_audited_from_itself_keeps_controller_work_apart() -> None:
    """In a localhost audit, `delegate_to: localhost` is still the controller's work."""
    got = rtt.summarize([rec(host="localhost", delegate="localhost"), rec(host="localhost")])
    assert (got["localhost"]["round_trips"], got["localhost"]["delegated"]) == (1, 1)


def test_hosts_are_counted_apart() -> None:
    got = rtt.summarize([rec(host="a"), rec(host="b"), rec(host="b")])
    assert (got["a"]["round_trips"], got["b"]["round_trips"]) == (1, 2)
    assert got["b"]["by_task"] == {"t": 2}


def _writer(path: str, worker: int) -> None:
    for i in range(200):
        rtt._append(path, rec(host=f"h{worker}", task="x" * 300, uuid=str(i)))


def test_concurrent_workers_lose_no_record(tmp_path: Path) -> None:
    """Forked workers append to one file at once: every line stays whole."""
    path = tmp_path / "records.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    got = rtt.summarize(rtt.read_records(path))
    assert {h: v["round_trips"] for h, v in got.items()} == {f"h{w}": 200 for w in range(8)}


PLAY = """\
- hosts: hypervisors
  gather_facts: false
  tasks:
    - {name: one module, ansible.builtin.ping: {}}
    - {name: controller debug, ansible.builtin.debug: {msg: hi}}
    - {name: controller set_fact, ansible.builtin.set_fact: {a: 1}}
    - {name: controller assert, ansible.builtin.assert: {that: [a == 1]}}
    - {name: skipped on the controller, ansible.builtin.ping: {}, when: false}
    - name: skipped by the host (command in check mode)
      ansible.builtin.command: "true"
      check_mode: true
      changed_when: false
    - name: template to a new file
      ansible.builtin.template: {src: src.j2, dest: "{{ work }}/new.txt"}
      check_mode: true
    - name: template over the same content
      ansible.builtin.template: {src: src.j2, dest: "{{ work }}/same.txt"}
      check_mode: true
    - {name: loop, ansible.builtin.ping: {}, loop: [1, 2, 3]}
    - {name: delegated, ansible.builtin.ping: {}, delegate_to: localhost}
    - {name: included, ansible.builtin.include_tasks: inc.yml}
    - ansible.builtin.meta: noop
"""

EXPECTED_BY_TASK = {
    "one module": 1,
    "skipped by the host (command in check mode)": 1,
    "template to a new file": 1,  # stat
    "template over the same content": 2,  # stat, then file for the attributes
    "loop": 3,
    "inside the include": 1,
}


def mitogen_strategy() -> str:
    import ansible_mitogen

    return os.path.dirname(ansible_mitogen.__file__) + "/plugins/strategy"


def run_counted(tmp_path: Path, strategy: str) -> tuple[subprocess.CompletedProcess, Any]:
    (tmp_path / "src.j2").write_text("same\n")
    (tmp_path / "same.txt").write_text("same\n")
    (tmp_path / "inc.yml").write_text("- {name: inside the include, ansible.builtin.ping: {}}\n")
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "inv.ini").write_text(
        f"[hypervisors]\nhv1 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_CALLBACKS_ENABLED": "hvguard_rtt", "ANSIBLE_NOCOLOR": "1",
           "HVGUARD_RTT_FILE": str(tmp_path / "rtt.json")}  # fmt: skip
    if strategy == "mitogen":
        env |= {
            "ANSIBLE_STRATEGY_PLUGINS": mitogen_strategy(),
            "ANSIBLE_STRATEGY": "mitogen_linear",
        }
    else:  # `make unit` runs on Mitogen: the linear case says so
        env["ANSIBLE_STRATEGY"] = "linear"
    argv = [str(BIN / "ansible-playbook"), "-i", "inv.ini", "play.yml", "-e", f"work={tmp_path}"]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc, json.loads((tmp_path / "rtt.json").read_text())


@pytest.mark.parametrize("strategy", ["linear", "mitogen"])
def test_real_run_counts_module_executions_on_the_host(tmp_path: Path, strategy: str) -> None:
    proc, summary = run_counted(tmp_path, strategy)
    hv1 = summary["hosts"]["hv1"]
    assert hv1["by_task"] == EXPECTED_BY_TASK, hv1
    assert hv1["round_trips"] == sum(EXPECTED_BY_TASK.values()) == 9
    assert hv1["tasks"] == len(EXPECTED_BY_TASK)
    assert hv1["delegated"] == 1
    # results the controller got: every task that ran, controller-only ones included
    assert (hv1["results"], hv1["skipped"]) == (10, 2)
    assert summary["definition"] == rtt.DEFINITION
    assert "hvguard_rtt" not in proc.stdout, "the counter must print nothing"
    if strategy == "linear":
        # the local connection does not pipeline: at least one command per execution
        assert hv1["commands"] >= hv1["round_trips"]
