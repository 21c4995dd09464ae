# SPDX-License-Identifier: Apache-2.0
"""Evidence entries: host-provided values made plain JSON, redacted, clipped; diffs rendered
(installed files by identity, configuration files as unified diffs)."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from .redaction import redact, redact_text

TEXT_FIELD_MAX = 8 * 1024  # one msg/diff/stderr; the per-cell cap still applies on top
# Characters XML 1.0 cannot carry at all (escaping does not help): drop them from evidence.
XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def clip(text: str, limit: int = TEXT_FIELD_MAX) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... truncated {len(text) - limit} characters]"


def clean(text: Any) -> str:
    return XML_BAD.sub("\ufffd", str(text))


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    # Redact the structure before it becomes text (its strings would be escaped in JSON).
    return json.dumps(redact(jsonable(value)), sort_keys=True, default=str, indent=1)


def jsonable(value: Any) -> Any:
    """Evidence comes from hosts: force it into plain JSON types."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


# Installed programs and data are evidence by identity, not by text (the scrub engine alone
# is over a thousand lines); configuration files (everything under /etc) keep their diff.
_INSTALL_DIRS = ("/usr/", "/opt/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/boot/", "/srv/")
_CONTROLLER_TMP = ("/ansible-local-", "/.ansible/tmp/")


def _installed_file(path: str, before: str, after: str) -> bool:
    """A file the pack installs rather than configures: outside /etc, in a program or data
    directory, or a script anywhere outside /etc. (Ansible diffs no binary files.)"""
    if not path.startswith("/") or path.startswith("/etc/"):
        return False
    if path.startswith(_INSTALL_DIRS):
        return True
    return before.startswith("#!") or after.startswith("#!")


def _identity(text: str) -> str:
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")
    return f"sha256 {hashlib.sha256(data).hexdigest()}, {len(data)} bytes"


def _file_summary(path: str, before: str, after: str) -> str:
    old = _identity(before) if before else "absent or empty"
    return (
        f"installed file {path} differs (no text diff for installed files)\n"
        f"  on the host: {old}\n"
        f"  this run:    {_identity(after)}"
    )


def render_diff(diff: Any) -> str:
    """A result's ``diff`` (dict or list of dicts) as unified diff text."""
    if not diff:
        return ""
    parts = diff if isinstance(diff, list) else [diff]
    chunks: list[str] = []
    for part in parts:
        if not isinstance(part, Mapping):
            chunks.append(as_text(part))
            continue
        if part.get("prepared"):
            chunks.append(redact_text(as_text(part["prepared"])))
            continue
        if "before" not in part and "after" not in part:
            continue
        chunks.append(_render_part(part))
    return "\n".join(chunk for chunk in chunks if chunk).rstrip("\n")


def _render_part(part: Mapping[str, Any]) -> str:
    before, after = part.get("before", ""), part.get("after", "")
    before_header = str(part.get("before_header", "before"))
    after_header = str(part.get("after_header", "after"))
    texts = isinstance(before, str) and isinstance(after, str)
    if texts and _installed_file(before_header, before, after):
        return _file_summary(before_header, before, after)
    if any(mark in after_header for mark in _CONTROLLER_TMP):
        after_header = f"{before_header} (new)"  # template's temp file means nothing
    # Each side is redacted before diffing, so a redacted line only shows up as changed
    # when what it hides changed (PEM bodies carry a digest).
    before_s = redact_text(before) if isinstance(before, str) else as_text(before) + "\n"
    after_s = redact_text(after) if isinstance(after, str) else as_text(after) + "\n"
    lines = difflib.unified_diff(
        before_s.splitlines(keepends=True),
        after_s.splitlines(keepends=True),
        fromfile=before_header,
        tofile=after_header,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def entry(task: str, kind: str, status: str, **fields: Any) -> dict[str, Any]:
    """One evidence entry. Every piece of evidence enters the report here, so this is where
    secrets are redacted (before clipping, so that a cut cannot split a PEM block)."""
    out: dict[str, Any] = {"task": redact_text(str(task)), "result": kind, "status": status}
    for key, value in fields.items():
        if value in (None, "", [], {}):
            continue
        if isinstance(value, str):
            out[key] = clip(redact_text(value))
        else:
            out[key] = redact(jsonable(value))
    return out
