# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest

from filter_plugins.hvguard import FilterModule, hvguard_bad_regexes, hvguard_report_failures

REPORT = {
    "schema_version": "1.0",
    "hosts": {
        "hv2": {
            "controls": {"HVG-MEM-001": {"status": "drift"}, "HVG-MEM-002": {"status": "compliant"}}
        },
        "hv1": {
            "controls": {"HVG-MEM-003": {"status": "error"}, "HVG-MEM-004": {"status": "disabled"}}
        },
        "hv3": {"controls": {}},
    },
}


def test_failures_are_sorted_and_only_failing_statuses() -> None:
    assert hvguard_report_failures(REPORT) == ["hv1 HVG-MEM-003: error", "hv2 HVG-MEM-001: drift"]


def test_custom_statuses() -> None:
    assert hvguard_report_failures(REPORT, ["disabled"]) == ["hv1 HVG-MEM-004: disabled"]


def test_clean_report_passes() -> None:
    assert (
        hvguard_report_failures({"hosts": {"hv1": {"controls": {"X": {"status": "compliant"}}}}})
        == []
    )


def test_not_a_report_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="parsed hvguard report"):
        hvguard_report_failures({"foo": 1})


def test_registered() -> None:
    assert "hvguard_report_failures" in FilterModule().filters()


def test_bad_regexes_lists_only_the_invalid_ones() -> None:
    assert hvguard_bad_regexes(["^qemu-", "linux-image-(", "[a-z", r"^virt(network|storage)d"]) == [
        "linux-image-(",
        "[a-z",
    ]
    assert hvguard_bad_regexes([]) == []
    assert hvguard_bad_regexes("^qemu-") == ["^qemu-"]  # not a list: rejected as a whole
    assert "hvguard_bad_regexes" in FilterModule().filters()
