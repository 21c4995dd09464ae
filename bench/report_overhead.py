# SPDX-License-Identifier: Apache-2.0
"""Benchmark: cost of the hvguard_report callback, as ratios against baselines from the same run.

1. End to end: the same ansible-playbook run (N local-connection hosts, T tagged tasks, free
   strategy) with the callback enabled vs. disabled. Target: the ratio stays under 1.10.
2. Fleet scale, in process: H hosts x C controls x R results each through the aggregator,
   then every renderer; baseline = deep-copying the same results (what Ansible itself does
   for every result it hands to a callback). Also the peak memory and the report sizes.

Run: .venv/bin/python bench/report_overhead.py [--hosts 40 --tasks 12] [--fleet 500]
"""

from __future__ import annotations

import argparse
import copy
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callback_plugins import hvguard_report as hr  # noqa: E402

IDS = ("HVG-MEM-001", "HVG-MEM-002", "HVG-MEM-003", "HVG-MEM-004", "HVG-STO-001")


def write_play(work: Path, hosts: int, tasks: int) -> tuple[Path, Path]:
    inv = work / "inventory.yml"
    lines = ["all:", "  hosts:"]
    lines += [f"    h{i:04d}:" for i in range(hosts)]
    lines += ["  vars:", "    ansible_connection: local"]
    inv.write_text("\n".join(lines) + "\n")
    play = work / "play.yml"
    body = [
        "- hosts: all",
        "  gather_facts: false",
        "  strategy: ansible.builtin.free",
        "  vars: {toggle: false}",
        "  tasks:",
    ]
    for t in range(tasks):
        cid = IDS[t % len(IDS)]
        when = "    when: [toggle]\n" if t % 4 == 3 else ""
        changed = "true" if t % 3 == 0 else "false"
        body.append(
            f"  - name: {cid} | task {t}\n    ansible.builtin.debug: {{msg: 'x{t}'}}\n"
            f"    changed_when: {changed}\n{when}    tags: [{cid}]"
        )
    play.write_text("\n".join(body) + "\n")
    return inv, play


def timed_playbook(work: Path, inv: Path, play: Path, enabled: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree) of one run."""
    cfg = work / ("on.cfg" if enabled else "off.cfg")
    text = (ROOT / "ansible.cfg").read_text()
    if not enabled:
        text = text.replace("callbacks_enabled = hvguard_report", "")
    # Relative paths of the project config resolve against the config's directory.
    text = text.replace("= callback_plugins", f"= {ROOT / 'callback_plugins'}")
    text = text.replace("= action_plugins", f"= {ROOT / 'action_plugins'}")
    cfg.write_text(text)
    env = dict(os.environ, ANSIBLE_CONFIG=str(cfg), HVGUARD_REPORT_DIR=str(work / "reports"))
    env["HVGUARD_REPORT_CONSOLE"] = "false"
    cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(inv), str(play), "-f", "20"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=work)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def profiled_share(work: Path, inv: Path, play: Path) -> tuple[float, float]:
    """(callback seconds, main-process seconds) of one profiled run: the callback runs in
    Ansible's main process, so its share there is its cost, free of machine noise."""
    text = (ROOT / "ansible.cfg").read_text()
    text = text.replace("= callback_plugins", f"= {ROOT / 'callback_plugins'}")
    text = text.replace("= action_plugins", f"= {ROOT / 'action_plugins'}")
    cfg = work / "prof.cfg"
    cfg.write_text(text)
    env = dict(os.environ, ANSIBLE_CONFIG=str(cfg), HVGUARD_REPORT_DIR=str(work / "reports"))
    env["HVGUARD_REPORT_CONSOLE"] = "false"
    out = work / "prof.out"
    playbook = str(ROOT / ".venv/bin/ansible-playbook")
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), playbook, "-i", str(inv), str(play)]
    subprocess.run([*cmd, "-f", "20"], env=env, check=True, capture_output=True, cwd=work)
    stats = pstats.Stats(str(out))
    entry_points = {"set_options", "__init__"}
    spent = sum(
        row[3]  # cumulative time
        for (path, _, func), row in stats.stats.items()  # type: ignore[attr-defined]
        if path.endswith("hvguard_report.py") and (func.startswith("v2_") or func in entry_points)
    )
    return spent, stats.total_tt  # type: ignore[attr-defined]


