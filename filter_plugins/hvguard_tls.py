# SPDX-License-Identifier: Apache-2.0
"""Filters for hvguard_migration_tls: certificate names, DN allow-lists, PEM checks.

Everything runs on the controller. The PEM helpers use `cryptography` (a dependency of
ansible-core's crypto collections), never the managed host.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# RFC 4514 specials that must be escaped inside an attribute value.
_DN_SPECIALS = re.compile(r'([,+"\\<>;=])')
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _dn_value(value: str) -> str:
    text = _DN_SPECIALS.sub(r"\\\1", str(value))
    if text.startswith((" ", "#")):
        text = "\\" + text
    return text


def hvguard_tls_dn(cn: str, organization: str, unit: str | None = None) -> str:
    """Client DN as libvirt compares it against tls_allowed_dn_list.

    libvirt 9 prints the peer's subject in certificate order (what `virt-pki-query-dn`
    shows), not RFC 4514's reversed order. Our certificates are issued with the subject
    O=<organization>[, OU=<unit>], CN=<host> in that order, so the DN is
    "O=<organization>,CN=<host>" (QEMU's certificates carry an OU and never match);
    tests/host/test_tls_libvirtd.py proves the match against a real libvirtd.
    """
    if not cn:
        raise AnsibleFilterError("hvguard_tls_dn: the common name is empty")
    if not organization:
        raise AnsibleFilterError("hvguard_tls_dn: the organization is empty")
    ou = f"OU={_dn_value(unit)}," if unit else ""
    return f"O={_dn_value(organization)},{ou}CN={_dn_value(cn)}"


def hvguard_tls_subject(
    cn: str, organization: str, unit: str | None = None
) -> list[dict[str, str]]:
    """The ordered subject (community.crypto `subject_ordered`) matching hvguard_tls_dn."""
    if not cn or not organization:
        raise AnsibleFilterError("hvguard_tls_subject: common name and organization are required")
    middle = [{"OU": str(unit)}] if unit else []
    return [{"O": str(organization)}, *middle, {"CN": str(cn)}]


def _host_cn(hostvars: Mapping[str, Any], host: str, cn_var: str) -> str:
    if host not in hostvars:
        raise AnsibleFilterError(f"hvguard_tls_dn_list: host {host!r} is not in hostvars")
    value = hostvars[host].get(cn_var) or host
    return str(value)


def hvguard_tls_peer_names(
    hostvars: Mapping[str, Any],
    hosts: Iterable[str] | None,
    cn_var: str = "hvguard_migration_tls_fqdn",
) -> list[str]:
    """Every name a group member's certificates carry as CN, and its inventory name."""
    names = set()
    for host in hosts or []:
        names.add(str(host))
        names.add(_host_cn(hostvars, str(host), cn_var))
    return sorted(names)


def hvguard_tls_dn_list(
    hostvars: Mapping[str, Any],
    hosts: Iterable[str] | None,
    organization: str,
    cn_var: str = "hvguard_migration_tls_fqdn",
    extra: Iterable[str] | None = None,
) -> list[str]:
    """tls_allowed_dn_list for the hypervisor group: one DN per host plus `extra` DNs.

    Raises when the result is empty: libvirt would then reject every client, which is an
    outage, never a hardening.
    """
    names = sorted({_host_cn(hostvars, str(h), cn_var) for h in (hosts or [])})
    dns = [hvguard_tls_dn(name, organization) for name in names]
    for dn in extra or []:
        if not isinstance(dn, str) or "=" not in dn:
            raise AnsibleFilterError(f"hvguard_tls_dn_list: extra DN {dn!r} is not a DN")
        if dn not in dns:
            dns.append(dn)
    if not dns:
        raise AnsibleFilterError(
            "hvguard_tls_dn_list: the allow-list is empty (no hosts in the hypervisor group "
            "and no extra DNs): libvirt would admit no client at all"
        )
    return dns


def _check_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise AnsibleFilterError(f"hvguard_tls_sans: {value!r} is not an IP address") from exc


def _check_name(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise AnsibleFilterError(f"hvguard_tls_sans: {value!r} is not a valid DNS name")
    return value.rstrip(".").lower()


def hvguard_tls_sans(names: Iterable[str], addresses: Iterable[str] | None = None) -> list[str]:
    """subjectAltName list: DNS:<name> for every name (and its short form), IP:<addr>.

    The short name is added for each FQDN because operators and migrate URIs use both;
    a missing SAN gives "certificate owner does not match the hostname".
    """
    out: list[str] = []
    for name in names:
        if not name:
            continue
        name = str(name)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            fqdn = _check_name(name)
            candidates = [f"DNS:{fqdn}", f"DNS:{fqdn.split('.')[0]}"]
        else:
            candidates = [f"IP:{_check_ip(name)}"]
        out.extend(c for c in candidates if c not in out)
    for addr in addresses or []:
        san = f"IP:{_check_ip(str(addr))}"
        if san not in out:
            out.append(san)
    if not out:
        raise AnsibleFilterError("hvguard_tls_sans: no name and no address given")
    return out


def hvguard_tls_peer_addresses(
    hostvars: Mapping[str, Any],
    hosts: Iterable[str] | None,
    addr_var: str = "hvguard_migration_tls_addresses",
) -> dict[str, list[str]]:
    """Migration-network addresses of the hypervisor group, split into ipv4 and ipv6."""
    v4: set[ipaddress.IPv4Address] = set()
    v6: set[ipaddress.IPv6Address] = set()
    missing = []
    for host in hosts or []:
        addrs = hostvars[host].get(addr_var) or []
        if isinstance(addrs, str):
            addrs = [addrs]
        if not addrs:
            missing.append(str(host))
        for addr in addrs:
            try:
                ip = ipaddress.ip_address(str(addr))
            except ValueError as exc:
                raise AnsibleFilterError(
                    f"hvguard_tls_peer_addresses: {addr_var} of {host} has {addr!r}, "
                    "not an IP address"
                ) from exc
            (v4 if ip.version == 4 else v6).add(ip)  # type: ignore[arg-type]
    if missing:
        raise AnsibleFilterError(
            f"hvguard_tls_peer_addresses: {addr_var} is empty for {', '.join(sorted(missing))}"
        )
    return {"ipv4": [str(a) for a in sorted(v4)], "ipv6": [str(a) for a in sorted(v6)]}


def _load_cert(pem: str) -> Any:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(str(pem).encode())
    except ValueError as exc:
        raise AnsibleFilterError(f"not a PEM certificate: {exc}") from exc


def _load_key(pem: str) -> Any:
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(str(pem).encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise AnsibleFilterError(f"not an unencrypted PEM private key: {exc}") from exc


def _spki(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def hvguard_tls_cert_info(pem: str, now: str | None = None) -> dict[str, Any]:
    """Subject, issuer, SANs, validity and key fingerprint of a PEM certificate."""
    from cryptography import x509

    cert = _load_cert(pem)
    when = dt.datetime.fromisoformat(now) if now else dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    not_after = cert.not_valid_after_utc
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)] + [
            f"IP:{n}" for n in ext.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        sans = []
    not_before = cert.not_valid_before_utc
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": (not_after - when).days,
        "valid_now": not_before <= when <= not_after,
        "sans": sans,
        "spki_sha256": hashlib.sha256(_spki(cert.public_key())).hexdigest(),
    }


def hvguard_tls_key_matches(cert_pem: str, key_pem: str) -> bool:
    """True when the private key is the one the certificate was issued for."""
    cert = _load_cert(cert_pem)
    key = _load_key(key_pem)
    return _spki(cert.public_key()) == _spki(key.public_key())


def hvguard_tls_signed_by(cert_pem: str, ca_pem: str) -> bool:
    """True when `ca_pem` issued `cert_pem` (name match and a valid signature)."""
    cert = _load_cert(cert_pem)
    ca = _load_cert(ca_pem)
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # InvalidSignature has no common base
        return False
    return True


def hvguard_tls_expiry(
    slurped: Iterable[Mapping[str, Any]], now: str | None = None
) -> list[dict[str, Any]]:
    """Per-file validity from `slurp` loop results: path, subject, not_after, days_left.

    A missing or unreadable file gets days_left -1, so it is never "valid long enough".
    """
    out: list[dict[str, Any]] = []
    for res in slurped:
        path = str(res.get("item") or res.get("source") or "?")
        content = res.get("content")
        if not content:
            out.append({"path": path, "missing": True, "days_left": -1})
            continue
        try:
            pem = base64.b64decode(content).decode()
            info = hvguard_tls_cert_info(pem, now)
        except (ValueError, AnsibleFilterError) as exc:
            out.append({"path": path, "error": str(exc), "days_left": -1})
            continue
        out.append(
            {
                "path": path,
                "subject": info["subject"],
                "not_after": info["not_after"],
                "days_left": info["days_left"],
            }
        )
    return out


def hvguard_tls_validity_problem(pem: str, label: str, now: str | None = None) -> str:
    """'' when the certificate is valid now, else why not, naming `label` (the variable).

    libvirtd refuses to start with an expired or not-yet-valid certificate, so deploying
    one would leave libvirt down: validation refuses it before any change.
    """
    try:
        info = hvguard_tls_cert_info(pem, now)
    except AnsibleFilterError as exc:
        return f"{label}: {exc}"
    if info["valid_now"]:
        return ""
    if info["days_left"] < 0:
        return f"{label} expired on {info['not_after']} ({info['subject']})"
    return f"{label} is not valid before {info['not_before']} ({info['subject']})"


def hvguard_tls_sans_problem(names: Iterable[str], addresses: Iterable[str] | None = None) -> str:
    """'' when hvguard_tls_sans accepts the names and addresses, else its message."""
    try:
        hvguard_tls_sans(names, addresses)
    except AnsibleFilterError as exc:
        return str(exc)
    return ""


def _port(value: Any) -> int | None:
    try:
        port = int(value)
    except (TypeError, ValueError):
        return None
    return port if 1 <= port <= 65535 else None


def hvguard_tls_port_problems(
    ports: Mapping[str, Any], port_min: Any, port_max: Any, ssh_ports: Iterable[Any]
) -> list[str]:
    """Why the firewall the role builds would cut SSH or collide with its own listeners.

    `ports` maps variable names to the single ports the role filters (TLS, plaintext);
    [port_min, port_max] is QEMU's migration/NBD range (admitted from peers only, dropped
    for everyone else); `ssh_ports` are the ports SSH may listen on. Each message names
    the variables involved. An empty list means the input is safe.
    """
    problems: list[str] = []
    lo, hi = _port(port_min), _port(port_max)
    singles = {name: _port(value) for name, value in ports.items()}
    for name, value in [*ports.items(), ("hvguard_migration_tls_migration_port_min", port_min),
                        ("hvguard_migration_tls_migration_port_max", port_max)]:  # fmt: skip
        if _port(value) is None:
            problems.append(f"{name}={value!r} is not a TCP port (1-65535)")
    ssh = sorted({p for p in (_port(v) for v in ssh_ports) if p is not None})
    if lo is not None and hi is not None:
        if lo > hi:
            problems.append(
                "hvguard_migration_tls_migration_port_min is greater than "
                "hvguard_migration_tls_migration_port_max"
            )
        if lo < 1024:
            problems.append(
                f"hvguard_migration_tls_migration_port_min={lo} reaches into the privileged "
                "ports (below 1024): the firewall would drop system services for non-peers"
            )
        for port in ssh:
            if lo <= port <= hi:
                problems.append(
                    f"the migration range {lo}-{hi} (hvguard_migration_tls_migration_port_min/"
                    f"_max) includes the SSH port {port}: the firewall would cut SSH"
                )
        for name, port in singles.items():
            if port is not None and lo <= port <= hi:
                problems.append(
                    f"{name}={port} lies inside the migration range {lo}-{hi} "
                    "(hvguard_migration_tls_migration_port_min/_max)"
                )
    for name, port in singles.items():
        if port in ssh:
            problems.append(f"{name}={port} is the SSH port: the firewall would cut SSH")
    names = list(singles)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if singles[first] is not None and singles[first] == singles[second]:
                problems.append(f"{first} and {second} are the same port ({singles[first]})")
    return problems


# --- revocation (HVG-MIG-007/008) ----------------------------------------------------------
# Revocation reasons x509_crl knows (the names revocation entries may use).
CRL_REASONS = (
    "unspecified",
    "key_compromise",
    "ca_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
    "certificate_hold",
    "privilege_withdrawn",
    "aa_compromise",
)
CRL_CAS = ("fleet", "qemu")
_LEDGER_NAME = re.compile(r"^(?P<ca>[a-z]+)-(?P<serial>[0-9a-f]+)\.pem$")


def hvguard_tls_serial(value: Any) -> str:
    """A serial number as hvguard_tls_cert_info prints it: lowercase hex, no leading zeros.

    Accepts an int, hex with or without colons (``01:AF``, ``1af``) or a ``0x`` prefix.
    """
    if isinstance(value, bool):
        raise AnsibleFilterError(f"not a serial number: {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().lower().replace(":", "")
        text = text[2:] if text.startswith("0x") else text
        if not text or not re.fullmatch(r"[0-9a-f]+", text):
            raise AnsibleFilterError(f"not a serial number (hex): {value!r}")
        number = int(text, 16)
    if number <= 0:
        raise AnsibleFilterError(f"not a serial number (must be positive): {value!r}")
    return f"{number:x}"


def _octets(serial: str) -> str:
    text = serial if len(serial) % 2 == 0 else "0" + serial
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2)).upper()


def _load_crl(pem: str) -> Any:
    from cryptography import x509

    try:
        return x509.load_pem_x509_crl(str(pem).encode())
    except ValueError as exc:
        raise AnsibleFilterError(f"not a PEM CRL: {exc}") from exc


def hvguard_tls_crl_signed_by(crl_pem: str, ca_pem: str) -> bool:
    """True when `ca_pem` signed `crl_pem` (issuer name match and a valid signature).

    libvirt (GnuTLS) silently ignores a CRL of another CA, which would revoke nothing.
    """
    crl = _load_crl(crl_pem)
    ca = _load_cert(ca_pem)
    if crl.issuer != ca.subject:
        return False
    try:
        return bool(crl.is_signature_valid(ca.public_key()))
    except (ValueError, TypeError, Exception):
        return False


def hvguard_tls_crl_info(pem: str, ca_pem: str = "", now: str | None = None) -> dict[str, Any]:
    """Issuer, lastUpdate/nextUpdate, days until nextUpdate, revoked serials, digest.

    An empty `pem` gives ``{"missing": True, "days_left": -1}``; with `ca_pem`,
    ``signed_by_ca`` says whether that CA signed it.
    """
    if not str(pem or "").strip():
        return {"missing": True, "days_left": -1, "revoked": []}
    crl = _load_crl(pem)
    when = dt.datetime.fromisoformat(now) if now else dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    next_update = crl.next_update_utc
    info: dict[str, Any] = {
        "issuer": crl.issuer.rfc4514_string(),
        "last_update": crl.last_update_utc.isoformat(),
        "next_update": next_update.isoformat() if next_update else None,
        # No nextUpdate at all: never "fresh" (peers cannot tell how old it is).
        "days_left": (next_update - when).days if next_update else -1,
        "expired": bool(next_update and next_update < when),
        "revoked": sorted(f"{r.serial_number:x}" for r in crl),
        "sha256": hashlib.sha256(crl.public_bytes(_der())).hexdigest(),
    }
    if ca_pem:
        info["signed_by_ca"] = hvguard_tls_crl_signed_by(pem, ca_pem)
    return info


def _der() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.DER


def hvguard_tls_name_ordered(cert_pem: str) -> list[dict[str, str]]:
    """The certificate's subject as x509_crl's ``issuer_ordered`` (a CRL of that CA)."""
    cert = _load_cert(cert_pem)
    out: list[dict[str, str]] = []
    for attr in cert.subject:
        # rfc4514_attribute_name: CN, O, OU, C, ST, L ... (x509_crl's names), else the OID.
        out.append({attr.rfc4514_attribute_name: str(attr.value)})
    return out


def hvguard_tls_crl_entries(revoked: Iterable[Mapping[str, Any]], ca: str) -> list[dict[str, Any]]:
    """x509_crl ``revoked_certificates`` for one CA from the revocation list."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for entry in revoked or []:
        if str(entry.get("ca", "fleet")) != ca:
            continue
        serial = hvguard_tls_serial(entry.get("serial"))
        if serial in seen:
            continue
        seen.add(serial)
        item: dict[str, Any] = {"serial_number": _octets(serial)}
        if entry.get("date"):
            item["revocation_date"] = str(entry["date"])
        if entry.get("reason"):
            item["reason"] = str(entry["reason"])
        out.append(item)
    return out


def hvguard_tls_ledger(directory: str) -> list[dict[str, Any]]:
    """The controller's record of issued certificates: ``<dir>/<ca>-<serial>.pem`` files.

    Each entry: ca, serial, subject, cn, not_after. A missing directory is an empty ledger.
    """
    from pathlib import Path

    from cryptography.x509.oid import NameOID

    root = Path(str(directory)).expanduser()
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for path in sorted(root.iterdir()):
        match = _LEDGER_NAME.match(path.name)
        if not match:
            continue
        try:
            cert = _load_cert(path.read_text())
        except (OSError, AnsibleFilterError):
            continue
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        out.append(
            {
                "ca": match["ca"],
                "serial": f"{cert.serial_number:x}",
                "subject": cert.subject.rfc4514_string(),
                "cn": str(cns[0].value) if cns else "",
                "not_after": cert.not_valid_after_utc.isoformat(),
            }
        )
    return out


def hvguard_tls_ledger_records(
    signed: Iterable[Mapping[str, Any]],
    current: Iterable[Mapping[str, Any]],
    cas: Mapping[str, str],
) -> list[dict[str, str]]:
    """Certificates to record in the ledger: those just signed (x509_certificate_pipe
    results) and those deployed on the host (slurp results), kept only when the named CA
    really issued them. Each: ca, serial, pem."""
    pairs: list[tuple[str, str]] = []
    for res in signed or []:
        if res.get("certificate"):
            pairs.append((str(res["item"]["item"]["ca"]), str(res["certificate"])))
    for res in current or []:
        if res.get("content"):
            pem = base64.b64decode(res["content"]).decode(errors="replace")
            pairs.append((str(res["item"]["ca"]), pem))
    out: dict[tuple[str, str], dict[str, str]] = {}
    for ca, pem in pairs:
        ca_pem = cas.get(ca, "")
        if not ca_pem or "BEGIN CERTIFICATE" not in pem:
            continue
        try:
            if not hvguard_tls_signed_by(pem, ca_pem):
                continue
            serial = f"{_load_cert(pem).serial_number:x}"
        except AnsibleFilterError:
            continue
        out[(ca, serial)] = {"ca": ca, "serial": serial, "pem": pem.strip() + "\n"}
    return list(out.values())


def hvguard_tls_revocation_problems(
    revoked: Any,
    ledger: Iterable[Mapping[str, Any]],
    peer_names: Iterable[str],
    cas: Iterable[str],
) -> list[str]:
    """Why the revocation list cannot be applied ([] when it can).

    - every entry is a mapping with a known CA (one the role signs CRLs for) and a serial;
    - the serial is in the controller's ledger of that CA (a serial it never issued is a
      typo that would revoke nothing);
    - the certificate's holder is not still a peer (group member), unless the entry says
      ``superseded: true`` (its host got a new certificate and stays).
    """
    if revoked in (None, ""):
        return []
    if not isinstance(revoked, list):
        return [f"must be a list of {{ca, serial, ...}} entries, got {type(revoked).__name__}"]
    issued = {(str(e["ca"]), str(e["serial"])): e for e in ledger}
    peers = {str(p) for p in peer_names}
    signing = set(cas)
    problems: list[str] = []
    for index, entry in enumerate(revoked):
        where = f"entry {index + 1}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where} is not a mapping: {entry!r}")
            continue
        ca = str(entry.get("ca", "fleet"))
        if ca not in CRL_CAS:
            problems.append(f"{where}: ca must be one of {', '.join(CRL_CAS)}, got {ca!r}")
            continue
        if ca not in signing:
            problems.append(
                f"{where}: the role does not sign the {ca} CA's CRL (bring-your-own CA without"
                " its key): revoke it in your CA and give its CRL in hvguard_migration_tls_ca_crl"
            )
            continue
        try:
            serial = hvguard_tls_serial(entry.get("serial"))
        except AnsibleFilterError as exc:
            problems.append(f"{where}: {exc}")
            continue
        reason = entry.get("reason")
        if reason and reason not in CRL_REASONS:
            problems.append(
                f"{where}: reason must be one of {', '.join(CRL_REASONS)}, got {reason!r}"
            )
        record = issued.get((ca, serial))
        if record is None:
            problems.append(
                f"{where}: the {ca} CA never issued serial {serial} (not in the controller's"
                " ledger of issued certificates)"
            )
            continue
        if record["cn"] in peers and not entry.get("superseded"):
            problems.append(
                f"{where}: serial {serial} is {record['cn']}'s certificate and {record['cn']} is"
                " still in the hypervisor group: remove the host from the group first"
                " (playbooks/decommission.yml), or mark the entry superseded: true when the"
                " host stays and gets a new certificate"
            )
    return problems


def hvguard_tls_revocations_add(
    existing: Iterable[Mapping[str, Any]] | None,
    found: Iterable[Mapping[str, Any]],
    reason: str,
    date: str,
) -> list[dict[str, Any]]:
    """The revocation list plus an entry for every ledger record in `found` that it does
    not list yet (decommission.yml); existing entries are kept as they are."""
    out = [dict(e) for e in existing or []]
    known = {(str(e.get("ca", "fleet")), hvguard_tls_serial(e.get("serial"))) for e in out}
    for record in found:
        key = (str(record["ca"]), hvguard_tls_serial(record["serial"]))
        if key in known:
            continue
        known.add(key)
        out.append(
            {
                "ca": key[0],
                "serial": key[1],
                "name": record.get("cn", ""),
                "date": date,
                "reason": reason,
            }
        )
    return out


def hvguard_tls_crl_audit(
    slurped: Iterable[Mapping[str, Any]],
    expected: Mapping[str, str],
    warn_days: int,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Per deployed CRL (slurp results, item = path): present, matches the controller's
    (`expected`: path -> PEM, '' when the controller has none), nextUpdate and its margin.

    ``problem`` names what is wrong: missing, unreadable, differs, stale, expired.
    """
    out: list[dict[str, Any]] = []
    for res in slurped:
        path = str(res.get("item") or res.get("source") or "?")
        want = str(expected.get(path, "") or "")
        entry: dict[str, Any] = {"path": path}
        content = res.get("content")
        if not content:
            entry.update(missing=True, days_left=-1, problem="missing")
            out.append(entry)
            continue
        pem = base64.b64decode(content).decode(errors="replace")
        try:
            info = hvguard_tls_crl_info(pem, now=now)
        except AnsibleFilterError as exc:
            entry.update(error=str(exc), days_left=-1, problem="unreadable")
            out.append(entry)
            continue
        entry.update({k: info[k] for k in ("issuer", "next_update", "days_left", "revoked")})
        entry["sha256"] = info["sha256"]
        if want.strip():
            want_info = hvguard_tls_crl_info(want, now=now)
            entry["controller_sha256"] = want_info["sha256"]
            entry["matches_controller"] = want_info["sha256"] == info["sha256"]
        if info["expired"]:
            entry["problem"] = "expired"
        elif want.strip() and not entry["matches_controller"]:
            entry["problem"] = "differs"
        elif info["days_left"] <= int(warn_days):
            entry["problem"] = "stale"
        out.append(entry)
    return out


