#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Scrub engine benchmarks on the host (root): loop devices and files, ratios in one run.

1. Unthrottled zero writes vs `dd if=/dev/zero of=DEV oflag=direct bs=4M` (target >= 0.9).
2. Engine vs `virsh vol-wipe --algorithm zero` on the same allocated raw file (libvirtd is
   started in a private mount namespace, so it touches no host state).
3. Zero-out offload (BLKZEROOUT on a loop device): seconds for 1 GiB.
4. Throttle accuracy: measured / set rate (target within 10%).
5. Engine peak RSS for a small and a large volume (target < 64 MiB and flat).

Usage: sudo python3 bench/scrub_bench.py [--size-mib 1024] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "roles/hvguard_scrub/files/hvguard-scrub"
MIB = 1 << 20

# runs the engine's zeroing core on one target in a child, so its RSS can be measured alone
CHILD = """
import importlib.machinery, importlib.util, json, sys
loader = importlib.machinery.SourceFileLoader("engine", sys.argv[1])
spec = importlib.util.spec_from_loader("engine", loader)
eng = importlib.util.module_from_spec(spec)
sys.modules["engine"] = eng
loader.exec_module(eng)
rate = float(sys.argv[4]) if sys.argv[4] != "none" else None
res = eng.scrub_target(sys.argv[2], offload=sys.argv[3] == "1", rate_mib=rate)
print(json.dumps({"seconds": res.seconds, "zeroed": res.zeroed, "method": res.method}))
"""


def run_engine(target: str, offload: bool, rate: float | None = None) -> dict:
    """Engine in a child process; returns its timing (wall_s includes the interpreter's
    start-up, which only penalises the engine) and peak RSS (KiB, from wait4)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ENGINE), target, str(int(offload)), str(rate).lower()],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out = proc.stdout.read() if proc.stdout else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"engine failed on {target}")
    res = json.loads(out)
    res["maxrss_kib"] = usage.ru_maxrss
    res["wall_s"] = wall
    return res


def timed(cmd: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


@contextmanager
def loop_device(path: Path, size: int, direct: bool = True) -> Iterator[str]:
    with open(path, "wb") as fh:
        fh.truncate(size)
    args = ["losetup", "-f", "--show"] + (["--direct-io=on"] if direct else []) + [str(path)]
    dev = subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        path.unlink(missing_ok=True)


def dd_zero(dev: str) -> float:
    with open(dev, "rb") as fh:
        count = fh.seek(0, os.SEEK_END) // (4 * MIB)
    return timed(
        [
            "dd",
            "if=/dev/zero",
            f"of={dev}",
            "oflag=direct",
            "bs=4M",
            f"count={count}",
            "status=none",
        ]
    )


def bench_vs_dd(work: Path, size: int, rounds: int) -> dict:
    dd_t, eng_t = [], []
    with loop_device(work / "dd.img", size) as dev:
        dd_zero(dev)  # allocate the backing file once, so both overwrite in place
        for _ in range(rounds):  # interleaved so drift in the host affects both alike
            dd_t.append(dd_zero(dev))
            eng_t.append(run_engine(dev, offload=False)["wall_s"])
    dd_s, eng_s = statistics.median(dd_t), statistics.median(eng_t)
    return {
        "size_mib": size // MIB,
        "dd_s": round(dd_s, 3),
        "engine_s": round(eng_s, 3),
        "dd_mib_s": round(size / MIB / dd_s, 1),
        "engine_mib_s": round(size / MIB / eng_s, 1),
        "ratio_engine_vs_dd": round(dd_s / eng_s, 3),
        "target": ">= 0.9",
    }


def bench_offload(work: Path, size: int) -> dict:
    with loop_device(work / "zo.img", size) as dev:
        dd_zero(dev)
        res = run_engine(dev, offload=True)
    return {"size_mib": size // MIB, "method": res["method"], "seconds": round(res["seconds"], 3)}


def bench_throttle(work: Path) -> list[dict]:
    out = []
    for offload, rate, size in ((False, 64, 256 * MIB), (True, 200, 512 * MIB)):
        with loop_device(work / "th.img", size) as dev:
            dd_zero(dev)
            res = run_engine(dev, offload=offload, rate=rate)
        # the zeroing call's own monotonic time (open to fsync); wall time adds the
        # interpreter's start-up, which is no part of the pace and is shown apart
        got = size / MIB / res["seconds"]
        out.append(
            {
                "method": res["method"],
                "set_mib_s": rate,
                "measured_mib_s": round(got, 1),
                "ratio": round(got / rate, 3),
                "wall_incl_startup_mib_s": round(size / MIB / res["wall_s"], 1),
                "target": "0.9 .. 1.1",
            }
        )
    return out


def bench_rss(work: Path) -> list[dict]:
    out = []
    for size in (256 * MIB, 4096 * MIB):
        with loop_device(work / "rss.img", size) as dev:
            res = run_engine(dev, offload=False)
        out.append({"size_mib": size // MIB, "maxrss_mib": round(res["maxrss_kib"] / 1024, 1)})
    return out


VOLWIPE_SH = r"""
set -eu
W=$1; SIZE_MIB=$2
for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
  mkdir -p "$d"; mount -t tmpfs tmpfs "$d"
