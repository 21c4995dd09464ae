# SPDX-License-Identifier: Apache-2.0
"""Writing reports: every file atomically (temp file + rename), mode 0640."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .console import render_console as render_console
from .html import render_html
from .junit import render_junit
from .markdown import render_markdown
from .model import FORMAT_FILES
from .prometheus import render_prometheus
from .sarif import render_sarif


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"


RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "json": render_json,
    "junit": render_junit,
    "html": render_html,
    "md": render_markdown,
    "sarif": render_sarif,
    "prom": render_prometheus,
}


def write_atomic(path: Path, text: str) -> None:
    """tmp file in the same directory + rename: readers never see a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # Evidence can quote host configuration: not world-readable.
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


RUNS_DIR = "runs"
LATEST = "latest"


def point_latest(report_dir: Path, run_dir: Path) -> None:
    """``latest`` -> runs/<id>, replaced atomically (a new symlink renamed over the old)."""
    link = report_dir / LATEST
    tmp = report_dir / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(run_dir, report_dir), tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_reports(
    report: Mapping[str, Any], report_dir: Path, formats: Iterable[str], history: bool = True
) -> list[Path]:
    """Every format into the report directory and, when the report has a run ID and
    ``history`` is on, into ``runs/<id>/`` too, with ``latest`` pointing at it. Returns the
    top-level paths (what gates and CI jobs read)."""
    texts = {fmt: RENDERERS[fmt](report) for fmt in formats}
    run_id = (report.get("run") or {}).get("id")
    if history and run_id:
        run_dir = report_dir / RUNS_DIR / str(run_id)
        for fmt, text in texts.items():
            write_atomic(run_dir / FORMAT_FILES[fmt], text)
        point_latest(report_dir, run_dir)
    written = []
    for fmt, text in texts.items():
        path = report_dir / FORMAT_FILES[fmt]
        write_atomic(path, text)
        written.append(path)
    return written
