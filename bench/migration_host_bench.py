#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Host companion of bench/migration_bench.yml: TLS vs plaintext live migration on loopback.

Two hand-started session libvirtd daemons (tests/fixtures/tls/tlslab.py, run as nobody)
migrate one TCG domain (128 MiB, 32 MiB of random data in RAM) back and forth: first a
pair with the role's qemu.conf (migrate_tls_force) over TLS, then a pair without it over
plain TCP, same domain definition, same run. Prints the wall times and the ratio of the
medians (TLS / TCP). Loopback has no wire limit, so this shows the CPU cost of TLS on this
machine; the VM benchmark shows it across the lab's private network. Root only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "tls"))
import tlslab  # noqa: E402

RUNS = int(os.environ.get("BENCH_MIGRATION_RUNS", "3"))
BLOB_MIB = 32


def daemons(
    root: Path, fleet: dict[str, Path], dn: list[str], hardened: bool
) -> list[tlslab.SessionDaemon]:
    pair = []
    for name in ("a", "b"):
        qemu: dict[str, object] = dict(tlslab.hardened_qemu_settings()) if hardened else {}
        qemu.update(default_tls_x509_cert_dir=str(fleet[name]), stdio_handler="file")
        d = tlslab.SessionDaemon(
            root=root / f"{'tls' if hardened else 'tcp'}-{name}",
            libvirtd=tlslab.hardened_libvirtd(fleet[name], dn),
            qemu=qemu,
        )
        d.start()
        pair.append(d)
    return pair


def round_trips(
    a: tlslab.SessionDaemon, b: tlslab.SessionDaemon, client: Path, tls: bool
) -> list[float]:
    times = []
    flags = ["--live", "--tls"] if tls else ["--live"]
    for _ in range(RUNS):
        for src, dst in ((a, b), (b, a)):
            port = tlslab.free_port()
            t0 = time.monotonic()
            res = src.virsh(
                "migrate",
                *flags,
                "bench",
                dst.tls_uri("localhost", client),
                f"tcp://127.0.0.1:{port}",
            )
            times.append(round(time.monotonic() - t0, 3))
            if res.rc != 0:
                raise SystemExit(f"migration failed: {res.text}")
    return times


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("run as root (the daemons run as nobody)")
    root = Path(tempfile.mkdtemp(prefix="hvguard-bench-"))
    root.chmod(0o755)
    try:
        ca = tlslab.CA.create("bench CA")
        fleet = {}
        for name in ("a", "b"):
            cn = f"hv-{name}.bench"
            server = ca.issue(cn, server=True, sans=[cn, "localhost", "127.0.0.1"])
            fleet[name] = tlslab.write_qemu_dir(
                root / name / "pki", ca, server, ca.issue(cn, server=False)
            )
        client = tlslab.write_client_dir(root / "client", ca, ca.issue("hv-a.bench", server=False))
        dn = ["O=hvguard,CN=hv-a.bench", "O=hvguard,CN=hv-b.bench"]
        blob = root / "blob.bin"
        blob.write_bytes(secrets.token_bytes(BLOB_MIB << 20))
        blob.chmod(0o644)
        xml = root / "bench.xml"
        xml.write_text(tlslab.domain_xml("bench", blob, memory_mib=128))
        xml.chmod(0o644)
        result = {}
        for hardened in (True, False):
            a, b = daemons(root, fleet, dn, hardened)
            try:
                res = a.virsh("create", str(xml))
                if res.rc != 0:
                    raise SystemExit(res.text)
                result["tls" if hardened else "tcp"] = round_trips(a, b, client, hardened)
            finally:
                a.stop()
                b.stop()
        tls, tcp = statistics.median(result["tls"]), statistics.median(result["tcp"])
        result["ratio_tls_over_tcp"] = round(tls / tcp, 3)
        print(json.dumps(result))
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
