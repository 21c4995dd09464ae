# SPDX-License-Identifier: Apache-2.0
"""playbooks/decommission.yml against the sandbox of test_tls_role_sandbox (issue 13).

A converged host (localhost, the only hypervisor) and a retired one whose certificates the
controller CAs issued earlier (in the ledger, no longer in the group). The playbook must
refuse a host still in the group and a name the CAs never issued to, then revoke every
certificate of the retired host in the versioned list next to the inventory and push the
CRLs; a second run changes nothing and the audit, which now reads the list from the
inventory, is compliant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "tls"))
sys.path.insert(0, str(ROOT / "tests" / "host"))
import hvguard_tls  # noqa: E402
import tlslab  # noqa: E402
from test_tls_role_sandbox import (  # noqa: E402
    ANSIBLE,
    ROLE_PLAYBOOK,
    changed_count,
    extra_vars,
    pytestmark,  # noqa: F401  (same requirements)
    run,
)

DECOMMISSION = ROOT / "playbooks" / "decommission.yml"
RETIRED = "hv-retired.example.test"


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / "libvirt").mkdir()
    for name in ("libvirtd.conf", "qemu.conf"):
        shutil.copy2(f"/etc/libvirt/{name}", tmp_path / "libvirt" / name)
    return tmp_path


def _try(sandbox: Path, playbook: Path, **more: Any) -> tuple[int, str]:
    """Like `run`, but returns the exit code instead of asserting success."""
    inv = sandbox / "reports" / "hosts.yml"
    extra = sandbox / "reports" / "extra-try.json"
    extra.write_text(json.dumps({**extra_vars(sandbox), **more}))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "HVGUARD_REPORT_DIR": str(sandbox / "reports" / "try"),
        "ANSIBLE_NOCOLOR": "1",
    }
    proc = subprocess.run(
        [str(ANSIBLE), "-i", str(inv), str(playbook), "-e", f"@{extra}"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def _ca(ca_dir: Path, name: str) -> tlslab.CA:
    """The controller's generated CA as a tlslab.CA (to issue the retired host's certs)."""
    from cryptography import x509

    key = serialization.load_pem_private_key((ca_dir / f"{name}.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((ca_dir / f"{name}.pem").read_bytes())
    return tlslab.CA(name, key, cert)  # type: ignore[arg-type]


@pytest.mark.control("HVG-MIG-007", effect=True)
def test_decommission_revokes_every_certificate_of_a_retired_host(sandbox: Path) -> None:
    pki, ca_dir = sandbox / "pki", sandbox / "ca"
    run(sandbox, "converge", check=False)
    # The retired host's four certificates, as the role would have recorded them.
    retired = {}
    for ca_name, ledger_ca in (("ca", "fleet"), ("qemu-ca", "qemu")):
        ca = _ca(ca_dir, ca_name)
        for server in (True, False):
            cert = ca.issue(RETIRED, server=server).cert
            serial = f"{tlslab.serial_of(cert):x}"
            (ca_dir / "issued" / f"{ledger_ca}-{serial}.pem").write_bytes(cert)
            retired[(ledger_ca, serial)] = cert
    ours = {(e["ca"], e["serial"]) for e in hvguard_tls.hvguard_tls_ledger(str(ca_dir / "issued"))}
    ours -= set(retired)
    listed = sandbox / "reports" / "group_vars" / "all" / "hvguard_revoked.yml"

    # Bad input, before any change: a host still in the group, a name never issued to.
    rc, out = _try(sandbox, DECOMMISSION, hvguard_decommission="localhost")
    assert rc != 0 and "localhost still in group 'hypervisors'" in out, out
    rc, out = _try(sandbox, DECOMMISSION, hvguard_decommission="nobody.example.test")
    assert rc != 0 and "no certificate of nobody.example.test" in out, out
    assert not listed.exists()

    out, report = run(sandbox, "decommission", check=False, playbook=DECOMMISSION,
                      hvguard_decommission=RETIRED)  # fmt: skip
    # The versioned list next to the inventory: exactly the retired host's four serials.
    entries = yaml.safe_load(listed.read_text())["hvguard_migration_tls_revoked"]
    assert {(e["ca"], e["serial"]) for e in entries} == set(retired), entries
    assert {e["name"] for e in entries} == {RETIRED}
    # ... in the CRLs each consumer reads, and none of the remaining host's certificates.
    fleet = hvguard_tls.hvguard_tls_crl_info((pki / "CA" / "cacrl.pem").read_text())
    qemu = hvguard_tls.hvguard_tls_crl_info((pki / "qemu" / "ca-crl.pem").read_text())
    assert set(fleet["revoked"]) == {s for c, s in retired if c == "fleet"}, fleet
    assert set(qemu["revoked"]) == {s for c, s in retired if c == "qemu"}, qemu
    assert not {("fleet", s) for s in fleet["revoked"]} & ours
    assert report["hosts"]["localhost"]["controls"]["HVG-MIG-007"]["status"] == "remediated"

    # Idempotent, and later runs read the list from the inventory.
    out, _ = run(sandbox, "decommission-again", check=False, playbook=DECOMMISSION,
                 hvguard_decommission=RETIRED)  # fmt: skip
    assert changed_count(out) == 0, out
    _, report = run(sandbox, "audit", check=True, playbook=ROLE_PLAYBOOK)
    assert report["hosts"]["localhost"]["controls"]["HVG-MIG-007"]["status"] == "compliant"
