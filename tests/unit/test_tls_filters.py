# SPDX-License-Identifier: Apache-2.0
"""Unit tests for filter_plugins/hvguard_tls.py."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "tls"))

import hvguard_tls as f  # noqa: E402
import tlslab  # noqa: E402

HOSTVARS = {
    "hv1": {"hvguard_migration_tls_fqdn": "hv1.example.test"},
    "hv2": {"hvguard_migration_tls_fqdn": "hv2.example.test"},
    "hv3": {},
}


def test_dn_is_in_certificate_subject_order():
    assert f.hvguard_tls_dn("hv1.example.test", "hvguard") == "O=hvguard,CN=hv1.example.test"


def test_dn_escapes_rfc4514_specials():
    assert f.hvguard_tls_dn("a,b", "x=y") == "O=x\\=y,CN=a\\,b"


def test_subject_order_matches_dn():
    assert f.hvguard_tls_subject("hv1", "org") == [{"O": "org"}, {"CN": "hv1"}]


def test_dn_list_uses_cn_var_or_inventory_name_sorted_and_unique():
    dns = f.hvguard_tls_dn_list(HOSTVARS, ["hv2", "hv1", "hv3", "hv1"], "hvguard")
    assert dns == [
        "O=hvguard,CN=hv1.example.test",
        "O=hvguard,CN=hv2.example.test",
        "O=hvguard,CN=hv3",
    ]


def test_dn_list_appends_extra_without_duplicates():
    extra = ["O=hvguard,CN=mgmt", "O=hvguard,CN=hv3"]
    dns = f.hvguard_tls_dn_list(HOSTVARS, ["hv3"], "hvguard", extra=extra)
    assert dns == ["O=hvguard,CN=hv3", "O=hvguard,CN=mgmt"]


def test_empty_dn_list_is_an_error():
    with pytest.raises(AnsibleFilterError, match="admit no client"):
        f.hvguard_tls_dn_list(HOSTVARS, [], "hvguard")


def test_dn_list_rejects_unknown_host_and_bad_extra():
    with pytest.raises(AnsibleFilterError, match="not in hostvars"):
        f.hvguard_tls_dn_list(HOSTVARS, ["nope"], "hvguard")
    with pytest.raises(AnsibleFilterError, match="is not a DN"):
        f.hvguard_tls_dn_list(HOSTVARS, ["hv1"], "hvguard", extra=["justaname"])


def test_sans_cover_fqdn_short_name_and_addresses():
    sans = f.hvguard_tls_sans(["HV1.Example.Test", "hv1"], ["10.77.0.11", "fd00::1"])
    assert sans == ["DNS:hv1.example.test", "DNS:hv1", "IP:10.77.0.11", "IP:fd00::1"]


def test_sans_accept_an_ip_as_name_and_reject_garbage():
    assert f.hvguard_tls_sans(["10.0.0.1"]) == ["IP:10.0.0.1"]
    with pytest.raises(AnsibleFilterError, match="not a valid DNS name"):
        f.hvguard_tls_sans(["bad_name!"])
    with pytest.raises(AnsibleFilterError, match="not an IP address"):
        f.hvguard_tls_sans(["hv1"], ["10.0.0.300"])
    with pytest.raises(AnsibleFilterError, match="no name"):
        f.hvguard_tls_sans([], [])


def test_peer_addresses_split_by_family_and_require_every_host():
    hv = {
        "a": {"hvguard_migration_tls_addresses": ["10.0.0.2", "fd00::2"]},
        "b": {"hvguard_migration_tls_addresses": "10.0.0.1"},
        "c": {"hvguard_migration_tls_addresses": []},
    }
    assert f.hvguard_tls_peer_addresses(hv, ["a", "b"]) == {
        "ipv4": ["10.0.0.1", "10.0.0.2"],
        "ipv6": ["fd00::2"],
    }
    with pytest.raises(AnsibleFilterError, match="empty for c"):
        f.hvguard_tls_peer_addresses(hv, ["a", "c"])
    with pytest.raises(AnsibleFilterError, match="not an IP"):
        f.hvguard_tls_peer_addresses({"x": {"hvguard_migration_tls_addresses": ["h"]}}, ["x"])


@pytest.fixture(scope="module")
def pki():
    ca = tlslab.CA.create("unit CA")
    other = tlslab.CA.create("other CA")
    leaf = ca.issue("hv1.example.test", server=True, sans=["hv1.example.test", "10.1.2.3"])
    return ca, other, leaf


def test_cert_info(pki):
    _, _, leaf = pki
    info = f.hvguard_tls_cert_info(leaf.cert.decode())
    assert info["subject"] == "CN=hv1.example.test,O=hvguard"  # RFC 4514: reversed
    assert info["sans"] == ["DNS:hv1.example.test", "IP:10.1.2.3"]
    assert 28 <= info["days_left"] <= 30
    later = f.hvguard_tls_cert_info(leaf.cert.decode(), now="2099-01-01T00:00:00")
    assert later["days_left"] < 0
    assert len(info["spki_sha256"]) == 64


def test_key_matches_and_mismatch(pki):
    ca, _, leaf = pki
    other_leaf = ca.issue("hv2", server=False)
    assert f.hvguard_tls_key_matches(leaf.cert.decode(), leaf.key.decode())
    assert not f.hvguard_tls_key_matches(leaf.cert.decode(), other_leaf.key.decode())
    with pytest.raises(AnsibleFilterError, match="private key"):
        f.hvguard_tls_key_matches(leaf.cert.decode(), "garbage")
    with pytest.raises(AnsibleFilterError, match="PEM certificate"):
        f.hvguard_tls_cert_info("garbage")


def test_signed_by(pki):
    ca, other, leaf = pki
    assert f.hvguard_tls_signed_by(leaf.cert.decode(), ca.pem.decode())
    assert not f.hvguard_tls_signed_by(leaf.cert.decode(), other.pem.decode())
    # Same subject, different key: the signature check, not the name, decides.
    impostor = tlslab.CA.create("unit CA")
    assert not f.hvguard_tls_signed_by(leaf.cert.decode(), impostor.pem.decode())


def test_filters_are_registered():
    names = f.FilterModule().filters()
    assert {"hvguard_tls_dn_list", "hvguard_tls_sans", "hvguard_tls_key_matches"} <= set(names)


def test_expiry_from_slurp_results(pki):
    import base64

    _, _, leaf = pki
    results = [
        {
            "item": "/etc/pki/libvirt/servercert.pem",
            "content": base64.b64encode(leaf.cert).decode(),
        },
        {"item": "/etc/pki/libvirt/clientcert.pem", "failed": True, "msg": "file not found"},
        {"item": "/etc/pki/CA/cacert.pem", "content": base64.b64encode(b"junk").decode()},
    ]
    rows = f.hvguard_tls_expiry(results)
    assert rows[0]["path"] == "/etc/pki/libvirt/servercert.pem"
    assert 28 <= rows[0]["days_left"] <= 30
    assert rows[1] == {"path": "/etc/pki/libvirt/clientcert.pem", "missing": True, "days_left": -1}
    assert rows[2]["days_left"] == -1 and "error" in rows[2]
    late = f.hvguard_tls_expiry(results[:1], now="2099-01-01T00:00:00+00:00")
    assert late[0]["days_left"] < 0


def test_qemu_dn_carries_its_unit_and_never_equals_the_libvirt_dn():
    """HVG-MIG-001: QEMU's certificates carry OU=<unit>; the allow-list has libvirt's DNs only."""
    assert f.hvguard_tls_subject("hv1", "org", "qemu-migration") == [
        {"O": "org"},
        {"OU": "qemu-migration"},
        {"CN": "hv1"},
    ]
    qemu_dn = f.hvguard_tls_dn("hv1", "org", "qemu-migration")
    assert qemu_dn == "O=org,OU=qemu-migration,CN=hv1"
    assert qemu_dn not in f.hvguard_tls_dn_list({"hv1": {}}, ["hv1"], "org")


def test_cert_info_and_validity_problem_cover_expired_and_not_yet_valid():
    """HVG-MIG-001 (BYO): expired and not-yet-valid certificates are named, valid ones pass."""
    ca = tlslab.CA.create("unit CA")
    now = dt.datetime.now(dt.UTC)
    fresh = ca.issue("ok", server=True)
    expired = ca.issue("old", server=True, not_before=now - dt.timedelta(days=40), days=-10)
    future = ca.issue("new", server=True, not_before=now + dt.timedelta(days=2), days=30)
    assert f.hvguard_tls_cert_info(fresh.cert.decode())["valid_now"]
    assert f.hvguard_tls_validity_problem(fresh.cert.decode(), "var") == ""
    assert not f.hvguard_tls_cert_info(expired.cert.decode())["valid_now"]
    assert f.hvguard_tls_validity_problem(expired.cert.decode(), "var").startswith("var expired on")
    assert f.hvguard_tls_validity_problem(future.cert.decode(), "var").startswith(
        "var is not valid before"
    )
    assert "var: not a PEM certificate" in f.hvguard_tls_validity_problem("junk", "var")


def test_sans_problem_names_the_bad_value_or_is_empty():
    assert f.hvguard_tls_sans_problem(["hv1"], ["10.0.0.1"]) == ""
    assert "'10.0.0.300' is not an IP address" in f.hvguard_tls_sans_problem(
        ["hv1"], ["10.0.0.300"]
    )
    assert "not a valid DNS name" in f.hvguard_tls_sans_problem(["bad_name!"], [])


PORTS = {"hvguard_migration_tls_tls_port": 16514, "hvguard_migration_tls_tcp_port": 16509}


def test_port_problems_default_ports_are_safe():
    assert f.hvguard_tls_port_problems(PORTS, 49152, 49215, [22]) == []


@pytest.mark.parametrize(
    ("ports", "lo", "hi", "ssh", "needle"),
    [
        (PORTS, 1, 65535, [22], "includes the SSH port 22"),
        (PORTS, 1, 65535, [22], "privileged ports"),
        (PORTS, 1, 65535, [22], "hvguard_migration_tls_tls_port=16514 lies inside the migration"),
        (PORTS, 49152, 49215, [22, 49160], "includes the SSH port 49160"),
        (
            {**PORTS, "hvguard_migration_tls_tcp_port": 22},
            49152,
            49215,
            [22],
            "tcp_port=22 is the SSH",
        ),
        (
            {**PORTS, "hvguard_migration_tls_tls_port": 22},
            49152,
            49215,
            [22],
            "tls_port=22 is the SSH",
        ),
        (
            {**PORTS, "hvguard_migration_tls_tls_port": 16509},
            49152,
            49215,
            [22],
            "are the same port",
        ),
        ({**PORTS, "hvguard_migration_tls_tls_port": 49200}, 49152, 49215, [22], "lies inside"),
        (PORTS, 49300, 49152, [22], "min is greater than"),
        (PORTS, 49152, 70000, [22], "port_max=70000 is not a TCP port"),
        ({**PORTS, "hvguard_migration_tls_tcp_port": 0}, 49152, 49215, [22], "tcp_port=0 is not"),
    ],
)
def test_port_problems_refuse_lockouts_and_collisions(ports, lo, hi, ssh, needle):
    """HVG-MIG-005 (issue 8 finding 11): ranges/ports that would cut SSH or collide."""
    problems = f.hvguard_tls_port_problems(ports, lo, hi, ssh)
    assert any(needle in p for p in problems), problems


# --- revocation (HVG-MIG-007/008) ----------------------------------------------------------
@pytest.mark.parametrize("value", [0x1AF, "1af", "01:AF", "0x1AF", " 1A:F "])
def test_serial_normalizes_every_spelling(value):
    assert f.hvguard_tls_serial(value) == "1af"


@pytest.mark.parametrize("value", ["", "xyz", "0", True, -3])
def test_serial_rejects_what_is_not_a_serial(value):
    with pytest.raises(AnsibleFilterError):
        f.hvguard_tls_serial(value)


def test_crl_entries_for_x509_crl_are_hex_octets_per_ca_without_duplicates():
    revoked = [
        {"ca": "fleet", "serial": "1af", "reason": "key_compromise"},
        {"ca": "qemu", "serial": "2"},
        {"serial": "01:af"},  # ca defaults to fleet: a duplicate
    ]
    assert f.hvguard_tls_crl_entries(revoked, "fleet") == [
        {"serial_number": "01:AF", "reason": "key_compromise"}
    ]
    assert f.hvguard_tls_crl_entries(revoked, "qemu") == [{"serial_number": "02"}]


def _ledger(*entries: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"ca": ca, "serial": serial, "cn": cn} for ca, serial, cn in entries]


def test_revocation_problems_name_unknown_serials_and_hosts_still_in_the_group():
    ledger = _ledger(("fleet", "a1", "hv1.example.test"), ("qemu", "b2", "hv9.example.test"))
    peers = f.hvguard_tls_peer_names(HOSTVARS, ["hv1", "hv2"])
    problems = f.hvguard_tls_revocation_problems(
        [
            {"ca": "fleet", "serial": "A1"},  # hv1 is still a peer
            {"ca": "fleet", "serial": "b2"},  # issued by the QEMU CA, not the fleet CA
            {"ca": "qemu", "serial": "b2"},  # fine: hv9 left the group
            {"ca": "nope", "serial": "1"},
            {"ca": "qemu", "serial": "b2", "reason": "because"},
        ],
        ledger,
        peers,
        ["fleet", "qemu"],
    )
    assert len(problems) == 4, problems
    assert "hv1.example.test is still in the hypervisor group" in problems[0]
    assert "the fleet CA never issued serial b2" in problems[1]
    assert "ca must be one of fleet, qemu" in problems[2]
    assert "reason must be one of" in problems[3]


def test_revocation_of_a_host_that_stays_needs_superseded():
    ledger = _ledger(("fleet", "a1", "hv1.example.test"))
    peers = f.hvguard_tls_peer_names(HOSTVARS, ["hv1"])
    entry = {"ca": "fleet", "serial": "a1", "superseded": True}
    assert f.hvguard_tls_revocation_problems([entry], ledger, peers, ["fleet"]) == []
    # A BYO CA without its key: the role signs no fleet CRL, so it cannot revoke there.
    problems = f.hvguard_tls_revocation_problems([entry], ledger, peers, ["qemu"])
    assert "hvguard_migration_tls_ca_crl" in problems[0]


def test_crl_signature_and_info():
    ca, other = tlslab.CA.create("ca"), tlslab.CA.create("other")
    crl = tlslab.make_crl(ca, [0x1AF], next_days=5).decode()
    assert f.hvguard_tls_crl_signed_by(crl, ca.pem.decode())
    assert not f.hvguard_tls_crl_signed_by(crl, other.pem.decode())
    info = f.hvguard_tls_crl_info(crl, ca.pem.decode(), now="2000-01-01T00:00:00")
    assert info["revoked"] == ["1af"] and info["signed_by_ca"] and not info["expired"]
    assert f.hvguard_tls_crl_info("")["missing"]
    with pytest.raises(AnsibleFilterError):
        f.hvguard_tls_crl_info("-----BEGIN X509 CRL-----\nxx\n-----END X509 CRL-----\n")


def test_name_ordered_is_the_ca_subject_in_order():
    ca = tlslab.CA.create("some CA")
    assert f.hvguard_tls_name_ordered(ca.pem.decode()) == [{"O": "hvguard"}, {"CN": "some CA"}]


def test_crl_audit_names_missing_differing_stale_and_expired():
    import base64

    ca = tlslab.CA.create("ca")
    ours, theirs = tlslab.make_crl(ca), tlslab.make_crl(tlslab.CA.create("x"))
    stale, expired = tlslab.make_crl(ca, next_days=3), tlslab.make_crl(ca, next_days=-1)

    def res(path: str, pem: bytes | None) -> dict[str, object]:
        return {"item": path, "content": base64.b64encode(pem).decode() if pem else None}

    expected = {"/ok": ours.decode(), "/differs": ours.decode()}
    out = f.hvguard_tls_crl_audit(
        [res("/ok", ours), res("/missing", None), res("/differs", theirs),
         res("/stale", stale), res("/expired", expired)],
        expected,
        7,
    )  # fmt: skip
    problems = {e["path"]: e.get("problem") for e in out}
    assert problems == {
        "/ok": None,
        "/missing": "missing",
        "/differs": "differs",
        "/stale": "stale",
        "/expired": "expired",
    }
    assert out[0]["matches_controller"] is True


def test_revocations_add_keeps_existing_entries_and_adds_only_new_serials():
    existing = [{"ca": "fleet", "serial": "0A", "name": "old"}]
    found = _ledger(("fleet", "a", "hv9"), ("qemu", "a", "hv9"))
    out = f.hvguard_tls_revocations_add(existing, found, "cessation_of_operation", "20261201Z")
    assert out[0] == existing[0]
    assert out[1:] == [
        {"ca": "qemu", "serial": "a", "name": "hv9", "date": "20261201Z",
         "reason": "cessation_of_operation"}
    ]  # fmt: skip
