# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""hvguard compliance report: the Ansible adapter of the reporting engine.

The engine (catalogue model, classification, aggregation, renderers) is the package
``hvguard_reporting`` at the top of the repository, plain Python on plain dicts. This plugin
only translates Ansible callback events into its calls. Ansible loads callback plugins by
path, not as part of a package, so the engine is loaded by path too (see ``_load_engine``);
it lives outside ``callback_plugins/`` because Ansible treats that directory's subdirectories
as more plugin directories.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

DOCUMENTATION = r"""
name: hvguard_report
type: aggregate
short_description: Per host x control compliance reports (JSON, JUnit, HTML, Markdown)
description:
  - Aggregates the results of tasks tagged with hvguard control IDs (C(HVG-AREA-NNN)) into
    one status per host and control, and writes JSON, JUnit XML, HTML, Markdown, SARIF and
    Prometheus textfile reports.
  - In check mode a C(changed) result is drift; in an apply run it is C(remediated).
  - Reports are written at the end of the run and at the start of every play that follows
    a play with results, so a later gate play can read the JSON.
  - The absolute path of the JSON report is exported to the controller environment as
    E(HVGUARD_REPORT_JSON) for such gate plays.
  - See docs/report-schema.md for the statuses and the JSON schema.
requirements:
  - enable in ansible.cfg (callbacks_enabled = hvguard_report)
options:
  report_dir:
    description: Directory the reports are written to (created when missing).
    type: path
    default: ./reports
    env:
      - name: HVGUARD_REPORT_DIR
    ini:
      - section: callback_hvguard_report
        key: report_dir
  catalogue:
    description:
      - Control catalogue (YAML). Unset means C(controls/catalogue.yml) next to the
        directory holding this plugin.
    type: path
    env:
      - name: HVGUARD_CATALOGUE
    ini:
      - section: callback_hvguard_report
        key: catalogue
  formats:
    description: Report formats to write.
    type: list
    elements: str
    default: [json, junit, html, md, sarif, prom]
    env:
      - name: HVGUARD_REPORT_FORMATS
    ini:
      - section: callback_hvguard_report
        key: formats
  waivers:
    description:
      - Waiver files (YAML, see docs/report-schema.md). Unset means C(hvguard_waivers.yml)
        beside (or in) each inventory source. Missing files are no waivers.
    type: list
    elements: path
    env:
      - name: HVGUARD_WAIVERS
    ini:
      - section: callback_hvguard_report
        key: waivers
  history:
    description: Also keep each run's reports in C(runs/<run id>/) with a C(latest) symlink.
    type: bool
    default: true
    env:
      - name: HVGUARD_REPORT_HISTORY
    ini:
      - section: callback_hvguard_report
        key: history
  console:
    description: Print the compact per-control table and the report paths at the end.
    type: bool
    default: true
    env:
      - name: HVGUARD_REPORT_CONSOLE
    ini:
      - section: callback_hvguard_report
        key: console
  evidence_max_bytes:
    description: Cap on the evidence kept per host and control (JSON bytes).
    type: int
    default: 16384
    env:
      - name: HVGUARD_EVIDENCE_MAX_BYTES
    ini:
      - section: callback_hvguard_report
        key: evidence_max_bytes
"""


ENGINE = "hvguard_reporting"


def _engine_dir() -> Path:
    """``../hvguard_reporting`` in this checkout (callback_plugins/), or at the top of the
    installed collection (plugins/callback/, see tools/build_collection.py)."""
    here = Path(__file__).resolve()
    candidates = [here.parents[1] / ENGINE, here.parents[2] / ENGINE]
    return next((c for c in candidates if (c / "__init__.py").is_file()), candidates[0])


