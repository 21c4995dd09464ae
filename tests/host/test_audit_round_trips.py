# SPDX-License-Identifier: Apache-2.0
"""Issue 15: the whole baseline audit of a host costs at most ROUND_TRIP_LIMIT round trips.

Counted by callback_plugins/hvguard_rtt.py (a round trip = one module execution on the host,
not delegated to the controller) while playbooks/audit.yml audits this machine as
``localhost`` over a local connection, twice. The count must be the same both times (it is a
property of the pack and the host's state, not of timing), and at most the limit: above it,
every nightly fleet audit pays the difference times the connection latency per host.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import counted_localhost_audit

ROUND_TRIP_LIMIT = 20


def counted_audit(work: Path) -> dict[str, Any]:
    """Audit this machine with the counter on; return the counter's summary for localhost."""
    return counted_localhost_audit(work)[1]


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    base = tmp_path_factory.mktemp("rtt")
    return [counted_audit(base / "first"), counted_audit(base / "second")]


def test_round_trip_count_is_stable(audits: list[dict[str, Any]]) -> None:
    first, second = audits
    assert first["round_trips"] > 0, "nothing counted: the counter is not wired in"
    assert first["by_task"]["hvguard_common : Gather hvguard facts (libvirt, QEMU, kernel, "
                            "memory, storage, network) in one call"] == 1  # fmt: skip
    assert first["delegated"] >= 1, "the controller-side check-mode probe was not kept apart"
    assert (first["round_trips"], first["by_task"]) == (second["round_trips"], second["by_task"])


def test_audit_costs_at_most_the_round_trip_limit(audits: list[dict[str, Any]]) -> None:
    counted = audits[0]
    top = sorted(counted["by_task"].items(), key=lambda kv: -kv[1])
    assert counted["round_trips"] <= ROUND_TRIP_LIMIT, (
        f"the baseline audit costs {counted['round_trips']} round trips per host "
        f"(limit {ROUND_TRIP_LIMIT}, issue 15); by task: "
        + "; ".join(f"{name}: {n}" for name, n in top)
    )
