# SPDX-License-Identifier: Apache-2.0
"""module_utils/hvguard_redact.py, the pack's one set of redaction rules (the modules use it
for their diffs). Loaded by path: controller code cannot import module_utils. A missing file
fails the import: no report rather than one that leaks secrets."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from .model import ROOT

_NAME = "_hvguard_reporting_redact"


def _load() -> Any:
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    # module_utils/ in this checkout, plugins/module_utils/ in the collection
    # (tools/build_collection.py); a missing file still fails the import.
    candidates = [ROOT / d / "hvguard_redact.py" for d in ("module_utils", "plugins/module_utils")]
    path = next((c for c in candidates if c.is_file()), candidates[0])
    spec = importlib.util.spec_from_file_location(_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"hvguard_report: cannot load the redaction rules from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[_NAME] = module
    return module


_redactor = _load()
redact = _redactor.redact
redact_text = _redactor.redact_text
REDACTED = _redactor.REDACTED
