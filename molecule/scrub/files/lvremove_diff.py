#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""HVG-STO-002: the diverted lvremove removes exactly what the real one removes.

Differential test, run on the lab hypervisor as root. Three small VGs on loop devices:
`dvg` and `dvg2` are managed by a test configuration of the engine (thick, inactive, tagged,
thin LVs, a thin pool, a tenant LV named with the reserved prefix), `uvg` is not. Every
vector of the table runs on the same set of LVs first with the real tool in test mode
(`lvm lvremove --test ARGV`: it resolves, asks and answers exactly as for real and reports
what it would remove, changing nothing) and then with the wrapper for real (`lvremove ARGV`,
the diverted binary); the sets of removed LVs and the exit codes must be equal, or, for the
few vectors where the wrapper deliberately refuses (docs/scrub.md, "lvremove wrapper"), the
wrapper must remove nothing and say why. Only what a vector removed is created again.

Scrub proof: every LV is created with a unique marker over its whole size, on extents never
used before in the run (so no later LV overwrites what a removed one left). For each LV the
wrapper removed from a managed VG, once its scrub job finished, its former extents on the raw
loop device must not hold its marker. Controls: LVs removed by the real tool (`lvm
lvremove`) MUST still show theirs, or the read proves nothing (discards are off on the loop
devices, so LVM's issue_discards cannot erase it).

Output: `VECTOR <n> <argv> real=<set> wrapper=<set> PASS|FAIL`, `VECTORS <count>`, RESULT.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

WORK = Path("/var/tmp/hvguard-lvdiff")
CFG = WORK / "config.json"
STATE = WORK / "state"
MIB = 1 << 20
LV_MIB = 4
RUN = os.urandom(4).hex()
ENV = {
    **os.environ,
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HVGUARD_SCRUB_CONFIG": str(CFG),
    "LVM_SUPPRESS_FD_WARNINGS": "1",
}
REAL = ["lvm", "lvremove"]
WRAPPER = ["lvremove"]  # the diverted binary, as libvirt and admins run it

# name -> (kind, tag, active). kind: thick | thin | pool. Names are unique across VGs.
FIXTURE: dict[str, tuple[str, str, bool]] = {
    "dvg/da": ("thick", "", True),
    "dvg/db": ("thick", "", True),
    "dvg/dc": ("thick", "", True),
    "dvg/dinact": ("thick", "", False),
    "dvg/dtag": ("thick", "t1", True),
    "dvg/hvgscrub-tenant": ("thick", "", True),
    "dvg/dtp": ("pool", "", True),
    "dvg/dth1": ("thin", "", True),
    "dvg/dth2": ("thin", "", True),
    "dvg2/ea": ("thick", "", True),
    "dvg2/eb": ("thick", "t2", True),
    "uvg/ua": ("thick", "", True),
    "uvg/ub": ("thick", "", True),
    "uvg/uinact": ("thick", "", False),
    "uvg/utag": ("thick", "t1", True),
}
VGS = {"dvg": 4096, "dvg2": 1024, "uvg": 64}  # MiB of each (sparse) loop device
MANAGED = {"dvg", "dvg2"}

# (argv, stdin, expect). expect "same": identical removed set and exit code; "refuse:<why>":
# the wrapper removes nothing, fails, and its stderr contains <why>. {M}/{U}: loop devices.
VECTORS: list[tuple[str, str | None, str]] = [
    ("-f dvg/da", None, "same"),
    ("-fy dvg/da", None, "same"),
    ("-yf dvg/da", None, "same"),
    ("-ty dvg/da", None, "same"),
    ("dvg/da -t -f", None, "same"),
    ("-f /dev/dvg/da", None, "same"),
    ("--force dvg/da dvg/db", None, "same"),
    ("--for dvg/da", None, "same"),
    ("-f -f dvg/da", None, "same"),
    ("-f --nolocking dvg/da", None, "same"),
    ("-f --select=lv_name=da dvg/db", None, "same"),
    ("-f --select lv_name=da dvg", None, "same"),
    ("-f -Slv_name=da", None, "same"),
    ("-f -S lv_name=~^d[ab]$", None, "same"),
    ("-f -S lv_name=nomatch", None, "same"),
    ("-f @t1", None, "same"),
    ("-f @t2 @nosuchtag", None, "same"),
    ("-f dvg2", None, "same"),
    ("-f uvg", None, "same"),
    ("-f uvg/ua", None, "same"),
    ("uvg/ua", "n\n", "same"),
    ("-f uvg/ua dvg/da", None, "same"),
    ("-f dvg/nonexist", None, "same"),
    ("-f dvg/da dvg/nonexist", None, "same"),
    ("-f dvg/dinact", None, "same"),
    ("dvg/dinact", None, "same"),
    ("-f dvg/dth1", None, "same"),
    ("-f dvg/hvgscrub-tenant", None, "same"),
    ("dvg/da", "n\n", "same"),
    ("dvg/da", "y\n", "same"),
    ("dvg/da", "maybe\nn\n", "same"),
    ("dvg/da", None, "same"),  # end of input: no
    ("dvg/da dvg/db", "y\nn\n", "same"),
    ("-qq dvg/da", None, "same"),
    ("-f --bogus dvg/da", None, "same"),
    ("-f --de dvg/da", None, "same"),
    ("-f --yes=1 dvg/da", None, "same"),
    ("-f -y -y dvg/da", None, "same"),
    ("-f -- dvg/da", None, "same"),
    ("-fAn dvg/da", None, "same"),
    ("-f -Amaybe dvg/da", None, "same"),
    ("-f --config=devices/issue_discards=0 dvg/da", None, "same"),
    ("-f --devices {M} dvg/da", None, "same"),
    ("-f --devices {U} dvg/da", None, "same"),
    ("--help dvg/da", None, "same"),
    ("-f", None, "same"),
    ("-f dvg/dtp", None, "refuse:still has thin volumes"),
    ("-f dvg", None, "refuse:still has thin volumes"),
]
# Test mode cannot remove an active thin pool ("Internal error: Removing still active LV
# .../tp_tmeta"): these vectors run the real tool for real, then the LVs are made again.
FOR_REAL = {"-f dvg/dtp", "-f dvg"}
REMOVED = re.compile(r'Logical volume "([^"]+)" successfully removed')

# Vectors whose outcome depends on the order of the LVs in the VG metadata (prompts are
# asked in that order): those LVs are made anew, in table order, before each side.
FRESH = {"dvg/da dvg/db": ("dvg/da", "dvg/db")}


def sh(*cmd: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(
        list(cmd), input=stdin or "", capture_output=True, text=True, env=ENV, check=False
    )
    if check and res.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)}: rc={res.returncode} {res.stderr.strip()}")
    return res