def end_to_end(hosts: int, tasks: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inv, play = write_play(work, hosts, tasks)
        spent, total = profiled_share(work, inv, play)
        print(f"main process (profiled): {hosts} hosts x {tasks} tasks = {hosts * tasks} results")
        print(
            f"  callback {spent:.2f}s of {total:.2f}s: ratio with/without callback "
            f"{total / (total - spent):.3f}, {spent / (hosts * tasks) * 1e3:.2f} ms per result"
        )
        on, off = [], []
        for _ in range(rounds):  # interleaved so drift of the machine hits both sides
            off.append(timed_playbook(work, inv, play, enabled=False))
            on.append(timed_playbook(work, inv, play, enabled=True))
        print(f"end-to-end: {hosts} hosts x {tasks} tasks, median of {rounds}")
        # CPU time is the stable number on a shared machine; wall time is shown for context.
        for i, what in ((1, "CPU"), (0, "wall")):
            a = statistics.median(r[i] for r in off)
            b = statistics.median(r[i] for r in on)
            print(f"  {what:4}: callback off {a:.2f}s  on {b:.2f}s  ratio {b / a:.3f}")


def synthetic_results(hosts: int, per_control: int) -> list[tuple]:
    diff = {"before": "".join(f"k{i} = 1\n" for i in range(40)), "after": "k0 = 0\n"}
    out = []
    for h in range(hosts):
        for r in range(per_control):
            for c, cid in enumerate(IDS * 3):
                if (h + r + c) % 7 == 0:
                    out.append((f"h{h}", cid, "ok", {"changed": True, "diff": diff}))
                elif (h + c) % 11 == 0:
                    out.append((f"h{h}", cid, "skipped", {"false_condition": "x"}))
                else:
                    out.append((f"h{h}", cid, "ok", {"changed": False}))
    return out


def fleet(hosts: int) -> None:
    catalogue = hr.load_catalogue(ROOT / "controls" / "catalogue.yml")["controls"]
    ids = list(catalogue)[:15]
    global IDS
    IDS = tuple(ids[:5])
    results = synthetic_results(hosts, 10)

    start = time.perf_counter()
    for _, _, _, res in results:
        copy.deepcopy(res)
    baseline = time.perf_counter() - start

    def aggregate() -> hr.Aggregator:
        agg = hr.Aggregator(catalogue)
        agg.start_play("p", set(ids))
        for host, cid, outcome, res in results:
            agg.record(host, "task", [cid], outcome, res, True)
        return agg

    start = time.perf_counter()
    agg = aggregate()
    record = time.perf_counter() - start
    tracemalloc.start()  # a second pass: tracing slows allocation, so it is not timed
    aggregate()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    start = time.perf_counter()
    report = hr.build_report(agg, {"check_mode": True})
    texts = {fmt: render(report) for fmt, render in hr.RENDERERS.items()}
    render = time.perf_counter() - start
    n = len(results)
    print(f"fleet: {hosts} hosts, {n} results ({n // hosts} per host)")
    print(
        f"  aggregate {record:.2f}s = {record / baseline:.2f}x deepcopy baseline ({baseline:.2f}s)"
    )
    print(
        f"  build+render all formats {render:.2f}s; aggregation peak memory {peak / 2**20:.1f} MiB"
    )
    print("  sizes: " + ", ".join(f"{k} {len(v) / 2**20:.2f} MiB" for k, v in texts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=40)
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fleet", type=int, default=500)
    args = parser.parse_args()
    fleet(args.fleet)
    end_to_end(args.hosts, args.tasks, args.rounds)


if __name__ == "__main__":
    main()
