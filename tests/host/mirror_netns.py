# SPDX-License-Identifier: Apache-2.0
"""Network-namespace lab for the mirror tests and bench (issue 11): no VM, real kernel paths.

Topology (one set of namespaces per lab, names unique per run):

    vm-a eth0 10.77.0.1 ─ vnetA ┐
    vm-b eth0 10.77.0.2 ─ vnetB ├ br0  (namespace "hv": the hypervisor)
    vm-c eth0 10.77.0.3 ─ vnetC ┤
    out  eth0 10.77.0.9 ─ uplink┘
    sensor mon ─────────── hvgmon0 (monitor port of hv, not on the bridge)

The hook runs in "hv" exactly as libvirt would run it (argv, XML on stdin). Run as a script
inside a namespace it is also the traffic tool: ``send``, ``recv`` and ``capture``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "roles" / "hvguard_mirror" / "files" / "hvguard-mirror-hook"
GATE = ROOT / "roles" / "hvguard_mirror" / "templates" / "hvguard-mirror-gate.nft.j2"
VMS = {"a": "10.77.0.1", "b": "10.77.0.2", "c": "10.77.0.3"}
OUT_IP = "10.77.0.9"
PORT = 7777
ETH_P_ALL = 0x0003


def sh(
    *argv: str, stdin: str | bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    text = not isinstance(stdin, bytes)
    proc = subprocess.run(
        argv, input=stdin, capture_output=True, text=text, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{argv}: rc={proc.returncode} {proc.stderr!r}")
    return proc


class Lab:
    def __init__(self, tmp: Path, macs: dict[str, str] | None = None) -> None:
        tag = uuidlib.uuid4().hex[:6]
        self.tmp = tmp
        self.ns = {k: f"hvgm-{tag}-{k}" for k in ("hv", "a", "b", "c", "out", "sensor")}
        self.macs = macs or {k: f"52:54:00:77:00:0{i + 1}" for i, k in enumerate(VMS)}
        self.conf = tmp / "mirror.json"
        self.procs: list[subprocess.Popen] = []

    # -- set-up / tear-down ------------------------------------------------------------------
    def up(self, conf: dict[str, Any] | None = None) -> Lab:
        for name in self.ns.values():
            sh("ip", "netns", "add", name)
        hv = self.ns["hv"]
        self.ip("hv", "link", "add", "br0", "type", "bridge")
        self.ip("hv", "link", "set", "br0", "up")
        ends = [(k, f"vnet{k.upper()}", VMS[k]) for k in VMS] + [("out", "uplink", OUT_IP)]
        for ns, port, addr in ends:
            self.ip("hv", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
                    self.ns[ns])  # fmt: skip
            self.ip("hv", "link", "set", port, "master", "br0", "up")
            if ns in self.macs:
                self.ip(ns, "link", "set", "eth0", "address", self.macs[ns])
            self.ip(ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            self.ip(ns, "link", "set", "eth0", "up")
            self.ip(ns, "link", "set", "lo", "up")
        self.ip("hv", "link", "add", "hvgmon0", "type", "veth", "peer", "name", "mon", "netns",
                self.ns["sensor"])  # fmt: skip
        self.ip("hv", "link", "set", "hvgmon0", "up")
        self.ip("sensor", "link", "set", "mon", "up")
        # Only our UDP test traffic matters; IPv6 autoconf chatter stays out of the way.
        for ns in self.ns.values():
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        assert hv
        self.write_conf(conf or {})
        return self

    def write_conf(self, extra: dict[str, Any]) -> None:
        conf = {
            "monitor": "hvgmon0",
            "state_dir": str(self.tmp / "state"),
            "log": str(self.tmp / "hook.log"),
            **extra,
        }
        self.conf.write_text(json.dumps(conf))

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for name in self.ns.values():
            sh("ip", "netns", "delete", name, check=False)

    # -- helpers -----------------------------------------------------------------------------
    def ip(self, ns: str, *args: str) -> None:
        sh("ip", "-n", self.ns[ns], *args)

    def nft(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return sh(
            "ip", "netns", "exec", self.ns["hv"], "nft", *args, stdin=stdin, check=check
        ).stdout

    def ruleset(self) -> str:
        """Stateless (-s): counters moved by stray frames do not make two listings differ."""
        return self.nft("-s", "list", "ruleset")

    def load_gate(self, fail_open: bool = False, patterns: tuple[str, ...] = ("vnet*",)) -> None:
        import jinja2

        text = jinja2.Template(GATE.read_text(), keep_trailing_newline=True).render(
            ansible_managed="test",
            hvguard_mirror_vm_port_patterns=list(patterns),
            hvguard_mirror_fail_open=fail_open,
            __hvguard_mirror_gate_table="hvguard_mirror_gate",
            __hvguard_mirror_gate_set="mirrored",
        )
        path = self.tmp / "gate.nft"
        path.write_text(text)
        self.nft("-f", str(path))

    def domain_xml(self, vm: str, name: str | None = None, uuid: str | None = None,
                   tap: str | None = None) -> str:  # fmt: skip
        from xml.sax.saxutils import escape, quoteattr

        uuid = uuid or str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"hvgm-{vm}"))
        tap = tap if tap is not None else f"vnet{vm.upper()}"
        return (
            f"<domain type='kvm'><name>{escape(name or 'vm-' + vm)}</name><uuid>{uuid}</uuid>"
            "<devices><interface type='bridge'>"
            f"<mac address='{self.macs[vm]}'/><source bridge='br0'/>"
            f"<target dev={quoteattr(tap)}/><model type='virtio'/>"
            "</interface></devices></domain>"
        )

    def hook(
        self, domain: str, op: str, sub: str, xml: str | bytes, direct: bool = False
    ) -> subprocess.CompletedProcess:
        """Run the hook as libvirt does; ``direct`` execs it through its own #! line."""
        env = ["env", f"HVGUARD_MIRROR_CONF={self.conf}"]
        interpreter = [] if direct else [sys.executable]
        argv = ["ip", "netns", "exec", self.ns["hv"], *env, *interpreter, str(HOOK)]
        argv += [domain, op, sub, "-"]
        return sh(*argv, stdin=xml if isinstance(xml, bytes) else xml.encode(), check=False)

    def start_domain(self, vm: str, **kw: Any) -> subprocess.CompletedProcess:
        xml = self.domain_xml(vm, **kw)
        for op in ("prepare", "start"):
            proc = self.hook(kw.get("name") or f"vm-{vm}", op, "begin", xml)
            if proc.returncode != 0:
                return proc
        return proc

    def tool(self, ns: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[ns], sys.executable, __file__, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready" once the socket is bound
        if line.strip() != "ready":
            raise RuntimeError(f"{args}: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        return proc

    @staticmethod
    def finish(proc: subprocess.Popen) -> dict[str, Any]:
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1])

    def send(self, ns: str, dst: str, marker: str, count: int, size: int = 64,
             rate_pps: int = 0) -> dict[str, Any]:  # fmt: skip
        argv = [sys.executable, __file__, "send", dst, marker, str(count), str(size), str(rate_pps)]
        return json.loads(sh("ip", "netns", "exec", self.ns[ns], *argv).stdout.strip())

    def traffic(self, src: str, dst_ip: str, marker: str, count: int) -> dict[str, Any]:
        """Send ``count`` datagrams; what the sensor captured and the receiver got."""
        dst_ns = next((k for k, v in VMS.items() if v == dst_ip), "out")
        cap = self.tool("sensor", "capture", "mon", marker)
        rcv = self.tool(dst_ns, "recv", marker)
        self.send(src, dst_ip, marker, count)
        time.sleep(0.3)  # let the last copies drain (not an assertion on time)
        return {"captured": self.finish(cap), "received": self.finish(rcv)}


