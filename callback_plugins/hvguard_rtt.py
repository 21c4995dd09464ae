# SPDX-License-Identifier: Apache-2.0
# Copyright: hvguard contributors
"""hvguard_rtt: count the round trips a playbook costs each host (issue 15).

Definition. A round trip of host H is one module execution on H: one call of the action
layer's ``_execute_module`` (Ansible's, or Mitogen's override of it) in a task run for H and
not delegated to another host or to the controller. A plain module task costs one, a loop
one per item, an action plugin as many modules as it executes (``template`` and ``copy``: a
``stat`` of the destination, then ``file`` or ``copy`` when there is one), and a
controller-only action (``debug``, ``assert``, ``set_fact``, ``include_*``, ``meta``, an action
plugin that computes its result locally) costs none. A task that returns ``skipped`` from the
host (``command`` in check mode) still cost one. Work delegated elsewhere (``delegate_to:
localhost``) is counted apart, as ``delegated``.

More figures per host: ``results`` (task results the controller got for the host, skipped
ones apart in ``skipped``: controller-only tasks included, so this is the "tasks per host" a
console recap shows), ``tasks`` (distinct tasks with at least one round trip) and
``commands`` (raw shell commands through ``_low_level_execute_command``: interpreter
discovery, temporary directories, and on Ansible's own SSH path with pipelining one per
module execution as well; with Mitogen, module executions are RPCs and not in it).

How. Actions run in forked worker processes, so the callback patches those methods in the
controller before any worker forks; each worker appends one JSON line per execution to a
file (O_APPEND, one write per line); the callback reads it at the end and writes the summary.
No stdout: it is enabled only where counting is wanted (ANSIBLE_CALLBACKS_ENABLED).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

DOCUMENTATION = r"""
name: hvguard_rtt
type: aggregate
short_description: Count module executions (round trips) per host; no console output
description:
  - Counts, per inventory host, the module executions that ran on it (round trips), the
    distinct tasks that caused them, the raw commands, and the executions delegated elsewhere.
  - Writes a JSON summary at the end of the run.
requirements:
  - enable with ANSIBLE_CALLBACKS_ENABLED (e.g. hvguard_report,hvguard_rtt)
options:
  output:
    description: File the JSON summary is written to.
    type: path
    default: ./hvguard-rtt.json
    env:
      - name: HVGUARD_RTT_FILE
    ini:
      - section: callback_hvguard_rtt
        key: output
