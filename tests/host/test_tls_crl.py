# SPDX-License-Identifier: Apache-2.0
"""Host tests: revocation (HVG-MIG-007, issue 13) against two hand-started libvirtd.

Each daemon reads its TLS files from libvirt's default per-user location
($HOME/.pki/libvirt: cacert, servercert, serverkey, cacrl), the session twin of the
/etc/pki paths the role deploys, so ``virt-admin server-update-tls`` - the role's reload
handler - re-reads them exactly as on a hypervisor. QEMU reads its own directory (the
role's /etc/pki/qemu: ca-cert, server/client cert and key, ca-crl). virsh's pkipath holds
what a host's client side has (cacert, clientcert, clientkey, cacrl).

Every refusal has a positive control with the same setup, and the revoked DN stays on the
allow-list, so the CRL is the only reason for the refusal.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "tls"))
import tlslab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or not all(shutil.which(b) for b in ("libvirtd", "virsh", "virt-admin", "setpriv")),
    reason="needs root, libvirtd, virsh, virt-admin",
)

CN = {"a": "hv-a.example.test", "b": "hv-b.example.test"}
QEMU_UNIT = tlslab.role_vars()["__hvguard_migration_tls_qemu_unit"]
SANS = ["localhost", "127.0.0.1"]
REVOKED = "The certificate has been revoked"


class Host:
    """One hypervisor: libvirt's and QEMU's certificates, its daemon, its client dir."""

    def __init__(self, root: Path, name: str, ca: tlslab.CA, qemu_ca: tlslab.CA) -> None:
        cn = CN[name]
        self.name = name
        self.root = root / name
        self.server = ca.issue(cn, server=True, sans=[cn, *SANS])
        self.client = ca.issue(cn, server=False, sans=[cn])
        self.qemu_server = qemu_ca.issue(cn, server=True, sans=[cn, *SANS], unit=QEMU_UNIT)
        self.qemu_client = qemu_ca.issue(cn, server=False, sans=[cn], unit=QEMU_UNIT)
        self.upki = self.root / "daemon" / "home" / ".pki" / "libvirt"
        tlslab._write(self.upki / "cacert.pem", ca.pem)
        tlslab._write(self.upki / "servercert.pem", self.server.cert)
        tlslab._write(self.upki / "serverkey.pem", self.server.key, 0o600)
        self.qemu_dir = tlslab.write_qemu_dir(
            self.root / "qemu", qemu_ca, self.qemu_server, self.qemu_client
        )
        # virsh on this host: its libvirt client certificate and the fleet CRL.
        self.pkipath = tlslab.write_client_dir(self.root / "client", ca, self.client)
        # The role's state with an empty revocation list: empty CRLs everywhere.
        self.set_crls(tlslab.make_crl(ca), tlslab.make_crl(qemu_ca))
        self.daemon: tlslab.SessionDaemon | None = None

    def set_crls(self, fleet: bytes | None = None, qemu: bytes | None = None) -> None:
        """Deploy CRLs where the role puts them (libvirt: server and client side)."""
        if fleet is not None:
            tlslab._write(self.upki / "cacrl.pem", fleet)
            tlslab._write(self.pkipath / "cacrl.pem", fleet)
        if qemu is not None:
            tlslab._write(self.qemu_dir / "ca-crl.pem", qemu)

    def start(self, dn_list: list[str]) -> tlslab.SessionDaemon:
        conf = tlslab.hardened_libvirtd(self.upki, dn_list)
        for key in ("key_file", "cert_file", "ca_file"):  # libvirt's default (per-user) paths
            del conf[key]
        qemu = tlslab.hardened_qemu_settings()
        qemu.update(default_tls_x509_cert_dir=str(self.qemu_dir), stdio_handler="file")
        self.daemon = tlslab.SessionDaemon(root=self.root / "daemon", libvirtd=conf, qemu=qemu)
        self.daemon.start()
        return self.daemon

    def reload_tls(self) -> tlslab.Run:
        """The role's handler: re-read CA, certificates and CRL without a restart."""
        assert self.daemon is not None
        res = tlslab.run(
            ["virt-admin", "-c", "libvirtd:///session", "server-update-tls", "libvirtd"],
            as_nobody=True,
            env=self.daemon.env,
        )
        return res


class Fleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = tlslab.CA.create("hvguard test CA")
        self.qemu_ca = tlslab.CA.create("hvguard test QEMU CA")
        self.hosts = {n: Host(root, n, self.ca, self.qemu_ca) for n in ("a", "b")}
        self.dn_list = [f"O={tlslab.ORG},CN={cn}" for cn in CN.values()]


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with open("/tmp/hvguard-libvirtd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        root = Path(tempfile.mkdtemp(prefix="hvguard-crl-"))
        root.chmod(0o755)
        fleet = Fleet(root)
        try:
            for host in fleet.hosts.values():
                host.start(fleet.dn_list)
            yield fleet
        finally:
            for host in fleet.hosts.values():
                if host.daemon is not None:
                    host.daemon.stop()
            shutil.rmtree(root, ignore_errors=True)


def _connect(src: Host, dst: Host) -> tuple[tlslab.Run, str]:
    """virsh on `src` (its client certificate and CRL) to `dst`'s libvirtd."""
    assert dst.daemon is not None
    offset = dst.daemon.log_size()
    res = tlslab.run(["virsh", "-c", dst.daemon.tls_uri("localhost", src.pkipath), "uri"])
    return res, dst.daemon.log_since(offset)


def _start_domain(fleet: Fleet, host: Host, name: str) -> None:
    assert host.daemon is not None
    xml = fleet.root / f"{name}.xml"
    xml.write_text(tlslab.domain_xml(name))
    xml.chmod(0o644)
    res = host.daemon.virsh("create", str(xml))
    assert res.rc == 0, res.text


def _running(host: Host) -> list[str]:
    assert host.daemon is not None
    return host.daemon.virsh("list", "--name").out.split()


@pytest.mark.control("HVG-MIG-007", effect=True)
def test_hvg_mig_007_revoked_host_is_refused_by_libvirtd_without_a_restart(fleet):
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    assert a.daemon is not None
    # Positive control: with the empty CRLs both directions work.
    for src, dst in ((b, a), (a, b)):
        res, _ = _connect(src, dst)
        assert res.rc == 0, res.text + (dst.daemon.log_tail() if dst.daemon else "")
    _start_domain(fleet, a, "keeps-running")
    pid = a.daemon.pid
    # Decommission b: a's CRL revokes both of b's libvirt certificates; a reloads.
    crl = tlslab.make_crl(
        fleet.ca, [tlslab.serial_of(b.server.cert), tlslab.serial_of(b.client.cert)]
    )
    a.set_crls(fleet=crl)
    res, log = _connect(b, a)
    assert res.rc == 0, "a libvirtd must not see the new CRL before the reload: test is void"
    res = a.reload_tls()
    assert res.rc == 0, res.text
    # b's client certificate (its DN is still on a's allow-list) is refused for the CRL.
    res, log = _connect(b, a)
    assert res.rc != 0, res.text
    assert "Unable to read TLS confirmation" in res.text, res.text
    assert REVOKED in log, log
    assert "not on the list of allowed clients" not in log, log
    # a's own, unrevoked client certificate is still admitted by a ...
    res, _ = _connect(a, a)
    assert res.rc == 0, res.text + a.daemon.log_tail()
    # ... and a's virsh refuses b's revoked server certificate (the hv1 -> hv2 direction).
    res, _ = _connect(a, b)
    assert res.rc != 0, res.text
    assert REVOKED in res.text, res.text
    # No restart: same daemon, the domain kept running.
    assert a.daemon.pid == pid and os.path.exists(f"/proc/{pid}")
    assert "keeps-running" in _running(a)


@pytest.mark.control("HVG-MIG-008")
def test_hvg_mig_008_expired_crl_still_revokes_and_locks_no_one_out(fleet):
    """Measured basis of HVG-MIG-008's message: a CRL past its nextUpdate keeps revoking
    and refuses no one else (GnuTLS reports no error for a stale CRL)."""
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    crl = tlslab.make_crl(fleet.ca, [tlslab.serial_of(b.client.cert)], next_days=-1, last_days=-10)
    a.set_crls(fleet=crl)
    res = a.reload_tls()
    assert res.rc == 0, res.text
    res, log = _connect(b, a)
    assert res.rc != 0 and REVOKED in log, res.text + log
    res, _ = _connect(a, a)
    assert res.rc == 0, res.text


@pytest.mark.control("HVG-MIG-007", effect=True)
def test_hvg_mig_007_qemu_refuses_migration_with_a_revoked_qemu_certificate(fleet):
    """QEMU's migration TLS checks only the chain and the CRL (no authz from libvirt 9):
    the QEMU CRL is what stops a revoked host's QEMU. libvirt's connections use an
    unrevoked client here, so QEMU's CRL is the only thing that can refuse."""
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    assert a.daemon is not None and b.daemon is not None

    def migrate(src: Host, dst: Host, name: str) -> tlslab.Run:
        assert src.daemon is not None and dst.daemon is not None
        port = tlslab.free_port()
        return src.daemon.virsh(
            "migrate", "--live", "--tls", name,
            dst.daemon.tls_uri("localhost", a.pkipath), f"tcp://127.0.0.1:{port}",
        )  # fmt: skip

    _start_domain(fleet, a, "m1")
    _start_domain(fleet, a, "m2")
    # Positive control: a -> b works with the (empty) CRLs in QEMU's directories.
    res = migrate(a, b, "m1")
    assert res.rc == 0, res.text + b.daemon.log_tail()
    assert "m1" in _running(b)
    # Revoke b's QEMU certificates in a's QEMU CRL (QEMU reads it per migration).
    a.set_crls(
        qemu=tlslab.make_crl(
            fleet.qemu_ca,
            [tlslab.serial_of(b.qemu_client.cert), tlslab.serial_of(b.qemu_server.cert)],
        )
    )
    # hv2 -> hv1: a's QEMU (TLS server) refuses b's revoked client certificate.
    res = migrate(b, a, "m1")
    assert res.rc != 0, res.text
    # The operator's error is generic; the target QEMU's log says why.
    assert "Cannot write to TLS channel" in res.text, res.text
    logs = " ".join(p.read_text(errors="replace") for p in a.daemon.root.rglob("m1.log"))
    assert f"qemu-system-x86_64: {REVOKED}" in logs, logs[-2000:]
    assert "m1" in _running(b), "the refused migration lost the domain"
    assert "m1" not in _running(a)
    # hv1 -> hv2: QEMU reads ca-crl.pem only as a TLS *server* (crypto/tlscredsx509.c), so
    # a's QEMU, the client here, accepts b's revoked server certificate. Measured, and a
    # canary: should QEMU start checking, this fails and docs/migration-tls.md must change.
    res = migrate(a, b, "m2")
    assert res.rc == 0, res.text
    assert "m2" in _running(b)
    # What stops hv1 -> hv2 is libvirt: with the fleet CRL (decommission revokes both CAs'
    # certificates) a's side refuses b's revoked libvirt server certificate first.
    a.set_crls(fleet=tlslab.make_crl(fleet.ca, [tlslab.serial_of(b.server.cert)]))
    _start_domain(fleet, a, "m3")
    res = migrate(a, b, "m3")
    assert res.rc != 0, res.text
    assert REVOKED in res.text, res.text
    assert "m3" in _running(a)
