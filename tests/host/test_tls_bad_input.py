# SPDX-License-Identifier: Apache-2.0
"""Bad input to hvguard_migration_tls fails before the first change, naming the problem.

Each case runs the role (check mode, so even a wrong pass cannot touch this host) against
localhost and asserts: the run failed, the failure is the validation step with the
expected message, and not a single task after validation ran.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "tls"))
import tlslab  # noqa: E402

PLAYBOOK = ROOT / "tests" / "fixtures" / "tls" / "role.yml"
ANSIBLE = ROOT / ".venv" / "bin" / "ansible-playbook"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not ANSIBLE.exists() or not shutil.which("virsh"),
    reason="needs root, the venv and libvirt clients (hvguard_facts probes the host)",
)


def _inventory(tmp_path: Path, group: str = "hypervisors") -> Path:
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        group: {
                            "hosts": {
                                "localhost": {
                                    "ansible_connection": "local",
                                    "ansible_python_interpreter": sys.executable,
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    return inv


def _run(tmp_path: Path, extra: dict, group: str = "hypervisors") -> tuple[int, str]:
    extra = {
        "hvguard_migration_tls_ca_dir": str(tmp_path / "ca"),
        "hvguard_migration_tls_addresses": ["127.0.0.1"],
        **extra,
    }
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        HVGUARD_REPORT_DIR=str(tmp_path / "reports"),
        ANSIBLE_NOCOLOR="1",
    )
    proc = subprocess.run(
        [
            str(ANSIBLE),
            "-i",
            str(_inventory(tmp_path, group)),
            str(PLAYBOOK),
            "--check",
            "-e",
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _assert_stopped_before_changes(rc: int, out: str, message: str) -> None:
    assert rc != 0, out
    assert message in out, out
    # Nothing after validation ran: no control task at all.
    assert "TASK [hvguard_migration_tls : HVG-MIG" not in out, out


def test_missing_ca_material_when_generation_is_off(tmp_path):
    rc, out = _run(tmp_path, {"hvguard_migration_tls_ca_generate": False})
    _assert_stopped_before_changes(rc, out, "missing CA material")


def test_key_that_does_not_match_its_certificate(tmp_path):
    ca = tlslab.CA.create("byo CA")
    server = ca.issue("localhost", server=True)
    client = ca.issue("localhost", server=False)
    rc, out = _run(
        tmp_path,
        {
            "hvguard_migration_tls_ca_generate": False,
            "hvguard_migration_tls_ca_cert": ca.pem.decode(),
            "hvguard_migration_tls_server_cert": server.cert.decode(),
            "hvguard_migration_tls_server_key": client.key.decode(),  # the wrong key
            "hvguard_migration_tls_client_cert": client.cert.decode(),
            "hvguard_migration_tls_client_key": client.key.decode(),
        },
    )
    _assert_stopped_before_changes(
        rc, out, "hvguard_migration_tls_server_key does not match hvguard_migration_tls_server_cert"
    )
    assert "BEGIN PRIVATE KEY" not in out  # keys never reach the log


def test_certificate_from_another_ca(tmp_path):
    ca = tlslab.CA.create("byo CA")
    other = tlslab.CA.create("other CA")
    server = other.issue("localhost", server=True)
    client = ca.issue("localhost", server=False)
    rc, out = _run(
        tmp_path,
        {
            "hvguard_migration_tls_ca_generate": False,
            "hvguard_migration_tls_ca_cert": ca.pem.decode(),
            "hvguard_migration_tls_server_cert": server.cert.decode(),
            "hvguard_migration_tls_server_key": server.key.decode(),
            "hvguard_migration_tls_client_cert": client.cert.decode(),
            "hvguard_migration_tls_client_key": client.key.decode(),
        },
    )
    _assert_stopped_before_changes(rc, out, "was not issued by")


def test_empty_allow_list(tmp_path):
    rc, out = _run(
        tmp_path,
        {
            "hvguard_migration_tls_hypervisor_group": "no_such_group",
            "hvguard_migration_tls_firewall_enabled": False,
        },
    )
    _assert_stopped_before_changes(rc, out, "the TLS allow-list would be empty")


def test_unknown_daemon_layout(tmp_path):
    rc, out = _run(tmp_path, {"hvguard_migration_tls_daemon_mode": "split"})
    _assert_stopped_before_changes(rc, out, "hvguard_migration_tls_daemon_mode")
    assert "split" in out


def test_firewall_without_peer_addresses_is_drift_not_a_lockout(tmp_path):
    """No migration addresses: no firewall is built (it would shut peers out) and the
    report says why, naming the host; the rest of the role runs."""
    rc, out = _run(tmp_path, {"hvguard_migration_tls_addresses": []})
    assert rc == 0, out
    report = json.loads((tmp_path / "reports" / "hvguard-report.json").read_text())
    control = report["hosts"]["localhost"]["controls"]["HVG-MIG-005"]
    assert control["status"] == "drift", control
    assert "hvguard_migration_tls_addresses is empty for localhost" in json.dumps(control)
    assert "TASK [hvguard_migration_tls : HVG-MIG-005 | Firewall rules file" in out
    assert "hvguard-migration.nft" not in {p.name for p in tmp_path.rglob("*")}


def test_good_input_passes_validation(tmp_path):
    """Positive control: the same harness with valid input gets past validation."""
    _, out = _run(tmp_path, {})
    assert "TASK [hvguard_migration_tls : HVG-MIG-001" in out, out
    assert not (tmp_path / "ca").exists()  # check mode: the controller CA was not created


def _byo(ca: tlslab.CA, server: tlslab.Issued, client: tlslab.Issued) -> dict:
    return {
        "hvguard_migration_tls_ca_generate": False,
        "hvguard_migration_tls_ca_cert": ca.pem.decode(),
        "hvguard_migration_tls_server_cert": server.cert.decode(),
        "hvguard_migration_tls_server_key": server.key.decode(),
        "hvguard_migration_tls_client_cert": client.cert.decode(),
        "hvguard_migration_tls_client_key": client.key.decode(),
    }


def test_hvg_mig_001_byo_expired_certificate(tmp_path):
    """Issue 14: BYO certificates are checked for expiry (libvirtd would not start)."""
    ca = tlslab.CA.create("byo CA")
    now = dt.datetime.now(dt.UTC)
    server = ca.issue("localhost", server=True, not_before=now - dt.timedelta(days=40), days=-1)
    client = ca.issue("localhost", server=False)
    rc, out = _run(tmp_path, _byo(ca, server, client))
    _assert_stopped_before_changes(rc, out, "hvguard_migration_tls_server_cert expired on")
    assert "BEGIN PRIVATE KEY" not in out


def test_hvg_mig_001_byo_certificate_not_yet_valid(tmp_path):
    ca = tlslab.CA.create("byo CA")
    now = dt.datetime.now(dt.UTC)
    server = ca.issue("localhost", server=True)
    client = ca.issue("localhost", server=False, not_before=now + dt.timedelta(days=3))
    rc, out = _run(tmp_path, _byo(ca, server, client))
    _assert_stopped_before_changes(rc, out, "hvguard_migration_tls_client_cert is not valid before")


def test_hvg_mig_001_qemu_ca_must_not_be_the_fleet_ca(tmp_path):
    """Issue 8 finding 8: a QEMU CA that libvirtd trusts would let QEMU's keys drive it."""
    ca = tlslab.CA.create("byo CA")
    extra = _byo(ca, ca.issue("localhost", server=True), ca.issue("localhost", server=False))
    key = ca.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    extra.update(
        hvguard_migration_tls_qemu_ca_cert=ca.pem.decode(), hvguard_migration_tls_qemu_ca_key=key
    )
    rc, out = _run(tmp_path, extra)
    _assert_stopped_before_changes(
        rc, out, "is the fleet CA (hvguard_migration_tls_ca_cert) or was"
    )
    assert "BEGIN PRIVATE KEY" not in out


