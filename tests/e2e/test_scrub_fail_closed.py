# SPDX-License-Identifier: Apache-2.0
"""HVG-STO-001 fails closed when libvirt cannot be asked.

The engine's pool list comes from libvirt's facts. A socket-activated libvirtd that exited
idle once answered the facts' probe too late; the role then rendered ``"pools": []`` and
would have stopped scrubbing every pool (found by the scrub scenario's idempotence step).
Now the configuration is left as it is and the control reports why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sandbox

CONFIG = {"pools": [{"name": "vmvg", "type": "logical", "vg": "vmvg"}], "state_dir": "/x"}


@pytest.mark.control("HVG-STO-001")
def test_unreachable_libvirt_never_empties_the_engine_pool_list(tmp_path: Path) -> None:
    root = sandbox.make(tmp_path / "sandbox")
    config = root / "etc" / "hvguard-scrub.json"
    config.write_text(json.dumps(CONFIG, indent=2) + "\n")
    extra = json.loads((root / "extra.json").read_text())
    extra["hvguard"]["libvirt"]["error"] = "failed to connect to the hypervisor"
    extra.update(
        hvguard_scrub_engine_enabled=True,
        __hvguard_scrub_config=str(config),
        **{c["variable"]: False for c in sandbox.CATALOGUE["controls"]
           if c["role"] == "hvguard_memory"},
    )  # fmt: skip
    (root / "extra.json").write_text(json.dumps(extra))
    before = config.read_bytes()
    proc = sandbox.run(root, wrapper=False)
    report = json.loads((root / "reports" / "hvguard-report.json").read_text())
    cell = report["hosts"]["localhost"]["controls"]["HVG-STO-001"]
    text = json.dumps(cell)
    assert config.read_bytes() == before
    assert cell["status"] == "drift", (proc.stdout + proc.stderr)[-3000:]
    assert "libvirt could not be asked" in text
    assert '\\"pools\\": []' not in text and '"pools": []' not in text, text[:2000]
