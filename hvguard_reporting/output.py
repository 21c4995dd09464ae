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


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"


RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "json": render_json,
    "junit": render_junit,
    "html": render_html,
    "md": render_markdown,
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


def write_reports(
    report: Mapping[str, Any], report_dir: Path, formats: Iterable[str]
) -> list[Path]:
    written = []
    for fmt in formats:
        path = report_dir / FORMAT_FILES[fmt]
        write_atomic(path, RENDERERS[fmt](report))
        written.append(path)
    return written
