# SPDX-License-Identifier: Apache-2.0
"""Host tests: the role's TLS settings against real, hand-started libvirtd daemons.

Two session daemons (run as `nobody`, own dirs/ports/host UUID, see tests/fixtures/tls)
get the libvirtd.conf/qemu.conf values of hvguard_migration_tls. Each attack must fail
with the error an operator would see, and a positive control next to it must succeed so
that a broken setup cannot pass as "refused".
"""

from __future__ import annotations

import fcntl
import os
import secrets
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
    or not all(shutil.which(b) for b in ("libvirtd", "virsh", "gnutls-cli", "tcpdump", "setpriv")),
    reason="needs root, libvirtd, virsh, gnutls-cli, tcpdump",
)

ALLOWED_CN = "hv-a.example.test"
PEER_CN = "hv-b.example.test"


QEMU_UNIT = tlslab.role_vars()["__hvguard_migration_tls_qemu_unit"]


def _bundle_dir(path: Path, cas: list[tlslab.CA], client: tlslab.Issued) -> Path:
    """An attacker's pkipath: its cacert.pem vouches for every CA involved, so virsh sends
    the certificate and the *server* has to refuse it (virsh will not send a certificate
    its own CA file does not vouch for)."""
    tlslab.write_client_dir(path, cas[0], client)
    (path / "cacert.pem").write_bytes(b"".join(ca.pem for ca in cas))
    return path


