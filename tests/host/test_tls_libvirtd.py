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


class Fleet:
    """CA, certificates and client pkipath dirs for two hypervisors and three attackers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        ca = tlslab.CA.create("hvguard test CA")
        rogue = tlslab.CA.create("rogue CA")
        sans = ["localhost", "127.0.0.1"]
        self.ca = ca
        self.dn_list = [
            f"O={tlslab.ORG},CN={ALLOWED_CN}",
            f"O={tlslab.ORG},CN={PEER_CN}",
        ]
        self.hosts: dict[str, Path] = {}
        for name, cn in (("a", ALLOWED_CN), ("b", PEER_CN)):
            server = ca.issue(cn, server=True, sans=[cn, *sans])
            client = ca.issue(cn, server=False, sans=[cn])
            self.hosts[name] = tlslab.write_qemu_dir(root / name / "pki", ca, server, client)
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


def _daemon(fleet: Fleet, name: str, qemu: dict[str, object]) -> tlslab.SessionDaemon:
    pki = fleet.hosts[name]
    qemu = dict(qemu)
    qemu.update(default_tls_x509_cert_dir=str(pki), stdio_handler="file")
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