done
cp -a /etc/libvirt "$W/etc"; mount --bind "$W/etc" /etc/libvirt
virtlogd -d -p "$W/virtlogd.pid"; libvirtd -d -p "$W/libvirtd.pid"
trap 'kill $(cat "$W/libvirtd.pid") $(cat "$W/virtlogd.pid") 2>/dev/null || true' EXIT
for _ in $(seq 100); do virsh -q -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
mkdir -p "$W/pool"
virsh -q pool-create-as benchpool dir --target "$W/pool" >/dev/null
fill() {
  dd if=/dev/urandom of="$W/pool/vol.raw" bs=4M count=$((SIZE_MIB/4)) conv=fsync status=none
}
fill; virsh -q pool-refresh benchpool >/dev/null
t0=$(date +%s.%N); virsh -q vol-wipe --pool benchpool vol.raw --algorithm zero >/dev/null
t1=$(date +%s.%N); sync
fill
t2=$(date +%s.%N); python3 -c "$CHILD" "$ENGINE" "$W/pool/vol.raw" 0 none >/dev/null
t3=$(date +%s.%N)
virsh -q pool-destroy benchpool >/dev/null
echo "$t0 $t1 $t2 $t3"
"""


def bench_volwipe(work: Path, size: int) -> dict:
    if not (shutil.which("libvirtd") and shutil.which("virsh") and shutil.which("unshare")):
        return {"skipped": "libvirtd/virsh/unshare not installed"}
    env = dict(os.environ, CHILD=CHILD, ENGINE=str(ENGINE))
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", VOLWIPE_SH, "volwipe",
         str(work), str(size // MIB)],
        capture_output=True, text=True, env=env, check=False, timeout=900,
    )  # fmt: skip
    if res.returncode != 0:
        return {"error": res.stderr.strip()[-500:]}
    t0, t1, t2, t3 = (float(x) for x in res.stdout.split()[-4:])
    return {
        "size_mib": size // MIB,
        "volwipe_s": round(t1 - t0, 3),
        "engine_s": round(t3 - t2, 3),
        "speedup_engine_vs_volwipe": round((t1 - t0) / (t3 - t2), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench needs root (loop devices)", file=sys.stderr)
        return 2
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="hvguard-scrub-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        results = {
            "vs_dd": bench_vs_dd(work, size, args.rounds),
            "vs_volwipe": bench_volwipe(work, size),
            "offload_1gib": bench_offload(work, 1024 * MIB),
            "throttle": bench_throttle(work),
            "rss": bench_rss(work),
        }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    ok = (
        results["vs_dd"]["ratio_engine_vs_dd"] >= 0.9
        and all(0.9 <= t["ratio"] <= 1.1 for t in results["throttle"])
        and all(r["maxrss_mib"] < 64 for r in results["rss"])
    )
    print("targets met" if ok else "TARGET MISSED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