# -- the traffic tool (runs inside one namespace) ---------------------------------------------
_stop = False


def _on_term(_sig: int, _frame: object) -> None:
    global _stop
    _stop = True


def _loop(sock: socket.socket, marker: bytes, seen: dict[str, int], raw: bool) -> None:
    sock.settimeout(0.05)
    while not _stop:
        try:
            data = sock.recv(70000)
        except (TimeoutError, InterruptedError):
            continue
        at = data.find(marker)
        if at < 0:
            continue
        seq = data[at + len(marker) : at + len(marker) + 8].decode(errors="replace")
        seen[seq] = seen.get(seq, 0) + 1
        seen["_bytes"] = seen.get("_bytes", 0) + (len(data) if raw else len(data) + 42)


def tool_main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _on_term)
    what = argv[0]
    if what == "send":
        dst, marker, count, size, rate = argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5])
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pad = b"x" * max(0, size - len(marker) - 8)
        gap = 1.0 / rate if rate else 0.0
        t0 = time.monotonic()
        for i in range(count):
            if gap:
                while time.monotonic() < t0 + i * gap:
                    pass
            while True:
                try:
                    sock.sendto(marker.encode() + f"{i:08d}".encode() + pad, (dst, PORT))
                    break
                except BlockingIOError:
                    continue
        print(json.dumps({"sent": count, "seconds": time.monotonic() - t0}))
        return 0
    seen: dict[str, int] = {}
    if what == "capture":
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        sock.bind((argv[1], 0))
        marker = argv[2]
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        sock.bind(("0.0.0.0", PORT))
        marker = argv[1]
    print("ready", flush=True)
    _loop(sock, marker.encode(), seen, what == "capture")
    drops = None
    if what == "capture":
        # PACKET_STATISTICS: tp_packets, tp_drops (the sensor's own ring drops).
        stats = sock.getsockopt(263, 6, 8)
        drops = int.from_bytes(stats[4:8], "little")
    total_bytes = seen.pop("_bytes", 0)
    print(json.dumps({"seen": seen, "bytes": total_bytes, "socket_drops": drops}), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(tool_main(sys.argv[1:]))
