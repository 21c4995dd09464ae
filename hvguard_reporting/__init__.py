# SPDX-License-Identifier: Apache-2.0
"""hvguard reporting engine: task results -> per host x control reports.

Plain Python on plain dicts, no Ansible objects: ``model`` (catalogue, statuses, control-ID
pattern), ``classify`` (one task result -> a status and evidence), ``aggregate`` (cells and
the JSON report), renderers (``junit``, ``html`` and ``markdown`` from Jinja2 templates,
``console``) and ``output`` (atomic writes). ``callback_plugins/hvguard_report.py`` is the thin
Ansible adapter; ``tools/gen_docs.py`` and the tests import this package directly.
"""

from __future__ import annotations

from .aggregate import DEFAULT_EVIDENCE_MAX, Aggregator, Cell, build_report, now, run_mode
from .classify import classify
from .compare import compare, render_compare
from .console import render_console
from .evidence import render_diff
from .html import render_html
from .junit import render_junit
from .markdown import render_markdown
from .model import (
    CONTROL_ID_RE,
    EXIT_CODES,
    EXIT_NO_REPORT,
    FAILING,
    FORMAT_FILES,
    SCHEMA_VERSION,
    STATUSES,
    control_ids,
    control_summary,
    default_catalogue_path,
    expected_controls,
    is_failing,
    load_catalogue,
    rank,
    run_id,
    verdict,
)
from .output import RENDERERS, render_json, write_atomic, write_reports
from .prometheus import render_prometheus
from .redaction import REDACTED, redact, redact_text
from .sarif import render_sarif
from .text import evidence_text, failing_first

__all__ = [
    "CONTROL_ID_RE",
    "DEFAULT_EVIDENCE_MAX",
    "EXIT_CODES",
    "EXIT_NO_REPORT",
    "FAILING",
    "FORMAT_FILES",
    "REDACTED",
    "RENDERERS",
    "SCHEMA_VERSION",
    "STATUSES",
    "Aggregator",
    "Cell",
    "build_report",
    "classify",
    "compare",
    "control_ids",
    "control_summary",
    "default_catalogue_path",
    "evidence_text",
    "expected_controls",
    "failing_first",
    "is_failing",
    "load_catalogue",
    "now",
    "rank",
    "redact",
    "redact_text",
    "render_compare",
    "render_console",
    "render_diff",
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "render_prometheus",
    "render_sarif",
    "run_id",
    "run_mode",
    "verdict",
    "write_atomic",
    "write_reports",
]