def report(*args: str) -> list[dict]:
    out = sh("lvm", "lvs", "-a", "--reportformat", "json", *args).stdout
    return [row for rep in json.loads(out)["report"] for row in rep["lv"]]


class Lab:
    def __init__(self) -> None:
        self.loops: dict[str, str] = {}
        self.geometry: dict[str, tuple[int, int]] = {}  # VG -> (extent size, first PE offset)
        self.next_pe: dict[str, int] = {}  # managed VG -> first never-used PE
        self.rows: dict[str, dict] = {}  # LV name -> lvs row (with seg_pe_ranges), current
        self.counter = 0
        self.marker: dict[str, bytes] = {}  # LV name -> marker of its current generation
        self.deferred: list[tuple[str, str, tuple[str, int, int], bytes]] = []
        self.failures = 0

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        self.teardown()
        WORK.mkdir(parents=True)
        for vg, mib in VGS.items():
            img = WORK / f"{vg}.img"
            with open(img, "wb") as fh:
                fh.truncate(mib * MIB)  # sparse: only what is written takes space
            dev = sh("losetup", "-f", "--show", str(img)).stdout.strip()
            # no discards: LVM's issue_discards (HVG-STO-004) would erase what the real tool
            # leaves and the control reads below would prove nothing
            Path(f"/sys/block/{Path(dev).name}/queue/discard_max_bytes").write_text("0")
            # no event autoactivation: udev would activate every LV of the VG at some PV
            # event, behind the test's back (an inactive LV would then be asked about)
            sh("vgcreate", "-q", "--setautoactivation", "n", vg, dev)
            self.loops[vg] = dev
            ext = sh("lvm", "vgs", "--noheadings", "--units", "b", "--nosuffix", "-o",
                     "vg_extent_size", vg).stdout  # fmt: skip
            start = sh("lvm", "pvs", "--noheadings", "--units", "b", "--nosuffix", "-o",
                       "pe_start", dev).stdout  # fmt: skip
            self.geometry[vg] = (int(ext), int(start))
            self.next_pe[vg] = 0
        CFG.write_text(
            json.dumps(
                {
                    "state_dir": str(STATE),
                    "libvirt_check": False,
                    "ioprio_idle": False,
                    "pools": [{"name": vg, "type": "logical", "vg": vg} for vg in sorted(MANAGED)],
                }
            )
        )
        self.refresh()
        self.ensure()

    def teardown(self) -> None:
        for vg in VGS:
            sh("lvm", "vgremove", "-q", "-f", vg, check=False)
        for line in sh("losetup", "-a", check=False).stdout.splitlines():
            if str(WORK) in line:
                sh("losetup", "-d", line.split(":")[0], check=False)
        sh("rm", "-rf", str(WORK))

    def refresh(self) -> set[str]:
        self.rows = {}
        for r in report("-o", "vg_name,lv_name,pool_lv,seg_pe_ranges", *VGS):
            self.rows[f"{r['vg_name']}/{r['lv_name']}"] = r
        return set(self.rows)

    def fresh_pes(self, vg: str, count: int) -> list[str]:
        """PEs never used before in this run: a freed extent is never reallocated, so what
        a removed LV left on the PV can still be read at the end (managed VGs only)."""
        if vg not in MANAGED:
            return []
        first = self.next_pe[vg]
        self.next_pe[vg] += count
        return [f"{self.loops[vg]}:{first}-{first + count - 1}"]

    def ensure(self, fresh: tuple[str, ...] = ()) -> set[str]:
        """Create what a vector removed (pools first), each LV with a new marker; `fresh`
        LVs are made anew, in table order (the order in which lvremove prompts)."""
        for name in fresh:
            sh("lvm", "lvremove", "-q", "-f", name, check=False)
        have = self.refresh() if fresh else set(self.rows)
        missing = [n for n in FIXTURE if n not in have]
        for name in sorted(missing, key=lambda n: FIXTURE[n][0] != "pool"):
            vg, lv = name.split("/")
            kind, tag, active = FIXTURE[name]
            tags = ["--addtag", tag] if tag else []
            if kind == "pool":  # 16 MiB data, metadata and its spare: 6 extents
                sh("lvcreate", "-q", "-y", "-L", "16M", "-T", name, *self.fresh_pes(vg, 8))
                self.refresh()  # where LVM put the data LV in that range
                continue
            row = {"vg_name": vg, "lv_name": lv, "pool_lv": "", "seg_pe_ranges": ""}
            if kind == "thin":
                sh("lvcreate", "-q", "-y", "-V", f"{LV_MIB}M", "-T", f"{vg}/dtp", "-n", lv, *tags)
                row["pool_lv"] = "dtp"
            else:
                pes = self.fresh_pes(vg, 1)
                sh("lvcreate", "-q", "-y", "-W", "n", "-L", f"{LV_MIB}M", "-n", lv, *tags, vg,
                   *pes)  # fmt: skip
                row["seg_pe_ranges"] = pes[0] if pes else ""
            self.rows[name] = row  # known without asking LVM again (slow under TCG)
            self.write_marker(name)
            if not active:
                sh("lvchange", "-an", name)
        return set(self.rows)

    def write_marker(self, name: str) -> None:
        self.counter += 1
        mark = f"HVGLVDIFF-{RUN}-{self.counter:05d}|".encode()
        self.marker[name] = mark
        fd = os.open(f"/dev/{name}", os.O_WRONLY)
        try:
            os.write(fd, (mark * (LV_MIB * MIB // len(mark) + 1))[: LV_MIB * MIB])
            os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ scrub proof
    def extent(self, name: str) -> tuple[str, int, int]:
        """(loop device, byte offset, length) holding an LV's data on its PV: its own
        segment, or the thin pool's data LV for a thin LV."""
        vg = name.split("/")[0]
        row = self.rows[name]
        if row.get("pool_lv"):
            row = self.rows[f"{vg}/[{row['pool_lv']}_tdata]"]
        dev, rng = row["seg_pe_ranges"].split(":")
        first, last = (int(x) for x in rng.split("-"))
        ext, start = self.geometry[vg]
        return (dev, start + first * ext, (last - first + 1) * ext)

    @staticmethod
    def holds(where: tuple[str, int, int], mark: bytes) -> bool:
        dev, off, length = where
        fd = os.open(dev, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, off, length, os.POSIX_FADV_DONTNEED)  # read the disk
            return mark in os.pread(fd, length, off)
        finally:
            os.close(fd)

    def judge(self, side: str, name: str, where: tuple[str, int, int], mark: bytes) -> str:
        found = self.holds(where, mark)
        if side == "real" and not found:
            return f"control: marker of {name} gone after the real lvremove (scan proves nothing)"
        if side == "wrapper" and found:
            return f"{name} removed by the wrapper but its marker is still on the PV"
        return ""

    def drain(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            jobs = [json.loads(p.read_text()) for p in (STATE / "jobs").glob("*.json")]
            failed = [j for j in jobs if j.get("error")]
            if failed:
                raise RuntimeError(f"scrub job failed: {failed[0]['error']}")
            if not jobs:
                return
            time.sleep(0.3)
        raise RuntimeError(f"scrub queue did not drain in {timeout:.0f} s")

    # ------------------------------------------------------------------ one side
    def run_real(self, argv: list[str], stdin: str | None, spec: str) -> tuple[set, int, str]:
        """The real tool in test mode (--test changes nothing; prompts are still asked and
        answered): the LVs it reports removed. A command line that is already in test mode,
        or one test mode cannot simulate (FOR_REAL), is run as it is, and measured."""
        res = sh(*REAL, "--test", *argv, stdin=stdin, check=False)
        if spec in FOR_REAL or "Option -t/--test may not be repeated." in res.stderr:
            self.drain()  # a quarantined LV removed for real here would never be zeroed
            before = set(self.rows)
            extents = self.managed_extents(before)
            res = sh(*REAL, *argv, stdin=stdin, check=False)
            gone = {n for n in before - self.refresh() if n in FIXTURE}
            for name in gone & set(extents):  # removed unscrubbed: controls for the scan
                self.deferred.append(("real", name, extents[name], self.marker[name]))
            return gone, res.returncode, res.stdout + res.stderr
        by_lv = {n.split("/")[1]: n for n in FIXTURE}
        gone = {by_lv[m] for m in REMOVED.findall(res.stdout) if m in by_lv}
        return gone, res.returncode, res.stdout + res.stderr

    def managed_extents(self, names: set[str]) -> dict[str, tuple[str, int, int]]:
        return {
            n: self.extent(n)
            for n in names
            if n in FIXTURE and FIXTURE[n][0] != "pool" and n.split("/")[0] in MANAGED
        }

    def run_wrapper(self, argv: list[str], stdin: str | None) -> tuple[set, int, str, list[str]]:
        """The wrapper, for real, on the same LVs; removed = gone from their names."""
        before = set(self.rows)
        marks = dict(self.marker)
        extents = self.managed_extents(before)
        res = sh(*WRAPPER, *argv, stdin=stdin, check=False)
        after = self.refresh()
        gone = {n for n in before - after if n in FIXTURE}
        now = []
        for name in gone & set(extents):
            entry = ("wrapper", name, extents[name], marks[name])
            # a thin LV's blocks go back to its pool, where the next thin LV reuses them:
            # judge it now (after its scrub); freed extents are never reused (fresh_pes)
            (now if FIXTURE[name][0] == "thin" else self.deferred).append(entry)
        if now:
            self.drain()
        problems = [p for p in (self.judge(*e) for e in now) if p]
        return gone, res.returncode, res.stdout + res.stderr, problems

    def control(self, name: str) -> None:
        """What the scrub proof must be able to see: an LV removed by the real tool keeps
        its marker on the PV (no scrub, no discard)."""
        self.ensure()
        entry = ("real", name, self.extent(name), self.marker[name])
        sh(*REAL, "-f", name)
        self.refresh()
        self.deferred.append(entry)

    def vector(self, n: int, spec: str, stdin: str | None, expect: str) -> None:
        argv = shlex.split(spec.format(M=self.loops["dvg"], U=self.loops["uvg"]))
        self.ensure(FRESH.get(spec, ()))
        real, real_rc, real_out = self.run_real(argv, stdin, spec)
        self.ensure()
        wrap, wrap_rc, wrap_out, problems = self.run_wrapper(argv, stdin)
        if expect == "same":
            if real != wrap or real_rc != wrap_rc:
                problems.append(f"rc real={real_rc} wrapper={wrap_rc}")
        else:
            why = expect.split(":", 1)[1]
            if wrap or wrap_rc == 0 or why not in wrap_out:
                problems.append(f"expected a refusal ({why}) removing nothing, rc={wrap_rc}")
        self.verdict(n, argv, stdin, real, wrap, expect.split(":")[0], problems)
        if problems:
            print("  real: " + real_out.strip().replace("\n", "\n  real: "))
            print("  wrapper: " + wrap_out.strip().replace("\n", "\n  wrapper: "))

    def verdict(self, n, argv, stdin, real, wrap, expect, problems) -> None:  # noqa: ANN001
        self.failures += bool(problems)
        fmt = lambda s: "{" + ",".join(sorted(s)) + "}"  # noqa: E731
        stdin_s = f" stdin={stdin!r}" if stdin is not None else ""
        verdict = "FAIL" if problems else "PASS"
        print(f"VECTOR {n} {shlex.join(argv)}{stdin_s} real={fmt(real)} wrapper={fmt(wrap)} "
              f"{expect} {verdict}", flush=True)  # fmt: skip
        for p in problems:
            print(f"  problem: {p}")

    def final_scan(self) -> None:
        """Every scrub finished: no wrapper-removed LV's marker is left where it lived, every
        real-removed one still is (control)."""
        for name in ("dvg/dc", "dvg2/ea"):  # controls: removed by the real tool
            self.control(name)
        self.drain()
        problems = [p for p in (self.judge(*e) for e in self.deferred) if p]
        sides = [e[0] for e in self.deferred]
        print(f"SCRUB wrapper-removed={sides.count('wrapper')} markers-left="
              f"{sum('wrapper' in p for p in problems)} real-removed={sides.count('real')} "
              f"controls-lost={sum('control' in p for p in problems)} "
              f"{'FAIL' if problems else 'PASS'}")  # fmt: skip
        for p in problems:
            print(f"  problem: {p}")
        self.failures += bool(problems)


def main() -> int:
    if os.path.realpath(sh("sh", "-c", "command -v lvremove").stdout.strip()) == os.path.realpath(
        sh("sh", "-c", "command -v lvm").stdout.strip()
    ):
        print("ERR lvremove is not diverted to the wrapper")
        return 1
    lab = Lab()
    t0 = time.monotonic()
    try:
        lab.setup()
        only = {int(x) for x in sys.argv[1:]}
        for n, (spec, stdin, expect) in enumerate(VECTORS, 1):
            if not only or n in only:
                lab.vector(n, spec, stdin, expect)
        lab.final_scan()
    finally:
        lab.teardown()
    print(f"VECTORS {len(VECTORS)}")
    print(f"TIME {time.monotonic() - t0:.0f}s")
    print("RESULT " + ("FAIL" if lab.failures else "PASS"))
    return 1 if lab.failures else 0


if __name__ == "__main__":
    sys.exit(main())