def test_hvg_mig_001_qemu_ca_must_not_be_issued_by_the_fleet_ca(tmp_path):
    """A QEMU CA signed by the fleet CA chains up to what libvirtd trusts."""
    ca = tlslab.CA.create("byo CA")
    sub_key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC)
    sub = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sub QEMU CA")]))
        .issuer_name(ca.cert.subject)
        .public_key(sub_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    extra = _byo(ca, ca.issue("localhost", server=True), ca.issue("localhost", server=False))
    extra.update(
        hvguard_migration_tls_qemu_ca_cert=sub.public_bytes(serialization.Encoding.PEM).decode(),
        hvguard_migration_tls_qemu_ca_key=sub_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
    rc, out = _run(tmp_path, extra)
    _assert_stopped_before_changes(rc, out, "or was issued by it")


# --- revocation (HVG-MIG-007, issue 13) ----------------------------------------------------
def _ledger(tmp_path: Path, ca: str, cert: bytes) -> str:
    """Record `cert` in the controller's ledger of issued certificates; its serial (hex)."""
    serial = f"{tlslab.serial_of(cert):x}"
    ledger = tmp_path / "ca" / "issued"
    ledger.mkdir(parents=True, exist_ok=True)
    (ledger / f"{ca}-{serial}.pem").write_bytes(cert)
    return serial


def test_hvg_mig_007_revoking_a_serial_the_ca_never_issued(tmp_path):
    fleet = tlslab.CA.create("hvguard migration CA")
    _ledger(tmp_path, "fleet", fleet.issue("retired.example.test", server=False).cert)
    rc, out = _run(
        tmp_path, {"hvguard_migration_tls_revoked": [{"ca": "fleet", "serial": "C0:FF:EE"}]}
    )
    _assert_stopped_before_changes(rc, out, "the fleet CA never issued serial c0ffee")


def test_hvg_mig_007_revoking_a_host_still_in_the_group(tmp_path):
    """localhost is in `hypervisors`: revoking its certificate would cut it off while the
    role still treats it as a peer."""
    fleet = tlslab.CA.create("hvguard migration CA")
    serial = _ledger(tmp_path, "fleet", fleet.issue("localhost", server=False).cert)
    rc, out = _run(tmp_path, {"hvguard_migration_tls_revoked": [{"ca": "fleet", "serial": serial}]})
    _assert_stopped_before_changes(
        rc,
        out,
        f"serial {serial} is localhost's certificate and localhost is still in the hypervisor",
    )


def test_hvg_mig_007_revocation_of_a_retired_host_passes_validation(tmp_path):
    """Positive control for the two above: a ledger serial of a host outside the group
    gets past validation (a control task runs)."""
    qemu = tlslab.CA.create("hvguard QEMU migration CA")
    serial = _ledger(tmp_path, "qemu", qemu.issue("retired.example.test", server=False).cert)
    _, out = _run(
        tmp_path,
        {
            "hvguard_migration_tls_revoked": [
                {"ca": "qemu", "serial": serial, "reason": "key_compromise"}
            ]
        },
    )
    assert "TASK [hvguard_migration_tls : HVG-MIG-001" in out, out


def test_hvg_mig_007_byo_crl_not_signed_by_the_byo_ca(tmp_path):
    ca = tlslab.CA.create("byo CA")
    other = tlslab.CA.create("other CA")
    extra = _byo(ca, ca.issue("localhost", server=True), ca.issue("localhost", server=False))
    extra["hvguard_migration_tls_ca_crl"] = tlslab.make_crl(other).decode()
    rc, out = _run(tmp_path, extra)
    _assert_stopped_before_changes(
        rc, out, "hvguard_migration_tls_ca_crl is not signed by hvguard_migration_tls_ca_cert"
    )
    assert "CN=other CA" in out, out  # names the issuer it found
    assert "BEGIN PRIVATE KEY" not in out


def test_hvg_mig_007_byo_crl_signed_by_the_byo_ca_passes_validation(tmp_path):
    ca = tlslab.CA.create("byo CA")
    extra = _byo(ca, ca.issue("localhost", server=True), ca.issue("localhost", server=False))
    extra["hvguard_migration_tls_ca_crl"] = tlslab.make_crl(ca).decode()
    _, out = _run(tmp_path, extra)
    assert "TASK [hvguard_migration_tls : HVG-MIG-001" in out, out
