#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Mirror benchmarks in network namespaces (issue 11, root): ratios in one run, no VM.

The lab of tests/host/mirror_netns.py: veth "VM ports" on a bridge, the real libvirt hook
installing the nft netdev mirrors, the gate loaded, the monitor's peer in a sensor namespace.

1. TCP throughput VM->VM (one stream, Python sockets: iperf3 is not installed here), rounds
   interleaved: no mirror / mirror with no reader / mirror with a Python AF_PACKET reader at
   the sensor. Ratio target (issue): >= 0.95 with no reader.
2. Completeness at fixed UDP rates (1,000-byte datagrams): unique copies at the sensor and
   datagrams at the receiver per sent, and the first rate where a copy is missing.
3. Hook cost per domain start: wall time of the prepare + start + started calls (Python
   start-up and one nft transaction each). Issue target: <= 50 ms added to a start.

Usage: sudo python3 bench/mirror_bench.py [--seconds 2] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "host"))
from mirror_netns import VMS, Lab

TCP_PORT = 7778
# 12,500 x 1,000 B = 100 Mb/s, 125,000 = 1 Gb/s; 0 = as fast as one Python sender goes.
RATES_PPS = [1_000, 12_500, 25_000, 50_000, 125_000, 0]


def tcp_sink() -> int:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", TCP_PORT))
    srv.listen(1)
    print("ready", flush=True)
    conn, _ = srv.accept()
    total = 0
    while chunk := conn.recv(1 << 20):
        total += len(chunk)
    print(json.dumps({"bytes": total}), flush=True)
    return 0


def tcp_send(dst: str, seconds: float) -> int:
    sock = socket.create_connection((dst, TCP_PORT))
    buf = b"\0" * (1 << 18)
    sent, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        sent += sock.send(buf)
    sock.shutdown(socket.SHUT_WR)
    elapsed = time.monotonic() - t0
    print(json.dumps({"bytes": sent, "seconds": elapsed}), flush=True)
    return 0


def in_ns(lab: Lab, ns: str, *args: str) -> subprocess.Popen:
    argv = ["ip", "netns", "exec", lab.ns[ns], sys.executable, __file__, *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def throughput(lab: Lab, seconds: float, reader: bool) -> float:
    cap = lab.tool("sensor", "capture", "mon", "NOMATCH-") if reader else None
    sink = in_ns(lab, "b", "_tcpsink")
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    send = in_ns(lab, "a", "_tcpsend", VMS["b"], str(seconds))
    out, _ = send.communicate(timeout=seconds + 60)
    sink.communicate(timeout=60)
    if cap:
        lab.finish(cap)
    res = json.loads(out.strip().splitlines()[-1])
    return res["bytes"] * 8 / res["seconds"] / 1e6  # Mb/s


def set_mirror(lab: Lab, on: bool) -> None:
    for vm in "ab":
        xml = lab.domain_xml(vm)
        if on:
            assert lab.start_domain(vm).returncode == 0
        else:
            assert lab.hook(f"vm-{vm}", "release", "end", xml).returncode == 0


def completeness(lab: Lab, rate: int, count: int) -> dict[str, Any]:
    marker = f"R{rate}-"
    cap = lab.tool("sensor", "capture", "mon", marker)
    rcv = lab.tool("b", "recv", marker)
    sent = lab.send("a", VMS["b"], marker, count, size=1000, rate_pps=rate)
    time.sleep(0.5)
    got, recv = lab.finish(cap), lab.finish(rcv)
    seen = got["seen"]
    return {
        "rate_pps_set": rate,
        "mbit_set": rate * 1000 * 8 / 1e6,
        "sent": count,
        "mbit_achieved": round(count * 1000 * 8 / sent["seconds"] / 1e6, 1),
        "received": len(recv["seen"]),
        "mirrored_unique": len(seen),
        "mirrored_duplicates": sum(v - 1 for v in seen.values() if v > 1),
        "sensor_socket_drops": got["socket_drops"],
        # What the mirror delivered to the sensor's socket (read, or dropped by a slow reader).
        "delivered": round((len(seen) + (got["socket_drops"] or 0)) / count, 5),
        "completeness": round(len(seen) / count, 5),
    }


def hook_cost(lab: Lab, rounds: int) -> dict[str, float]:
    times = []
    xml = lab.domain_xml("c")
    for _ in range(rounds):
        t0 = time.monotonic()
        for op in ("prepare", "start", "started"):
            assert lab.hook("vm-c", op, "begin", xml, direct=True).returncode == 0
        times.append((time.monotonic() - t0) * 1000)
        assert lab.hook("vm-c", "release", "end", xml).returncode == 0
    # What the hook itself logged (its own nft + parsing, without `ip netns exec` + start-up).
    logged = [json.loads(x)["ms"] for x in (lab.tmp / "hook.log").read_text().splitlines()]
    # The floor: `ip netns exec` + `env` + the interpreter doing nothing, same flags.
    floor = []
    for _ in range(rounds):
        t0 = time.monotonic()
        argv = ["ip", "netns", "exec", lab.ns["hv"], "env", "/usr/bin/python3", "-IS", "-c", ""]
        subprocess.run(argv, check=True)
        floor.append((time.monotonic() - t0) * 1000)
    return {
        "exec_python_floor_ms_median": round(statistics.median(floor), 1),
        "start_three_calls_ms_median": round(statistics.median(times), 1),
        "start_three_calls_ms_max": round(max(times), 1),
        "one_call_inside_hook_ms_median": round(statistics.median(logged), 1),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_tcpsink":
        return tcp_sink()
    if len(sys.argv) > 1 and sys.argv[1] == "_tcpsend":
        return tcp_send(sys.argv[2], float(sys.argv[3]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=20_000, help="datagrams per fixed-rate run")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    tmp = Path(tempfile.mkdtemp(prefix="hvgm-bench-"))
    lab = Lab(tmp).up()
    result: dict[str, Any] = {"load_before": os.getloadavg()}
    try:
        lab.load_gate(fail_open=True)  # baseline rounds run unmirrored: the gate only counts
        runs: dict[str, list[float]] = {"none": [], "mirror": [], "mirror_reader": []}
        for _ in range(args.rounds):
            set_mirror(lab, False)
            runs["none"].append(throughput(lab, args.seconds, reader=False))
            set_mirror(lab, True)
            runs["mirror"].append(throughput(lab, args.seconds, reader=False))
            runs["mirror_reader"].append(throughput(lab, args.seconds, reader=True))
        med = {k: statistics.median(v) for k, v in runs.items()}
        result["tcp_mbit"] = {k: [round(x) for x in v] for k, v in runs.items()}
        result["tcp_ratio_mirror_no_reader"] = round(med["mirror"] / med["none"], 3)
        result["tcp_ratio_mirror_with_reader"] = round(med["mirror_reader"] / med["none"], 3)
        lab.load_gate()
        result["completeness"] = [completeness(lab, r, args.count) for r in RATES_PPS]
        first = [c for c in result["completeness"] if c["completeness"] < 1]
        result["first_incomplete_rate_pps"] = first[0]["rate_pps_set"] if first else None
        lost = [c for c in result["completeness"] if c["delivered"] < 1]
        result["first_rate_mirror_lost_copies_pps"] = lost[0]["rate_pps_set"] if lost else None
        result["hook"] = hook_cost(lab, 10)
    finally:
        lab.down()
    result["load_after"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
