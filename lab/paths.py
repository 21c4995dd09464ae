# SPDX-License-Identifier: Apache-2.0
"""Where the lab keeps its image cache, keys and per-scenario state."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "HVGUARD_LAB_CACHE"


def cache_dir(environ: dict[str, str] | None = None) -> Path:
    """The cache root: $HVGUARD_LAB_CACHE or `.cache/lab` in the repository."""
    env = os.environ if environ is None else environ
    override = env.get(CACHE_ENV, "").strip()
    return Path(override).resolve() if override else REPO_ROOT / ".cache" / "lab"


def images_dir(cache: Path) -> Path:
    return cache / "images"


def debs_dir(cache: Path) -> Path:
    return cache / "debs"


def run_dir(cache: Path) -> Path:
    return cache / "run"


def scenario_dir(cache: Path, name: str) -> Path:
    return run_dir(cache) / name


def ssh_key(cache: Path) -> Path:
    return cache / "ssh" / "id_ed25519"
