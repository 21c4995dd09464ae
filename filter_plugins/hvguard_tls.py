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
_TCP_LISTEN = "0A"


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


def hvguard_tls_listening_ports(proc_net_tcp: Iterable[str] | str) -> list[int]:
    """TCP ports in LISTEN state from the text of /proc/net/tcp and /proc/net/tcp6."""
    texts = [proc_net_tcp] if isinstance(proc_net_tcp, str) else list(proc_net_tcp)
    ports: set[int] = set()
    for text in texts:
        for line in str(text).splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or fields[3] != _TCP_LISTEN:
                continue
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


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


class FilterModule:
    """hvguard TLS filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "hvguard_tls_dn": hvguard_tls_dn,
            "hvguard_tls_subject": hvguard_tls_subject,
            "hvguard_tls_dn_list": hvguard_tls_dn_list,
            "hvguard_tls_sans": hvguard_tls_sans,
            "hvguard_tls_peer_addresses": hvguard_tls_peer_addresses,
            "hvguard_tls_listening_ports": hvguard_tls_listening_ports,
            "hvguard_tls_cert_info": hvguard_tls_cert_info,
            "hvguard_tls_key_matches": hvguard_tls_key_matches,
            "hvguard_tls_signed_by": hvguard_tls_signed_by,
            "hvguard_tls_expiry": hvguard_tls_expiry,
            "hvguard_tls_validity_problem": hvguard_tls_validity_problem,
            "hvguard_tls_sans_problem": hvguard_tls_sans_problem,
            "hvguard_tls_port_problems": hvguard_tls_port_problems,
        }