class Fleet:
    """The role's two trust domains for two hypervisors, plus attackers.

    Each hypervisor has libvirt's certificates from the fleet CA (the only CA libvirtd
    trusts) and QEMU's own certificates (OU=<unit>) from the QEMU CA, in QEMU's dir.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        ca = tlslab.CA.create("hvguard test CA")
        qemu_ca = tlslab.CA.create("hvguard test QEMU CA")
        rogue = tlslab.CA.create("rogue CA")
        sans = ["localhost", "127.0.0.1"]
        self.ca = ca
        # Built from libvirt's client DNs only, as the role does.
        self.dn_list = [
            f"O={tlslab.ORG},CN={ALLOWED_CN}",
            f"O={tlslab.ORG},CN={PEER_CN}",
        ]
        self.hosts: dict[str, Path] = {}
        self.qemu: dict[str, Path] = {}
        self.qemu_client: dict[str, tlslab.Issued] = {}
        for name, cn in (("a", ALLOWED_CN), ("b", PEER_CN)):
            server = ca.issue(cn, server=True, sans=[cn, *sans])
            client = ca.issue(cn, server=False, sans=[cn])
            self.hosts[name] = tlslab.write_qemu_dir(root / name / "pki", ca, server, client)
            q_server = qemu_ca.issue(cn, server=True, sans=[cn, *sans], unit=QEMU_UNIT)
            q_client = qemu_ca.issue(cn, server=False, sans=[cn], unit=QEMU_UNIT)
            self.qemu[name] = tlslab.write_qemu_dir(
                root / name / "qemu", qemu_ca, q_server, q_client
            )
            self.qemu_client[name] = q_client
        self.good = tlslab.write_client_dir(
            root / "client-good", ca, ca.issue(ALLOWED_CN, server=False)
        )
        self.not_listed = tlslab.write_client_dir(
            root / "client-not-listed", ca, ca.issue("intruder.example.test", server=False)
        )
        # Right DN, wrong CA: the rogue client trusts our CA so it can reach the server.
        self.rogue = tlslab.write_client_dir(
            root / "client-rogue", ca, rogue.issue(ALLOWED_CN, server=False)
        )
        self.rogue_bundle = _bundle_dir(
            root / "client-rogue-bundle", [ca, rogue], rogue.issue(ALLOWED_CN, server=False)
        )
        # What a compromised QEMU on hypervisor a holds: its own client certificate and
        # key, the QEMU CA, and the world-readable fleet CA.
        self.qemu_attacker = _bundle_dir(root / "client-qemu", [ca, qemu_ca], self.qemu_client["a"])
        # Positive control for the bundle: libvirt's own client certificate, same CA file.
        self.good_bundle = _bundle_dir(
            root / "client-good-bundle", [ca, qemu_ca], ca.issue(ALLOWED_CN, server=False)
        )


def _daemon(fleet: Fleet, name: str, qemu: dict[str, object]) -> tlslab.SessionDaemon:
    pki = fleet.hosts[name]
    qemu = dict(qemu)
    # QEMU migrates with its own certificates, never libvirt's.
    qemu.update(default_tls_x509_cert_dir=str(fleet.qemu[name]), stdio_handler="file")
    daemon = tlslab.SessionDaemon(
        root=fleet.root / name, libvirtd=tlslab.hardened_libvirtd(pki, fleet.dn_list), qemu=qemu
    )
    daemon.start()
    return daemon


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    # Serialize with other hand-started libvirtd tests on this shared host.
    with open("/tmp/hvguard-libvirtd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # pytest's tmp dirs are root-only; the daemons run as nobody and must read theirs.
        root = Path(tempfile.mkdtemp(prefix="hvguard-tls-"))
        root.chmod(0o755)
        yield Fleet(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def hardened(fleet: Fleet) -> Iterator[tuple[tlslab.SessionDaemon, tlslab.SessionDaemon]]:
    qemu = tlslab.hardened_qemu_settings()
    a = _daemon(fleet, "a", qemu)
    try:
        b = _daemon(fleet, "b", qemu)
    except Exception:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def _marker_domain(fleet: Fleet, daemon: tlslab.SessionDaemon, name: str) -> bytes:
    """Start a domain whose RAM holds a fresh random marker; prove it is in guest RAM."""
    marker = f"HVGUARD-MARKER-{secrets.token_hex(12)}".encode()
    blob = fleet.root / f"{name}.bin"
    blob.write_bytes((marker + b"\n") * (65536 // (len(marker) + 1)))
    blob.chmod(0o644)
    xml = fleet.root / f"{name}.xml"
    xml.write_text(tlslab.domain_xml(name, blob))
    xml.chmod(0o644)
    res = daemon.virsh("create", str(xml))
    assert res.rc == 0, res.text
    dump = daemon.root / f"{name}.ram"  # QEMU (nobody) writes it
    # Quoted: HMP would parse "65536 /tmp/..." as a division.
    res = daemon.virsh("qemu-monitor-command", name, "--hmp", f'pmemsave 0x1000000 65536 "{dump}"')
    assert res.rc == 0 and not res.out.strip(), res.text
    assert marker in dump.read_bytes(), "the marker is not in guest RAM: the test is void"
    return marker


def _migrate(
    src: tlslab.SessionDaemon, dst: tlslab.SessionDaemon, fleet: Fleet, name: str, *extra: str
) -> tuple[tlslab.Run, bytes]:
    port = tlslab.free_port()
    cap = tlslab.Capture(fleet.root / f"{name}-{port}.pcap", f"tcp port {port}")
    res = src.virsh(
        "migrate",
        "--live",
        *extra,
        name,
        dst.tls_uri("localhost", fleet.good),
        f"tcp://127.0.0.1:{port}",
    )
    return res, cap.stop()


# --- the listener --------------------------------------------------------------------------
@pytest.mark.control("HVG-MIG-002")
def test_tls_client_with_allowed_dn_is_admitted(hardened, fleet):
    a, _ = hardened
    res = tlslab.run(["virsh", "-c", a.tls_uri("localhost", fleet.good), "uri"])
    assert res.rc == 0, res.text + a.log_tail()


def _refused(daemon: tlslab.SessionDaemon, pkipath: Path) -> tuple[tlslab.Run, str]:
    offset = daemon.log_size()
    res = tlslab.run(["virsh", "-c", daemon.tls_uri("localhost", pkipath), "uri"])
    return res, daemon.log_since(offset)


@pytest.mark.control("HVG-MIG-002", effect=True)
def test_client_dn_not_on_allow_list_is_refused(hardened, fleet):
    a, _ = hardened
    res, log = _refused(a, fleet.not_listed)
    assert res.rc != 0
    # The client only sees the server hang up after the handshake ...
    assert "Unable to read TLS confirmation" in res.text, res.text
    # ... the daemon says why.
    assert "not on the list of allowed clients" in log, log
    assert "CN=intruder.example.test" in log, log


@pytest.mark.control("HVG-MIG-002", effect=True)
def test_client_certificate_from_another_ca_is_refused(hardened, fleet):
    """virsh refuses to even send a certificate its own CA file does not vouch for, so
    the attacker is gnutls-cli presenting the rogue certificate (with an allowed DN)."""
    a, _ = hardened
    offset = a.log_size()
    res = tlslab.run(
        [
            "gnutls-cli",
            "-p",
            str(a.tls_port),
            "--x509cafile",
            str(fleet.rogue / "cacert.pem"),
            "--x509certfile",
            str(fleet.rogue / "clientcert.pem"),
            "--x509keyfile",
            str(fleet.rogue / "clientkey.pem"),
            "localhost",
        ],
        stdin="",
        timeout=30,
    )
    log = a.log_since(offset)
    assert "Certificate check failed" in log or "authentication failed" in log, log
    assert "hasn't got a known issuer" in log, log
    assert "not on the list of allowed clients" not in log, log
    assert "Peer has closed" in res.text or res.rc != 0, res.text


def _gnutls_client(daemon: tlslab.SessionDaemon, pki: Path) -> tuple[tlslab.Run, str]:
    """gnutls-cli presents the certificate even when the server's CertificateRequest does
    not name its issuer (virsh's GnuTLS then sends none at all)."""
    offset = daemon.log_size()
    res = tlslab.run(
        ["gnutls-cli", "-p", str(daemon.tls_port), "--x509cafile", str(pki / "cacert.pem"),
         "--x509certfile", str(pki / "clientcert.pem"), "--x509keyfile", str(pki / "clientkey.pem"),
         "localhost"],
        stdin="", timeout=30,
    )  # fmt: skip
    return res, daemon.log_since(offset)


@pytest.mark.control("HVG-MIG-001", effect=True)
def test_hvg_mig_001_qemu_certificate_cannot_drive_a_libvirtd(hardened, fleet):
    """HVG-MIG-001 (issue 8 finding 8): QEMU's client certificate and key, which the QEMU
    user can read, open no libvirtd, even when the attacker's CA file vouches for both
    CAs: libvirtd trusts the fleet CA only (and QEMU's DN is not on the list)."""
    a, b = hardened
    for daemon in (a, b):
        res, log = _refused(daemon, fleet.qemu_attacker)
        assert res.rc != 0, res.text
        assert "Unable to read TLS confirmation" in res.text, res.text
        assert "Failed to verify peer's certificate" in log, log
        # Forced onto the wire, the certificate fails the chain check.
        res, log = _gnutls_client(daemon, fleet.qemu_attacker)
        assert "hasn't got a known issuer" in log, log
        assert "Failed to verify peer's certificate" in log, log
    # Positive control: the same CA bundle with libvirt's client certificate is admitted.
    res = tlslab.run(["virsh", "-c", a.tls_uri("localhost", fleet.good_bundle), "uri"])
    assert res.rc == 0, res.text + a.log_tail()


@pytest.mark.control("HVG-MIG-002", effect=True)
def test_client_certificate_from_another_ca_is_refused_by_the_server(hardened, fleet):
    """The rogue certificate (allowed DN, rogue CA) through virsh itself: rc != 0 and the
    daemon's reason, scoped to this attempt."""
    a, _ = hardened
    res, log = _refused(a, fleet.rogue_bundle)
    assert res.rc != 0, res.text
    assert "Unable to read TLS confirmation" in res.text, res.text
    assert "Failed to verify peer's certificate" in log, log


@pytest.mark.control("HVG-MIG-002", effect=True)
def test_plain_tcp_connection_is_refused(hardened):
    a, _ = hardened
    res = tlslab.run(
        ["virsh", "-c", f"qemu+tcp://127.0.0.1:{a.tcp_port}/session", "uri"], timeout=30
    )
    assert res.rc != 0
    assert "Connection refused" in res.text, res.text


@pytest.mark.control("HVG-MIG-003", effect=True)
@pytest.mark.parametrize("version", ["TLS1.1", "TLS1.0"])
def test_old_tls_handshake_is_refused(hardened, version):
    a, _ = hardened
    offset = a.log_size()
    res = tlslab.run(
        [
            "gnutls-cli",
            "--insecure",
            "-p",
            str(a.tls_port),
            f"--priority=NORMAL:-VERS-ALL:+VERS-{version}",
            "127.0.0.1",
        ],
        stdin="",
        timeout=30,
    )
    log = a.log_since(offset)
    assert res.rc != 0, res.text
    assert "Handshake was completed" not in res.text, res.text
    assert "TLS handshake failed" in log or "version" in log.lower(), log


@pytest.mark.control("HVG-MIG-003")
def test_tls12_and_tls13_handshakes_succeed(hardened):
    """Positive control for the refusal above: the same tool, a modern version."""
    a, _ = hardened
    for version in ("TLS1.2", "TLS1.3"):
        res = tlslab.run(
            [
                "gnutls-cli",
                "--insecure",
                "-p",
                str(a.tls_port),
                f"--priority=NORMAL:-VERS-ALL:+VERS-{version}",
                "127.0.0.1",
            ],
            stdin="",
            timeout=30,
        )
        assert "Handshake was completed" in res.text, res.text
        assert f"({version}-" in res.text, res.text


# --- the migration stream ---------------------------------------------------------------------
@pytest.mark.control("HVG-MIG-004", effect=True)
def test_migration_without_tls_is_refused(hardened, fleet):
    a, b = hardened
    _marker_domain(fleet, a, "notls")
    res, _ = _migrate(a, b, fleet, "notls")
    assert res.rc != 0
    assert "VIR_MIGRATE_TLS" in res.text, res.text
    assert "notls" in a.virsh("list", "--name").out  # still running at the source


@pytest.mark.control("HVG-MIG-004", effect=True)
def test_tls_migration_moves_the_domain_and_hides_guest_memory(hardened, fleet):
    a, b = hardened
    # QEMU's directory holds QEMU's own certificates only (no libvirt key or certificate).
    for name in ("a", "b"):
        cert = (fleet.qemu[name] / "client-cert.pem").read_bytes()
        assert f"OU={QEMU_UNIT}".encode() in tlslab.run(
            ["openssl", "x509", "-noout", "-subject", "-nameopt", "compat", "-in",
             str(fleet.qemu[name] / "client-cert.pem")]
        ).out.encode(), cert  # fmt: skip
        assert cert != (fleet.hosts[name] / "client-cert.pem").read_bytes()
    marker = _marker_domain(fleet, a, "withtls")
    res, pcap = _migrate(a, b, fleet, "withtls", "--tls")
    assert res.rc == 0, res.text + b.log_tail()
    assert "withtls" in b.virsh("list", "--name").out
    assert "withtls" not in a.virsh("list", "--name").out
    # Zero pages are not sent; the stream is still far larger than the marker blob.
    assert len(pcap) > 200_000, "the capture missed the migration stream"
    assert b"\x16\x03" in pcap  # TLS handshake records
    assert marker not in pcap
    # ... and back again.
    res, pcap = _migrate(b, a, fleet, "withtls", "--tls")
    assert res.rc == 0, res.text + a.log_tail()
    assert "withtls" in a.virsh("list", "--name").out
    assert marker not in pcap


@pytest.mark.control("HVG-MIG-004")
def test_cleartext_migration_would_leak_the_marker(fleet):
    """Negative control: without the role's qemu.conf the same capture finds the marker.

    Proves the capture and the marker can detect a cleartext stream at all.
    """
    plain = {"stdio_handler": "file"}
    a = tlslab.SessionDaemon(
        root=fleet.root / "plain-a",
        libvirtd=tlslab.hardened_libvirtd(fleet.hosts["a"], fleet.dn_list),
        qemu=plain,
    )
    b = tlslab.SessionDaemon(
        root=fleet.root / "plain-b",
        libvirtd=tlslab.hardened_libvirtd(fleet.hosts["b"], fleet.dn_list),
        qemu=plain,
    )
    a.start()
    try:
        b.start()
        marker = _marker_domain(fleet, a, "plain")
        res, pcap = _migrate(a, b, fleet, "plain")
        assert res.rc == 0, res.text + b.log_tail()
        assert marker in pcap
    finally:
        a.stop()
        b.stop()
