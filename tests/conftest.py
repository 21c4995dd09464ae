# SPDX-License-Identifier: Apache-2.0
"""Suite-wide rule: on CI a skipped test is a failure unless tests/ci_skips.yml allows it.

A skip that nobody sees turns a required test into one that cannot fail (a missing package
on the CI machine, a busy lock). When ``CI`` is set (CI runs with CI=true), or always with
``HVGUARD_STRICT_SKIPS=1``, every skip whose node id matches no entry of ci_skips.yml makes
the session exit non-zero with the list. ``HVGUARD_STRICT_SKIPS=0`` turns the check off
(tools/mutation.py does, so that a skip is never counted as a killed mutant).

ci_skips.yml is a list of ``{test: <fnmatch pattern of node ids>, reason: <why it may skip on
CI>}``, optionally ``match: <regex the skip message must contain>`` so that a test allowed to
skip for one reason still fails when it skips for another.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ALLOWED_FILE = Path(__file__).with_name("ci_skips.yml")
ENTRY_KEYS = {"test", "reason", "match"}


@dataclass(frozen=True)
class AllowedSkip:
    test: str
    reason: str
    match: str | None = None

    def allows(self, nodeid: str, message: str) -> bool:
        if not fnmatch.fnmatchcase(nodeid, self.test):
            return False
        return self.match is None or re.search(self.match, message) is not None


def load_allowed(path: Path) -> list[AllowedSkip]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else []
    if not isinstance(data, list):
        raise pytest.UsageError(f"{path}: expected a list of {{test, reason}} entries")
    allowed = []
    for index, entry in enumerate(data):
        where = f"{path.name}[{index}]"
        if not isinstance(entry, dict) or not {"test", "reason"} <= entry.keys():
            raise pytest.UsageError(f"{where}: each entry needs test and reason")
        if entry.keys() - ENTRY_KEYS:
            raise pytest.UsageError(f"{where}: unknown keys {sorted(entry.keys() - ENTRY_KEYS)}")
        if not str(entry["reason"]).strip():
            raise pytest.UsageError(f"{where}: reason must say why the skip is acceptable")
        match = entry.get("match")
        if match is not None:
            re.compile(match)
        allowed.append(AllowedSkip(str(entry["test"]), str(entry["reason"]), match))
    return allowed


def strict_skips() -> bool:
    flag = os.environ.get("HVGUARD_STRICT_SKIPS", "")
    if flag in {"0", "1"}:
        return flag == "1"
    return os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}


def skip_message(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipGuard:
    def __init__(self, allowed: list[AllowedSkip]) -> None:
        self.allowed = allowed
        self.unexpected: list[tuple[str, str]] = []

    def record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        message = skip_message(report)
        if not any(entry.allows(report.nodeid, message) for entry in self.allowed):
            self.unexpected.append((report.nodeid, message))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.record(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # A run whose only tests all skipped at collection reports NO_TESTS_COLLECTED.
        clean = {pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED}
        if self.unexpected and session.exitstatus in clean:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.unexpected:
            return
        terminalreporter.section("skips not allowed on CI", sep="=", red=True, bold=True)
        for nodeid, message in self.unexpected:
            terminalreporter.line(f"SKIP NOT ALLOWED {nodeid}: {message}", red=True)
        terminalreporter.line(
            f"{len(self.unexpected)} required test(s) skipped: make them run on CI or list "
            f"them with a reason in {ALLOWED_FILE.relative_to(ALLOWED_FILE.parents[1])}"
        )


def pytest_configure(config: pytest.Config) -> None:
    # Under xdist the controller sees every worker's reports: judge the skips there, once.
    if strict_skips() and not hasattr(config, "workerinput"):
        config.pluginmanager.register(SkipGuard(load_allowed(ALLOWED_FILE)), "hvguard-skip-guard")


CATALOGUE_FILE = Path(__file__).resolve().parents[1] / "controls" / "catalogue.yml"


# The longest modules, longest first (durations of `make unit`). `make unit` runs on xdist
# workers with --dist worksteal: each worker starts on its share of the collection in order
# and an idle one takes the tail of a busy one's queue, so the long tests start at once
# instead of one ending the run alone (loadscope, which hands out the biggest modules first,
# left the single-test TLS sandbox scenario and the decommission test for the last 4 minutes).
SLOW_FIRST = (
    "tests/host/test_tls_role_sandbox.py",
    "tests/negative/test_bad_input.py",
    "tests/host/test_memory_role.py",
    "tests/host/test_tls_bad_input.py",
    "tests/host/test_tls_decommission.py",
    "tests/e2e/test_audit_gate.py",
    "tests/host/test_audit_localhost.py",
    "tests/host/test_scrub_role.py",
    "tests/host/test_pull.py",
)


def slow_first(items: list[pytest.Item]) -> None:
    rank = {path: index for index, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow modules first; every ``@pytest.mark.control(...)`` names catalogue IDs, and only
    ``effect=`` besides."""
    slow_first(items)
    marks = [(item, mark) for item in items for mark in item.iter_markers("control")]
    if not marks:  # the catalogue is read only when something claims a control
        return
    catalogue = yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))
    known = {c["id"] for c in catalogue["controls"]}
    bad = sorted(
        f"{item.nodeid}: control{mark.args}{mark.kwargs or ''}"
        for item, mark in marks
        if not mark.args or set(mark.args) - known or set(mark.kwargs) - {"effect"}
    )
    if bad:
        raise pytest.UsageError("control marker with unknown IDs or keywords: " + "; ".join(bad))