"""

RECORDS_ENV = "HVGUARD_RTT_RECORDS"
SCHEMA = 1
DEFINITION = (
    "round trip = one module execution on the host (ActionBase._execute_module or Mitogen's "
    "override) in a task not delegated to another host or to the controller"
)

# The worker's current (host, task): a forked worker runs one task for one host at a time.
_CURRENT: dict[str, Any] = {}


# -- pure part: records -> summary (unit-tested with synthetic records) ---------------------
def record(
    kind: str, host: str, delegate: str | None, task: str, task_uuid: str, detail: str
) -> dict[str, str]:
    """One execution as it is written by a worker."""
    return {"kind": kind, "host": host, "delegate": delegate or "", "task": task,
            "uuid": task_uuid, "detail": detail}  # fmt: skip


# ``delegate_to`` one of these is work on the controller, even in an audit of the controller.
CONTROLLER = frozenset({"localhost", "127.0.0.1", "::1"})


def is_delegated(rec: Mapping[str, str]) -> bool:
    """True when the execution ran elsewhere than on the host the task was run for."""
    delegate = rec["delegate"]
    return bool(delegate) and (delegate != rec["host"] or delegate in CONTROLLER)


def empty_host() -> dict[str, Any]:
    return {"round_trips": 0, "tasks": 0, "commands": 0, "delegated": 0, "by_task": {}}


def summarize(records: Iterable[Mapping[str, str]]) -> dict[str, dict[str, Any]]:
    """Per host: round_trips, tasks, commands, delegated, and round trips by task name."""
    hosts: dict[str, dict[str, Any]] = {}
    uuids: dict[str, set[str]] = {}
    for rec in records:
        host = hosts.setdefault(rec["host"], empty_host())
        if is_delegated(rec):
            host["delegated"] += rec["kind"] == "module"
        elif rec["kind"] == "command":
            host["commands"] += 1
        elif rec["kind"] == "module":
            host["round_trips"] += 1
            host["by_task"][rec["task"]] = host["by_task"].get(rec["task"], 0) + 1
            uuids.setdefault(rec["host"], set()).add(rec["uuid"])
    for name, host in hosts.items():
        host["tasks"] = len(uuids.get(name, ()))
    return hosts


def read_records(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- worker side ----------------------------------------------------------------------------
def _append(path: str, rec: Mapping[str, str]) -> None:
    data = (json.dumps(rec, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _note(kind: str, action: Any, detail: str) -> None:
    path = os.environ.get(RECORDS_ENV)
    if not path:
        return
    task = getattr(action, "_task", None)
    host = _CURRENT.get("host") or "?"
    delegate = getattr(task, "delegate_to", None) if task is not None else None
    name = task.get_name() if task is not None else "?"
    uuid = getattr(task, "_uuid", "") if task is not None else ""
    _append(path, record(kind, host, str(delegate) if delegate else None, name, uuid, detail))


def _counting(kind: str, func: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(func, "_hvguard_rtt", False):
        return func

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kind == "module":
            name = kwargs.get("module_name") or (args[0] if args else None)
            detail = str(name or getattr(getattr(self, "_task", None), "action", "?"))
        else:
            detail = "command"
        _note(kind, self, detail)
        return func(self, *args, **kwargs)

    wrapper._hvguard_rtt = True  # type: ignore[attr-defined]
    return wrapper


def _tracking_host(func: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(func, "_hvguard_rtt", False):
        return func

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        _CURRENT["host"] = self._host.name
        return func(self, *args, **kwargs)

    wrapper._hvguard_rtt = True  # type: ignore[attr-defined]
    return wrapper


def _patch_class(cls: type) -> None:
    for attr, kind in (("_execute_module", "module"), ("_low_level_execute_command", "command")):
        if attr in cls.__dict__:
            setattr(cls, attr, _counting(kind, cls.__dict__[attr]))


def install() -> None:
    """Patch Ansible (and Mitogen, once its strategy has loaded it); idempotent."""
    from ansible.executor.task_executor import TaskExecutor
    from ansible.plugins.action import ActionBase

    TaskExecutor.run = _tracking_host(TaskExecutor.run)  # type: ignore[method-assign]
    _patch_class(ActionBase)
    mixins = sys.modules.get("ansible_mitogen.mixins")
    if mixins is not None:
        _patch_class(mixins.ActionModuleMixin)


# -- controller side ------------------------------------------------------------------------
try:
    from ansible.plugins.callback import CallbackBase
except ImportError:  # the pure part above is importable without Ansible
    CallbackBase = object  # type: ignore[assignment,misc]


class CallbackModule(CallbackBase):  # type: ignore[misc,valid-type]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "hvguard_rtt"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display: Any = None, options: Any = None) -> None:
        super().__init__(display=display, options=options)
        fd, name = tempfile.mkstemp(prefix="hvguard-rtt-", suffix=".jsonl")
        os.close(fd)
        self._records = Path(name)
        # Workers inherit the environment of the controller they fork from.
        os.environ[RECORDS_ENV] = name
        self._results: dict[str, dict[str, int]] = {}
        install()

    def _result(self, result: Any, key: str) -> None:
        counts = self._results.setdefault(result._host.name, {"results": 0, "skipped": 0})
        counts[key] += 1

    def v2_runner_on_ok(self, result: Any) -> None:
        self._result(result, "results")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result(result, "results")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result(result, "results")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._result(result, "skipped")

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        install()  # Mitogen's mixin exists only once its strategy is loaded

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        install()

    def v2_playbook_on_stats(self, stats: Any) -> None:
        hosts = summarize(read_records(self._records))
        for name in sorted(set(getattr(stats, "processed", {}) or {}) | set(self._results)):
            hosts.setdefault(name, empty_host()).update(
                self._results.get(name, {"results": 0, "skipped": 0})
            )
        out = Path(self.get_option("output") or "hvguard-rtt.json").absolute()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps({"schema": SCHEMA, "definition": DEFINITION, "hosts": hosts}, indent=1)
        )
        self._records.unlink(missing_ok=True)
