# SPDX-License-Identifier: Apache-2.0
"""hvguard_migration_tls converged on this machine against a sandbox of its files.

The role's OS paths (PKI dirs, libvirtd.conf, qemu.conf) are redirected into a temp dir
through its internal variables, so the real PKI, the generated controller CA, the config
edits and the handlers all run for real without touching /etc. The firewall (it would
load a table into this host's kernel) and the systemd units (no systemd here) are covered
by the molecule/migration scenario instead.

Sequence: audit (all drift, sandbox unchanged) -> converge -> effects -> second converge
(zero changed) -> audit (all compliant) -> expiry threshold above the lifetime (drift) ->
rotate_certs.yml (new certificates, same keys) -> converge (zero changed).
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "tls"))
import hvguard_tls  # noqa: E402
import tlslab  # noqa: E402

ANSIBLE = ROOT / ".venv" / "bin" / "ansible-playbook"
ROLE_PLAYBOOK = ROOT / "tests" / "fixtures" / "tls" / "role.yml"
ROTATE_PLAYBOOK = ROOT / "playbooks" / "rotate_certs.yml"
CONTROLS = [f"HVG-MIG-00{i}" for i in (1, 2, 3, 4, 6, 7, 8)]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or not ANSIBLE.exists()
    or not Path("/etc/libvirt/qemu.conf").exists()
    or not shutil.which("virsh"),
    reason="needs root, the venv and libvirt's configs (hvguard_facts probes the host)",
)


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if "reports" in path.parts:
            continue
        st = path.lstat()
        digest.update(f"{path.relative_to(root)} {st.st_mode} {st.st_uid} {st.st_gid}".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / "libvirt").mkdir()
    for name in ("libvirtd.conf", "qemu.conf"):
        shutil.copy2(f"/etc/libvirt/{name}", tmp_path / "libvirt" / name)
    return tmp_path


def extra_vars(sandbox: Path) -> dict[str, Any]:
    pki = sandbox / "pki"
    return {
        "hvguard_migration_tls_ca_dir": str(sandbox / "ca"),
        "hvguard_migration_tls_fqdn": "hv0.example.test",
        "hvguard_migration_tls_addresses": ["192.0.2.10", "127.0.0.1"],
        "hvguard_migration_tls_firewall_enabled": False,
        "__hvguard_migration_tls_dirs": {
            "ca": str(pki / "CA"),
            "libvirt": str(pki / "libvirt"),
            "libvirt_private": str(pki / "libvirt" / "private"),
            "qemu": str(pki / "qemu"),
        },
        "__hvguard_migration_tls_qemu_conf": str(sandbox / "libvirt" / "qemu.conf"),
        "__hvguard_migration_tls_layouts": {
            layout: {
                "conf": str(sandbox / "libvirt" / "libvirtd.conf"),
                "service": "libvirtd.service",
                "tls_socket": "libvirtd-tls.socket",
                "tcp_socket": "libvirtd-tcp.socket",
                "sockets": [],
            }
            for layout in ("monolithic", "modular")
        },
    }


def run(
    sandbox: Path, label: str, *, check: bool, playbook: Path = ROLE_PLAYBOOK, **more: Any
) -> tuple[str, dict[str, Any]]:
    # Harness files live under reports/ (not part of the fingerprint).
    (sandbox / "reports").mkdir(exist_ok=True)
    inv = sandbox / "reports" / "hosts.yml"
    inv.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        "hypervisors": {
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
    extra = sandbox / "reports" / "extra.json"
    extra.write_text(json.dumps({**extra_vars(sandbox), **more}))
    reports = sandbox / "reports" / label
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "HVGUARD_REPORT_DIR": str(reports),
        "ANSIBLE_NOCOLOR": "1",
    }
    argv = [str(ANSIBLE), "-i", str(inv), str(playbook), "-e", f"@{extra}"]
    if check:
        argv += ["--check", "--diff"]
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    report = json.loads((reports / "hvguard-report.json").read_text())
    return out, report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    controls = report["hosts"]["localhost"]["controls"]
    return {cid: controls[cid]["status"] for cid in CONTROLS if cid in controls}


def changed_count(out: str) -> int:
    match = re.search(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)", out)
    assert match, out
    return int(match.group(1))


def conf_value(path: Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if re.match(rf"^\s*{key}\s*=", line):
            return line.split("=", 1)[1].strip()
    return ""


@pytest.mark.control("HVG-MIG-001", "HVG-MIG-006", "HVG-MIG-007", "HVG-MIG-008", effect=True)
def test_audit_converge_idempotence_audit_rotate(sandbox: Path) -> None:
    pki = sandbox / "pki"
    before = tree_hash(sandbox)
    _, report = run(sandbox, "pristine", check=True)
    assert statuses(report) == dict.fromkeys(CONTROLS, "drift")
    assert tree_hash(sandbox) == before, "the check-mode audit changed the sandbox"
    assert not (sandbox / "ca").exists(), "the audit created the controller CA"

    run(sandbox, "converge", check=False)
    # The controller CAs: keys private to the controller user, never copied to the host dirs.
    assert (sandbox / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (sandbox / "ca" / "qemu-ca.key").stat().st_mode & 0o777 == 0o600
    ca_pem = (sandbox / "ca" / "ca.pem").read_text()
    qemu_ca_pem = (sandbox / "ca" / "qemu-ca.pem").read_text()
    assert (pki / "CA" / "cacert.pem").read_text() == ca_pem
    # HVG-MIG-001 (issue 8 finding 8): QEMU trusts its own CA, not the fleet CA.
    assert (pki / "qemu" / "ca-cert.pem").read_text() == qemu_ca_pem != ca_pem
    assert {"ca.key", "qemu-ca.key"}.isdisjoint(p.name for p in pki.rglob("*"))
    libvirt_keys = set()
    for kind in ("server", "client"):
        cert = (pki / "libvirt" / f"{kind}cert.pem").read_text()
        key = (pki / "libvirt" / "private" / f"{kind}key.pem").read_text()
        libvirt_keys.add(key)
        assert hvguard_tls.hvguard_tls_key_matches(cert, key)
        assert hvguard_tls.hvguard_tls_signed_by(cert, ca_pem)
        info = hvguard_tls.hvguard_tls_cert_info(cert)
        assert info["subject"] == "CN=hv0.example.test,O=hvguard"
        assert set(info["sans"]) >= {"DNS:hv0.example.test", "DNS:hv0", "IP:192.0.2.10"}
        assert (pki / "libvirt" / "private" / f"{kind}key.pem").stat().st_mode & 0o777 == 0o600
    for kind in ("server", "client"):
        qcert = (pki / "qemu" / f"{kind}-cert.pem").read_text()
        qkey_text = (pki / "qemu" / f"{kind}-key.pem").read_text()
        assert qkey_text not in libvirt_keys, "QEMU holds one of libvirt's keys"
        assert qcert != (pki / "libvirt" / f"{kind}cert.pem").read_text()
        assert hvguard_tls.hvguard_tls_key_matches(qcert, qkey_text)
        assert hvguard_tls.hvguard_tls_signed_by(qcert, qemu_ca_pem)
        assert not hvguard_tls.hvguard_tls_signed_by(qcert, ca_pem)
        info = hvguard_tls.hvguard_tls_cert_info(qcert)
        assert info["subject"] == "CN=hv0.example.test,OU=qemu-migration,O=hvguard"
        # QEMU's client checks the migration target's name against these.
        assert set(info["sans"]) >= {"DNS:hv0.example.test", "DNS:hv0", "IP:192.0.2.10"}
        qkey = (pki / "qemu" / f"{kind}-key.pem").stat()
        assert qkey.st_mode & 0o777 == 0o640
        assert qkey.st_uid == 0
        assert qkey.st_gid == grp.getgrnam("libvirt-qemu").gr_gid  # QEMU reads it, no one else
    libvirtd = sandbox / "libvirt" / "libvirtd.conf"
    assert conf_value(libvirtd, "listen_tls") == "1"
    assert conf_value(libvirtd, "listen_tcp") == "0"
    assert '"O=hvguard,CN=hv0.example.test"' in conf_value(libvirtd, "tls_allowed_dn_list")
    assert "-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2" in conf_value(libvirtd, "tls_priority")
    qemu = sandbox / "libvirt" / "qemu.conf"
    for key in ("migrate_tls_force", "migrate_tls_x509_verify", "default_tls_x509_verify"):
        assert conf_value(qemu, key) == "1", key
    assert conf_value(qemu, "nbd_tls") == "1"

    libvirt_accepts_the_role_certificates(pki)

    out, _ = run(sandbox, "idempotence", check=False)
    assert changed_count(out) == 0, out

    converged = tree_hash(sandbox)
    _, report = run(sandbox, "compliant", check=True)
    assert statuses(report) == dict.fromkeys(CONTROLS, "compliant")
    # Expiry: a warning period longer than the lifetime makes every certificate "expiring".
    _, report = run(sandbox, "expiry", check=True, hvguard_migration_tls_expiry_warn_days=400)
    assert statuses(report)["HVG-MIG-006"] == "drift"
    # ... QEMU's certificates included (issue 8 finding 8: expiry covers them too).
    expiry = json.dumps(report["hosts"]["localhost"]["controls"]["HVG-MIG-006"])
    for name in ("ca-cert.pem", "server-cert.pem", "client-cert.pem"):
        assert f"{pki / 'qemu' / name}" in expiry, expiry
    assert tree_hash(sandbox) == converged

    revocation(sandbox, ca_pem, qemu_ca_pem)

    # Rotation: new certificates from the same CAs for the same keys; nothing else moves.
    lv, qd = pki / "libvirt", pki / "qemu"
    paths = {
        "server": (lv / "servercert.pem", lv / "private" / "serverkey.pem", ca_pem),
        "client": (lv / "clientcert.pem", lv / "private" / "clientkey.pem", ca_pem),
        "qemu-server": (qd / "server-cert.pem", qd / "server-key.pem", qemu_ca_pem),
        "qemu-client": (qd / "client-cert.pem", qd / "client-key.pem", qemu_ca_pem),
    }
    old = {k: c.read_text() for k, (c, _, _) in paths.items()}
    keys = {k: key.read_text() for k, (_, key, _) in paths.items()}
    run(
        sandbox,
        "rotate",
        check=False,
        playbook=ROTATE_PLAYBOOK,
        hvguard_rotate_all=True,
        hvguard_apply_to_controller=True,
    )  # the sandbox is this machine
    for name, (cert, key, ca) in paths.items():
        new = cert.read_text()
        assert new != old[name], name
        assert key.read_text() == keys[name], name
        assert hvguard_tls.hvguard_tls_key_matches(new, keys[name])
        assert hvguard_tls.hvguard_tls_signed_by(new, ca)
    out, _ = run(sandbox, "after-rotate", check=False)
    assert changed_count(out) == 0, out

    # A host converged by an earlier version: QEMU's dir holds copies of libvirt's keys and
    # certificates. The audit reports drift; the converge gives QEMU keys of its own.
    for kind in ("server", "client"):
        shutil.copy2(
            pki / "libvirt" / "private" / f"{kind}key.pem", pki / "qemu" / f"{kind}-key.pem"
        )
        shutil.copy2(pki / "libvirt" / f"{kind}cert.pem", pki / "qemu" / f"{kind}-cert.pem")
    _, report = run(sandbox, "old-layout", check=True)
    assert statuses(report)["HVG-MIG-001"] == "drift"
    run(sandbox, "upgrade", check=False)
    for kind in ("server", "client"):
        qkey = (pki / "qemu" / f"{kind}-key.pem").read_text()
        assert qkey != (pki / "libvirt" / "private" / f"{kind}key.pem").read_text()
        qcert = (pki / "qemu" / f"{kind}-cert.pem").read_text()
        assert hvguard_tls.hvguard_tls_key_matches(qcert, qkey)
        assert hvguard_tls.hvguard_tls_signed_by(qcert, qemu_ca_pem)
    out, _ = run(sandbox, "after-upgrade", check=False)
    assert changed_count(out) == 0, out


def revocation(sandbox: Path, ca_pem: str, qemu_ca_pem: str) -> None:
    """HVG-MIG-007/008: the converged CRLs, their audit (stale, differing, missing) and a
    revocation of a host that stays (superseded: its certificate is reissued)."""
    pki, ca_dir = sandbox / "pki", sandbox / "ca"
    fleet_crl, qemu_crl = pki / "CA" / "cacrl.pem", pki / "qemu" / "ca-crl.pem"
    assert fleet_crl.read_text() == (ca_dir / "crl.pem").read_text()
    assert qemu_crl.read_text() == (ca_dir / "qemu-crl.pem").read_text()
    for crl, ca in ((fleet_crl, ca_pem), (qemu_crl, qemu_ca_pem)):
        info = hvguard_tls.hvguard_tls_crl_info(crl.read_text(), ca)
        assert info["signed_by_ca"] and info["revoked"] == [], info
        assert fleet_crl.stat().st_mode & 0o777 == 0o644  # QEMU (unprivileged) reads its CRL
    # The ledger: the four certificates the CAs issued to this host.
    ledger = hvguard_tls.hvguard_tls_ledger(str(ca_dir / "issued"))
    assert sorted(e["ca"] for e in ledger) == ["fleet", "fleet", "qemu", "qemu"], ledger
    assert {e["cn"] for e in ledger} == {"hv0.example.test"}

    # HVG-MIG-008: a warning period just under the CRL's lifetime makes it "stale".
    converged = tree_hash(sandbox)
    _, report = run(sandbox, "crl-stale", check=True, hvguard_migration_tls_crl_warn_days=29)
    assert statuses(report)["HVG-MIG-008"] == "drift"
    assert "Renew: ansible-playbook playbooks/site.yml" in json.dumps(report), report
    mig7 = report["hosts"]["localhost"]["controls"]["HVG-MIG-007"]
    assert mig7["status"] == "compliant", [
        e for e in mig7["evidence"] if e["status"] != "compliant"
    ]
    assert tree_hash(sandbox) == converged

    # HVG-MIG-007: a missing libvirt CRL and a QEMU CRL of another CA are drift, with evidence.
    fleet_crl.unlink()
    qemu_crl.write_bytes(tlslab.make_crl(tlslab.CA.create("someone else")))
    _, report = run(sandbox, "crl-tampered", check=True)
    assert statuses(report)["HVG-MIG-007"] == "drift"
    evidence = json.dumps(report["hosts"]["localhost"]["controls"]["HVG-MIG-007"])
    assert f"{fleet_crl}: missing" in evidence, evidence
    assert f"{qemu_crl}: differs" in evidence, evidence
    run(sandbox, "crl-restore", check=False)
    assert fleet_crl.read_text() == (ca_dir / "crl.pem").read_text()
    assert qemu_crl.read_text() == (ca_dir / "qemu-crl.pem").read_text()

    # A revoked certificate of a host that stays: on the CRL, and the host gets a new one.
    client = pki / "qemu" / "client-cert.pem"
    old = hvguard_tls.hvguard_tls_cert_info(client.read_text())["serial"]
    revoked = [{"ca": "qemu", "serial": old, "superseded": True, "reason": "superseded"}]
    _, report = run(sandbox, "crl-pending", check=True, hvguard_migration_tls_revoked=revoked)
    assert statuses(report)["HVG-MIG-007"] == "drift", "the audit missed a pending revocation"
    run(sandbox, "revoke", check=False, hvguard_migration_tls_revoked=revoked)
    info = hvguard_tls.hvguard_tls_crl_info(qemu_crl.read_text(), qemu_ca_pem)
    assert info["signed_by_ca"] and info["revoked"] == [old], info
    assert hvguard_tls.hvguard_tls_crl_info(fleet_crl.read_text())["revoked"] == []
    new = hvguard_tls.hvguard_tls_cert_info(client.read_text())["serial"]
    assert new != old, "the revoked certificate is still deployed"
    out, report = run(sandbox, "revoke-again", check=False, hvguard_migration_tls_revoked=revoked)
    assert changed_count(out) == 0, out
    assert statuses(report)["HVG-MIG-007"] == "compliant"


def libvirt_accepts_the_role_certificates(pki: Path) -> None:
    """A real libvirtd serves with the role's server certificate, admits its client one,
    and refuses QEMU's (HVG-MIG-001, issue 8 finding 8).

    libvirt has its own sanity rules (key usage, basic constraints, names): a certificate
    that only looks right would stop the daemon at start. The QEMU attacker's CA file
    vouches for both CAs, so its client sends QEMU's certificate if the server would take it.
    """
    root = Path(tempfile.mkdtemp(prefix="hvguard-tls-role-"))
    root.chmod(0o755)
    daemon_pki = root / "daemon" / "pki"
    daemon_pki.mkdir(parents=True)
    shutil.copy(pki / "CA" / "cacert.pem", daemon_pki / "ca-cert.pem")
    shutil.copy(pki / "libvirt" / "servercert.pem", daemon_pki / "server-cert.pem")
    shutil.copy(pki / "libvirt" / "private" / "serverkey.pem", daemon_pki / "server-key.pem")
    bundle = (pki / "CA" / "cacert.pem").read_text() + (pki / "qemu" / "ca-cert.pem").read_text()
    clients = {}
    for name, cert, key in (
        (
            "libvirt",
            pki / "libvirt" / "clientcert.pem",
            pki / "libvirt" / "private" / "clientkey.pem",
        ),
        ("qemu", pki / "qemu" / "client-cert.pem", pki / "qemu" / "client-key.pem"),
    ):
        client = root / f"client-{name}"
        client.mkdir()
        (client / "cacert.pem").write_text(bundle)
        shutil.copy(cert, client / "clientcert.pem")
        shutil.copy(key, client / "clientkey.pem")
        clients[name] = client
    daemon = tlslab.SessionDaemon(
        root=root / "daemon",
        libvirtd=tlslab.hardened_libvirtd(daemon_pki, ["O=hvguard,CN=hv0.example.test"]),
        qemu={"stdio_handler": "file"},
    )
    with open("/tmp/hvguard-libvirtd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            daemon.start()
            res = tlslab.run(
                ["virsh", "-c", daemon.tls_uri("127.0.0.1", clients["libvirt"]), "uri"]
            )
            assert res.rc == 0, res.text + daemon.log_tail()
            offset = daemon.log_size()
            res = tlslab.run(["virsh", "-c", daemon.tls_uri("127.0.0.1", clients["qemu"]), "uri"])
            assert res.rc != 0, "libvirtd admitted QEMU's certificate: " + res.text
            assert "Unable to read TLS confirmation" in res.text, res.text
            assert "Failed to verify peer's certificate" in daemon.log_since(offset)
        finally:
            daemon.stop()
            shutil.rmtree(root, ignore_errors=True)