def _load_engine() -> ModuleType:
    """Import the engine package from this checkout or collection (``_engine_dir``). Another
    copy already imported under that name is refused: statuses from two engines never mix."""
    pkg = _engine_dir()
    loaded = sys.modules.get(ENGINE)
    if loaded is not None:
        if Path(loaded.__file__ or "").resolve().parent != pkg:
            raise ImportError(f"hvguard_report: {ENGINE} already imported from {loaded.__file__}")
        return loaded
    spec = importlib.util.spec_from_file_location(
        ENGINE, pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"hvguard_report: cannot load the reporting engine from {pkg}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[ENGINE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[ENGINE]
        raise
    return module


engine = _load_engine()
# The engine's API under this module too (tests, bench/report_overhead.py).
from hvguard_reporting import *  # noqa: E402, F403
from hvguard_reporting import (  # noqa: E402
    DEFAULT_EVIDENCE_MAX,
    FORMAT_FILES,
    Aggregator,
    build_report,
    control_ids,
    default_catalogue_path,
    expected_controls,
    load_catalogue,
    now,
    render_console,
    run_id,
    write_reports,
)
from hvguard_reporting.waivers import inventory_files as waiver_files  # noqa: E402
from hvguard_reporting.waivers import load as load_waivers  # noqa: E402

# --------------------------------------------------------------------------------------
# Ansible adapter
# --------------------------------------------------------------------------------------

try:
    from ansible import context
    from ansible.plugins.callback import CallbackBase
    from ansible.release import __version__ as ANSIBLE_VERSION
except ImportError:  # the engine stays usable without Ansible
    CallbackBase = object  # type: ignore[assignment,misc]
    context = None  # type: ignore[assignment]
    ANSIBLE_VERSION = "unknown"


_INCLUDE_ACTIONS = frozenset(
    f"{prefix}{name}"
    for prefix in ("", "ansible.builtin.", "ansible.legacy.")
    for name in ("include_tasks", "include_role")
)


def _walk_tasks(items: Iterable[Any]) -> Iterator[Any]:
    for item in items or ():
        if hasattr(item, "block") and hasattr(item, "rescue"):
            yield from _walk_tasks([*item.block, *item.rescue, *item.always])
        else:
            yield item


def _role_names(roles: Iterable[Any]) -> set[str]:
    names: set[str] = set()
    for role in roles or ():
        names.add(role.get_name())
        names.update(dep.get_name() for dep in role.get_all_dependencies())
    return names


def _will_be_rescued(task: Any) -> bool:
    """True when a failure of ``task`` lands in an enclosing block's rescue section."""
    child, parent = task, getattr(task, "_parent", None)
    while parent is not None:
        rescue = getattr(parent, "rescue", None)
        body = getattr(parent, "block", None)
        if rescue and body is not None:
            uuids = {getattr(t, "_uuid", None) for t in body}
            if getattr(child, "_uuid", None) in uuids:
                return True
        child, parent = parent, getattr(parent, "_parent", None)
    return False


def _looped_role_names(task: Any) -> list[str]:
    """Roles an include_role with a templated name takes from a literal loop list (the
    validation play's `name: "{{ __hvguard_role }}"`): a host that stops there, before any
    control ran, is then reported with those roles' controls in error instead of vanishing."""
    loop = getattr(task, "loop", None)
    if "{{" not in str(task._role_name) or not isinstance(loop, list):
        return []
    return [item for item in loop if isinstance(item, str) and "{{" not in item]


def _play_hosts(play: Any) -> dict[str, list[str]]:
    """Hosts a play (batch) targets with their groups; empty when that cannot be told."""
    try:
        inventory = play.get_variable_manager()._inventory
        return {
            h.get_name(): [g.get_name() for g in h.get_groups()]
            for h in inventory.get_hosts(play.hosts)
        }
    except Exception:  # only an optimisation of the report: never break the run
        return {}


def _extra_facts(play: Any) -> Any:
    """hvguard facts given as extra vars (-e hvguard=...), as sandboxed audits do."""
    try:
        return play.get_variable_manager().extra_vars.get("hvguard")
    except Exception:
        return None


def _cli(key: str, default: Any = None) -> Any:
    if context is None:
        return default
    try:
        return context.CLIARGS.get(key, default)
    except AttributeError:
        return default


class CallbackModule(CallbackBase):  # type: ignore[misc,valid-type]
    """Thin adapter: Ansible events -> Aggregator, reports at play start and at the end."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "hvguard_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display: Any = None, options: Any = None) -> None:
        super().__init__(display=display, options=options)
        self._lock = threading.Lock()
        self._agg: Aggregator | None = None
        self._catalogue: dict[str, Any] = {}
        self._playbooks: list[str] = []
        self._warnings: list[str] = []
        self._started = now()
        given = os.environ.get("HVGUARD_RUN_ID")
        self._run_id = run_id(self._started, given)
        if given and given != self._run_id:
            self._warnings.append(f"hvguard_report: HVGUARD_RUN_ID {given!r} is no file name")
        self._report_dir = Path("reports")
        self._formats: list[str] = list(FORMAT_FILES)
        self._dirty = False
        self._last_play: str | None = None
        self._play_diff = False
        self._waivers: list[Any] = []
        self._waiver_files: list[str] = []
        self._history = True
        self._starts: dict[tuple[str, str], float] = {}

    # -- setup --------------------------------------------------------------------------
    def set_options(
        self, task_keys: Any = None, var_options: Any = None, direct: Any = None
    ) -> None:
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._report_dir = Path(self.get_option("report_dir") or "reports").absolute()
        os.environ["HVGUARD_REPORT_JSON"] = str(self._report_dir / FORMAT_FILES["json"])
        formats = [str(f).strip().lower() for f in self.get_option("formats") or []]
        bad = [f for f in formats if f not in FORMAT_FILES]
        if bad:
            self._warn(f"hvguard_report: unknown formats ignored: {', '.join(bad)}")
        self._formats = [f for f in formats if f in FORMAT_FILES]
        path = self.get_option("catalogue") or str(default_catalogue_path())
        try:
            self._catalogue = load_catalogue(path)
        except (OSError, ValueError) as exc:
            self._catalogue = {"path": path, "controls": {}}
            self._warn(f"hvguard_report: cannot read the control catalogue {path}: {exc}")
        except Exception as exc:  # a YAML error must not kill the playbook
            self._catalogue = {"path": path, "controls": {}}
            self._warn(f"hvguard_report: cannot parse the control catalogue {path}: {exc}")
        evidence_max = int(self.get_option("evidence_max_bytes") or DEFAULT_EVIDENCE_MAX)
        self._agg = Aggregator(self._catalogue["controls"], evidence_max=evidence_max)
        self._history = bool(self.get_option("history"))
        self._load_waivers(self.get_option("waivers"))

    def _load_waivers(self, configured: Any) -> None:
        if configured:
            files = [Path(str(p)).expanduser() for p in configured]
        else:
            files = waiver_files(_cli("inventory", ()) or ())
        self._waivers, warnings = load_waivers(files)
        self._waiver_files = [str(p) for p in files if p.is_file()]
        for msg in warnings:
            self._warn(msg)
        for missing in (p for p in files if configured and not p.is_file()):
            self._warn(f"hvguard_report: waiver file {missing} does not exist")

    def _warn(self, msg: str) -> None:
        self._warnings.append(msg)
        self._display.warning(msg)

    # -- metadata -----------------------------------------------------------------------
    def _run_meta(self) -> dict[str, Any]:
        cat = self._catalogue
        return {
            "id": self._run_id,
            "started": self._started,
            "check_mode": bool(_cli("check", False)),
            "diff_mode": bool(_cli("diff", False)) or self._play_diff,
            "ansible_version": ANSIBLE_VERSION,
            "playbooks": list(self._playbooks),
            "catalogue": {
                "path": cat.get("path"),
                "schema_version": cat.get("schema_version"),
                "sha256": cat.get("sha256"),
            },
            "complete": False,
            "warnings": list(self._warnings),
            "waivers": list(self._waiver_files),
        }

    # -- events -------------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbooks.append(str(getattr(playbook, "_file_name", playbook)))

    def v2_playbook_on_play_start(self, play: Any) -> None:
        if self._agg is None:
            return
        # With `serial` every batch starts the same play again; only a new play can be a
        # gate reading the report, so batches do not rewrite it (hundreds of hosts).
        uuid = getattr(play, "_uuid", None)
        new_play = uuid is None or uuid != self._last_play
        self._last_play = uuid
        if new_play and self._agg.has_results() and self._dirty:
            self._write(complete=False)
        roles = _role_names(play.get_roles())
        tagged: set[str] = set()
        for task in _walk_tasks([*play.pre_tasks, *play.tasks, *play.post_tasks]):
            role = getattr(task, "_role", None)
            if role is not None:
                roles.add(role.get_name())
            if getattr(task, "_role_name", None):
                roles.add(str(task._role_name))
                roles.update(_looped_role_names(task))
            tagged.update(control_ids(getattr(task, "tags", ()) or (), self._agg.catalogue)[0])
        expected = expected_controls(
            self._agg.catalogue,
            roles,
            tagged,
            only_tags=_cli("tags", ("all",)) or ("all",),
            skip_tags=_cli("skip_tags", ()) or (),
        )
        hosts = _play_hosts(play)
        extra = _extra_facts(play)
        with self._lock:
            self._agg.groups.update(hosts)
            if isinstance(extra, dict):
                for host in hosts:
                    if host not in self._agg.domains:
                        self._agg.set_domains(host, extra)
        check_mode = getattr(play, "check_mode", None)
        self._play_diff = self._play_diff or bool(getattr(play, "diff", False))
        with self._lock:
            self._agg.start_play(
                play.get_name(),
                expected,
                None if check_mode is None else bool(check_mode),
                hosts=list(hosts),
            )

    def _handle(self, result: Any, outcome: str, stops_host: bool = False) -> None:
        if self._agg is None:
            return
        task = getattr(result, "task", None) or result._task
        host = getattr(result, "host", None) or result._host
        data = getattr(result, "result", None)
        if data is None:
            data = result._result
        name = task.get_name() if task is not None else "?"
        tags = list(getattr(task, "tags", None) or ())
        check_mode = bool(getattr(task, "check_mode", False)) or bool(_cli("check", False))
        roles = {r.get_name() for r in [getattr(task, "_role", None)] if r is not None}
        if getattr(task, "_role_name", None):
            roles.add(str(task._role_name))  # include_role: the role is about to run
        with self._lock:
            if roles:
                self._agg.expect(
                    cid for cid, c in self._agg.catalogue.items() if c.get("role") in roles
                )
            if outcome == "ok" and getattr(task, "action", None) in _INCLUDE_ACTIONS:
                # A dynamic include that ran says nothing about the host: what it includes
                # does. (A skipped or failed include still counts.)
                return
            started = self._starts.pop((host.get_name(), getattr(task, "_uuid", "")), None)
            unknown = self._agg.record(
                host.get_name(),
                name,
                tags,
                outcome,
                data,
                check_mode,
                stops_host=stops_host,
                duration=time.monotonic() - started if started is not None else 0.0,
            )
            self._dirty = True
        for cid in unknown:
            self._warn(f"hvguard_report: task '{name}' is tagged {cid}, not in the catalogue")

    def v2_runner_on_start(self, host: Any, task: Any) -> None:
        key = (host.get_name(), getattr(task, "_uuid", ""))
        with self._lock:
            self._starts[key] = time.monotonic()

    def v2_runner_on_ok(self, result: Any) -> None:
        self._handle(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if ignore_errors:
            self._handle(result, "failed_ignored")
            return
        task = getattr(result, "task", None)
        stops = not (task is not None and _will_be_rescued(task))
        self._handle(result, "failed", stops_host=stops)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._handle(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        task = getattr(result, "task", None)
        stops = not bool(getattr(task, "ignore_unreachable", False))
        self._handle(result, "unreachable", stops_host=stops)

    # Loop items: the final v2_runner_on_* result carries every item (its `results` list),
    # so items are accounted there once; counting them here too would double count.
    def v2_runner_item_on_ok(self, result: Any) -> None:
        return None

    def v2_runner_item_on_failed(self, result: Any) -> None:
        return None

    def v2_runner_item_on_skipped(self, result: Any) -> None:
        return None

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if self._agg is None:
            return
        report, paths = self._write(complete=True)
        self._point_to(paths)
        if self.get_option("console"):
            for line in render_console(report, [str(p) for p in paths]):
                self._display.display(line)

    # -- output -------------------------------------------------------------------------
    def _point_to(self, paths: list[Path]) -> None:
        """HVGUARD_REPORT_POINTER names a file to receive the path of this run's final JSON
        report: how tools/hvguard_audit.py finds it whatever report_dir is configured."""
        pointer = os.environ.get("HVGUARD_REPORT_POINTER")
        json_paths = [p for p in paths if p.name == FORMAT_FILES["json"]]
        if pointer and json_paths:
            try:
                Path(pointer).write_text(str(json_paths[-1]) + "\n", encoding="utf-8")
            except OSError as exc:
                self._warn(f"hvguard_report: cannot write HVGUARD_REPORT_POINTER {pointer}: {exc}")

    def _write(self, complete: bool) -> tuple[dict[str, Any], list[Path]]:
        assert self._agg is not None
        with self._lock:
            meta = self._run_meta()
            meta["complete"] = complete
            report = build_report(self._agg, meta, self._waivers)
            self._dirty = False
        try:
            paths = write_reports(report, self._report_dir, self._formats, self._history)
            return report, paths
        except OSError as exc:
            self._warn(f"hvguard_report: cannot write reports to {self._report_dir}: {exc}")
            return report, []
