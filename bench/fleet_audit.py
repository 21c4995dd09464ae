# SPDX-License-Identifier: Apache-2.0
"""Benchmark: the check-mode audit of a simulated fleet from one controller (issue 15).

N inventory hosts are N loopback addresses 127.0.0.2 .. 127.0.0.N+1 served by a private sshd
(own host key, own authorized key, root login with that key, a free high port; one sshd
process per 16 addresses, sshd's limit of listen sockets), so every host is this machine
reached over real SSH. Each run audits the fleet with
playbooks/audit.yml (check mode) and measures:

- round trips per host, counted by callback_plugins/hvguard_rtt.py (module executions on the
  host; see its docstring for the definition), and the raw commands beside them;
- wall time; the controller's CPU time (user + system of ansible-playbook and every process it
  started: workers, ssh clients, Mitogen's broker) and peak RSS (the largest single process,
  ru_maxrss, and the peak of the whole process tree's RSS, sampled every 0.2 s);
- the hosts' side CPU (sshd's sessions and the modules they ran);
- the sizes of the hvguard report files of the run.

The matrix is hosts x forks x strategy (linear, Mitogen); the scaling ratio is
wall(max hosts) / wall(1 host) per forks and strategy. This machine's guarded configuration
(the host tests' fingerprint) and /etc are hashed before and after every run: the audit must
change nothing.

Run: .venv/bin/python bench/fleet_audit.py [--hosts 1,10,100] [--forks 5,50]
     [--strategy linear,mitogen] [--json bench/fleet-audit.json]   (root; sshd installed)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
SSHD = Path("/usr/sbin/sshd")
sys.path.insert(0, str(ROOT / "tests" / "host"))
from conftest import config_fingerprint  # noqa: E402


def address(i: int) -> str:
    return f"127.0.0.{i + 2}"


def free_port(start: int = 2222) -> int:
    for port in range(start, start + 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.2", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port for sshd")


def etc_digests() -> dict[str, str]:
    """Path -> sha256 of every regular file under /etc (named, so a change can be traced)."""
    found: dict[str, str] = {}
    for path in sorted(Path("/etc").rglob("*")):
        if path.is_file() and not path.is_symlink():
            try:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                continue
    return found


def state() -> dict[str, str]:
    return {**etc_digests(), **config_fingerprint()}


# sshd accepts at most 16 ListenAddress sockets (MAX_LISTEN_SOCKS): a fleet of more addresses
# gets one sshd per 16, same config otherwise. Binding the wildcard instead would expose the
# port beyond loopback.
SOCKS_PER_SSHD = 16


def sshd_config(work: Path, port: int, addresses: list[str], index: int) -> Path:
    lines = [f"Port {port}"] + [f"ListenAddress {a}" for a in addresses]
    lines += [
        f"HostKey {work / 'hostkey'}",
        f"PidFile {work / f'sshd-{index}.pid'}",
        f"AuthorizedKeysFile {work / 'authorized_keys'}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        # 50 forks connect at once: sshd's defaults (10:30:100) would drop some of them.
        "MaxStartups 400:30:800",
        "MaxSessions 200",
        "LogLevel ERROR",
    ]
    path = work / f"sshd-{index}.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_listening(addresses: list[str], port: int, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 20
    for addr in addresses:
        while True:
            try:
                socket.create_connection((addr, port), timeout=1).close()
                break
            except OSError as exc:
                if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                    raise SystemExit(f"sshd did not start listening on {addr}:{port}") from exc
                time.sleep(0.1)


@contextmanager
def sshd(work: Path, hosts: int) -> Iterator[dict[str, Any]]:
    """Private sshd(s) listening on every fleet address; yields the connection settings."""
    if not SSHD.exists():
        raise SystemExit("no /usr/sbin/sshd: apt-get install openssh-server")
    for key in ("hostkey", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / key)],
                       check=True)  # fmt: skip
    shutil.copy(work / "client.pub", work / "authorized_keys")
    port = free_port()
    addresses = [address(i) for i in range(hosts)]
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    procs: list[subprocess.Popen] = []
    try:
        for index in range(0, hosts, SOCKS_PER_SSHD):
            conf = sshd_config(work, port, addresses[index : index + SOCKS_PER_SSHD], index)
            with open(work / f"sshd-{index}.log", "w") as log:
                procs.append(subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(conf)], stderr=log))
        wait_listening(addresses, port, procs)
        yield {"port": port, "key": str(work / "client"), "pids": [p.pid for p in procs]}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def write_inventory(path: Path, hosts: int, conn: dict[str, Any]) -> None:
    lines = ["all:", "  children:", "    hypervisors:", "      hosts:"]
    for i in range(hosts):
        lines += [f"        fleet-{i + 1:03d}:", f"          ansible_host: {address(i)}"]
    lines += [
        "      vars:",
        "        ansible_connection: ssh",
        "        ansible_user: root",
        f"        ansible_port: {conn['port']}",
        f"        ansible_ssh_private_key_file: {conn['key']}",
        "        ansible_python_interpreter: /usr/bin/python3",
    ]
    path.write_text("\n".join(lines) + "\n")


def mitogen_strategy_path() -> str:
    out = subprocess.run(
        [str(BIN / "python"), "-c",
         "import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__)"
         " + '/plugins/strategy')"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def children_cpu(pid: int) -> float:
    """CPU seconds of the children ``pid`` has waited for (cutime + cstime of /proc/pid/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def tree_rss(root: int) -> int:
    """Sum of the RSS (bytes) of ``root`` and all its descendants."""
    kids: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        kids.setdefault(int(stat[1]), []).append(pid)
        rss[pid] = int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += kids.get(pid, [])
    return total


PER_RUN_MAXRSS = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "with open(sys.argv[1], 'w') as out:\n"
    "    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def per_run_maxrss_mib(path: Path) -> float | None:
    """The largest single process of one run (ru_maxrss in KiB), None when it was killed."""
    try:
        return round(int(path.read_text()) / 1024, 1)
    except (OSError, ValueError):
        return None


class Sampler(threading.Thread):
    def __init__(self, pid: int, limit: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.limit, self.peak, self.killed = pid, limit, 0, False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.peak = max(self.peak, tree_rss(self.pid))
            if self.peak > self.limit and not self.killed:
                # A runaway fleet run must not take the shared machine down with it.
                self.killed = True
                os.killpg(self.pid, 9)


def stop_masters(control_dir: Path) -> None:
    """End the run's persistent SSH masters (they hold sshd sessions and their CPU open)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(control_dir).encode() in cmdline and cmdline.startswith(b"ssh"):
            with suppress(ProcessLookupError):
                os.kill(int(entry.name), 15)


def run_audit(
    work: Path, hosts: int, forks: int, strategy: str, conn: dict[str, Any], timeout: int,
    rss_limit: int,
) -> dict[str, Any]:  # fmt: skip
    name = f"h{hosts}-f{forks}-{strategy}"
    run_dir = work / name
    run_dir.mkdir()
    inventory = run_dir / "inventory.yml"
    write_inventory(inventory, hosts, conn)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_CALLBACKS_ENABLED": "hvguard_report,hvguard_rtt",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(run_dir / "cp"),
        "ANSIBLE_LOCAL_TEMP": str(run_dir / "tmp"),
        "HVGUARD_REPORT_DIR": str(run_dir / "reports"),
        "HVGUARD_REPORT_CONSOLE": "false",
        "HVGUARD_RTT_FILE": str(run_dir / "rtt.json"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    if strategy == "mitogen":
        env["ANSIBLE_STRATEGY_PLUGINS"] = mitogen_strategy_path()
        env["ANSIBLE_STRATEGY"] = "mitogen_linear"
    # Through a small parent of its own: the bench's RUSAGE_CHILDREN keeps a high-water mark
    # over every run, the parent's is this run's alone (its own ~10 MiB is in the tree peak).
    maxrss_file = run_dir / "maxrss"
    argv = [sys.executable, "-c", PER_RUN_MAXRSS, str(maxrss_file),
            str(BIN / "ansible-playbook"), "-i", str(inventory), "-f", str(forks),
            "playbooks/audit.yml"]  # fmt: skip
    before = state()
    load_before = [round(x, 2) for x in os.getloadavg()]
    sshd_cpu0 = sum(map(children_cpu, conn["pids"]))
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with open(run_dir / "ansible.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        sampler = Sampler(proc.pid, rss_limit)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            rc = proc.wait()
        sampler.done.set()
        sampler.join()
    wall = time.monotonic() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop_masters(run_dir / "cp")
    time.sleep(1)  # let sshd reap its last sessions
    host_cpu = sum(map(children_cpu, conn["pids"])) - sshd_cpu0
    after = state()
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return {
        "name": name, "hosts": hosts, "forks": forks, "strategy": strategy, "rc": rc,
        "load_average_before": load_before,
        "timed_out": wall >= timeout, "killed_for_rss": sampler.killed,
        "wall_s": round(wall, 2),
        "controller_cpu_s": round(
            (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime), 2),
        "host_side_cpu_s": round(host_cpu, 2),
        "peak_rss_largest_process_mib": per_run_maxrss_mib(maxrss_file),
        "peak_rss_tree_mib": round(sampler.peak / 2**20, 1),
        **round_trips(run_dir / "rtt.json", hosts),
        **reports(run_dir / "reports", hosts),
        "unchanged": not changed,
        "changed_paths": changed,
        "log_tail": "" if rc == 0 else (run_dir / "ansible.log").read_text()[-2000:],
    }  # fmt: skip


def round_trips(path: Path, hosts: int) -> dict[str, Any]:
    if not path.exists():
        return {"round_trips_per_host": None, "counted_hosts": 0}
    counted = json.loads(path.read_text())["hosts"]
    fleet = {h: v for h, v in counted.items() if h.startswith("fleet-")}
    per_host = sorted({v["round_trips"] for v in fleet.values()})
    return {
        "counted_hosts": len(fleet),
        "round_trips_per_host": per_host[0] if len(per_host) == 1 else per_host,
        "tasks_per_host": sorted({v["tasks"] for v in fleet.values()}),
        "results_per_host": sorted({v.get("results", 0) for v in fleet.values()}),
        "commands_per_host": sorted({v["commands"] for v in fleet.values()}),
        "delegated": {h: v["delegated"] for h, v in counted.items() if v["delegated"]},
    }


def reports(path: Path, hosts: int) -> dict[str, Any]:
    sizes = {f.name: f.stat().st_size for f in sorted(path.glob("hvguard-report.*"))}
    statuses: dict[str, int] = {}
    if (path / "hvguard-report.json").exists():
        data = json.loads((path / "hvguard-report.json").read_text())
        for host in data["hosts"].values():
            for control in host["controls"].values():
                statuses[control["status"]] = statuses.get(control["status"], 0) + 1
    return {"report_bytes": sizes, "report_hosts": hosts, "statuses": statuses}


def ratios(runs: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in runs:
        if r["hosts"] == 1:
            continue
        one = [b for b in runs if b["hosts"] == 1 and b["forks"] == r["forks"]
               and b["strategy"] == r["strategy"]]  # fmt: skip
        if one and one[0]["wall_s"]:
            out[f"wall({r['hosts']})/wall(1) f{r['forks']} {r['strategy']}"] = round(
                r["wall_s"] / one[0]["wall_s"], 2
            )
    return out


def table(runs: list[dict[str, Any]]) -> str:
    head = ("hosts", "forks", "strategy", "rc", "rt/host", "cmd/host", "wall s", "ctl CPU s",
            "host CPU s", "RSS max MiB", "RSS tree MiB", "JSON KiB", "all KiB",
            "unchanged")  # fmt: skip
    rows = [head]
    for r in runs:
        size = r["report_bytes"]
        rows.append((
            str(r["hosts"]), str(r["forks"]), r["strategy"], str(r["rc"]),
            str(r["round_trips_per_host"]), str(r["commands_per_host"]), str(r["wall_s"]),
            str(r["controller_cpu_s"]), str(r["host_side_cpu_s"]),
            str(r["peak_rss_largest_process_mib"]), str(r["peak_rss_tree_mib"]),
            f"{size.get('hvguard-report.json', 0) / 1024:.1f}",
            f"{sum(size.values()) / 1024:.1f}", str(r["unchanged"]),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(lines)


def write_json(path: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    result = {"definition": "see callback_plugins/hvguard_rtt.py", "load_average": os.getloadavg(),
              "runs": runs, "scaling": ratios(runs)}  # fmt: skip
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=ints, default=[1, 10, 100])
    parser.add_argument("--forks", type=ints, default=[5, 50])
    parser.add_argument("--strategy", type=lambda s: s.split(","), default=["linear", "mitogen"])
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "fleet-audit.json")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    parser.add_argument("--rss-limit-gib", type=float, default=8.0,
                        help="kill a run whose process tree exceeds this")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the audit reads root-only state and sshd logs in as root")
    bad = [s for s in args.strategy if s not in ("linear", "mitogen")]
    if bad or max(args.hosts) > 250:
        raise SystemExit(f"bad --strategy {bad} or more than 250 hosts")
    work = Path(tempfile.mkdtemp(prefix="hvguard-fleet-"))
    runs: list[dict[str, Any]] = []
    try:
        with sshd(work, max(args.hosts)) as conn:
            for strategy in args.strategy:
                for forks in args.forks:
                    for hosts in args.hosts:
                        run = run_audit(work, hosts, forks, strategy, conn, args.timeout,
                                        int(args.rss_limit_gib * 2**30))  # fmt: skip
                        runs.append(run)
                        write_json(args.json, runs)  # an interrupted matrix keeps its runs
                        print(f"{run['name']}: rc={run['rc']} wall={run['wall_s']} s "
                              f"rt/host={run['round_trips_per_host']}", flush=True)  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(table(runs))
    for key, value in write_json(args.json, runs)["scaling"].items():
        print(f"{key} = {value}")
    failed = [r["name"] for r in runs if r["rc"] != 0 or not r["unchanged"]]
    if failed:
        print(f"runs that failed or changed this machine: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
