#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Time live migrations of one domain between two hypervisors (run on the first one).

Stdlib only: it runs on a lab hypervisor. Each round trip is `self -> peer` then
`peer -> self` (driven from here over qemu+tls); prints one JSON object with the wall time
of every migration. `--tls` adds VIR_MIGRATE_TLS; without it the migration stream is
plaintext (only possible where qemu.conf has migrate_tls_force = 0).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def migrate(domain: str, src: str | None, dst: str, tls: bool) -> float:
    argv = ["virsh"]
    if src:
        argv += ["-c", f"qemu+tls://{src}/system"]
    argv += ["migrate", "--live", domain, f"qemu+tls://{dst}/system"]
    if tls:
        argv.insert(argv.index("--live") + 1, "--tls")
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--self-name", required=True, help="this host as the peer reaches it")
    parser.add_argument("--peer", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    times: list[float] = []
    for _ in range(args.runs):
        times.append(migrate(args.domain, None, args.peer, args.tls))
        times.append(migrate(args.domain, args.peer, args.self_name, args.tls))
    print(json.dumps({"tls": args.tls, "seconds": [round(t, 3) for t in times]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
