#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Compare two hvguard audit runs for a merge request: new drift, fixed, still failing.

    tools/hvguard_compare.py OLD NEW

OLD and NEW are JSON reports or run directories (reports/runs/<id>, reports/latest).
Prints Markdown; exits 1 when the new run has new drift or error, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from hvguard_reporting import FORMAT_FILES, compare, render_compare  # noqa: E402


def load(path: Path) -> dict:
    if path.is_dir():
        path = path / FORMAT_FILES["json"]
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    old, new = load(args.old), load(args.new)
    sys.stdout.write(render_compare(old, new))
    return 1 if compare(old, new)["new"] else 0


if __name__ == "__main__":
    sys.exit(main())