class FilterModule:
    """hvguard TLS filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "hvguard_tls_dn": hvguard_tls_dn,
            "hvguard_tls_subject": hvguard_tls_subject,
            "hvguard_tls_dn_list": hvguard_tls_dn_list,
            "hvguard_tls_sans": hvguard_tls_sans,
            "hvguard_tls_peer_addresses": hvguard_tls_peer_addresses,
            "hvguard_tls_cert_info": hvguard_tls_cert_info,
            "hvguard_tls_key_matches": hvguard_tls_key_matches,
            "hvguard_tls_signed_by": hvguard_tls_signed_by,
            "hvguard_tls_expiry": hvguard_tls_expiry,
            "hvguard_tls_validity_problem": hvguard_tls_validity_problem,
            "hvguard_tls_sans_problem": hvguard_tls_sans_problem,
            "hvguard_tls_port_problems": hvguard_tls_port_problems,
            "hvguard_tls_serial": hvguard_tls_serial,
            "hvguard_tls_peer_names": hvguard_tls_peer_names,
            "hvguard_tls_crl_signed_by": hvguard_tls_crl_signed_by,
            "hvguard_tls_crl_info": hvguard_tls_crl_info,
            "hvguard_tls_name_ordered": hvguard_tls_name_ordered,
            "hvguard_tls_crl_entries": hvguard_tls_crl_entries,
            "hvguard_tls_ledger": hvguard_tls_ledger,
            "hvguard_tls_ledger_records": hvguard_tls_ledger_records,
            "hvguard_tls_revocation_problems": hvguard_tls_revocation_problems,
            "hvguard_tls_crl_audit": hvguard_tls_crl_audit,
            "hvguard_tls_revocations_add": hvguard_tls_revocations_add,
        }
