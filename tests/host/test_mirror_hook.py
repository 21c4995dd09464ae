# SPDX-License-Identifier: Apache-2.0
"""HVG-NET-001/002 (issue 11): the real libvirt hook, run as libvirt runs it, in namespaces.

veth "VM ports" on a Linux bridge in a hypervisor namespace, the monitor port's peer in a
sensor namespace where a raw AF_PACKET socket counts the copies (tests/host/mirror_netns.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from mirror_netns import OUT_IP, VMS, Lab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, nft and ip (network namespaces)",
)
N = 50


def exactly_once(result: dict, count: int) -> None:
    want = {f"{i:08d}": 1 for i in range(count)}
    assert result["received"]["seen"] == want, "the traffic itself did not pass"
    assert result["captured"]["seen"] == want, "sensor copies are not exactly one per packet"


@pytest.mark.control("HVG-NET-001", effect=True)
def test_every_packet_is_copied_exactly_once_per_direction(lab: Lab) -> None:
    """HVG-NET-001: VM->VM, outside->VM and VM->outside: each of N packets reaches the sensor
    once (VM->VM passes two mirrored taps: the mark keeps the second copy out)."""
    for vm in ("a", "b"):
        assert lab.start_domain(vm).returncode == 0
    exactly_once(lab.traffic("a", VMS["b"], "AB-", N), N)
    exactly_once(lab.traffic("out", VMS["b"], "OB-", N), N)
    exactly_once(lab.traffic("b", OUT_IP, "BO-", N), N)


@pytest.mark.control("HVG-NET-001")
def test_mark_is_configurable_and_used(lab: Lab) -> None:
    lab.write_conf({"mark": 0x40})
    assert lab.start_domain("a").returncode == 0
    rules = lab.ruleset()
    assert "meta mark | 0x00000040" in rules and "meta mark & 0x00000040 == 0x00000040" in rules


@pytest.mark.control("HVG-NET-001", effect=True)
def test_the_map_names_each_mac_with_its_domain(lab: Lab) -> None:
    """HVG-NET-001: the sensor can attribute every copy: MAC -> (UUID, domain, port)."""
    assert lab.start_domain("a", name="tenant-a").returncode == 0
    state = json.loads((lab.tmp / "state" / "ports.json").read_text())
    entry = state["macs"][lab.macs["a"]]
    assert (entry["domain"], entry["port"], entry["bridge"]) == ("tenant-a", "vnetA", "br0")
    assert entry["uuid"] == state["ports"]["vnetA"]["uuid"]


@pytest.mark.control("HVG-NET-001")
def test_release_removes_exactly_that_domains_rules(lab: Lab) -> None:
    """HVG-NET-001: release of A removes A's table, set element and map entry; B stays.
    A stale release naming a tap that B owns now (libvirt reuses vnetN) leaves B alone."""
    for vm in ("a", "b"):
        assert lab.start_domain(vm).returncode == 0
    before = lab.ruleset()
    assert lab.hook("vm-a", "stopped", "end", lab.domain_xml("a")).returncode == 0
    assert lab.hook("vm-a", "release", "end", lab.domain_xml("a")).returncode == 0
    after = lab.ruleset()
    assert "hvgm_vnetA" not in after and '"vnetA"' not in after
    b_table = before[before.index("table netdev hvgm_vnetB") :].split("\n}\n")[0]
    assert b_table in after and '"vnetB"' in after
    state = json.loads((lab.tmp / "state" / "ports.json").read_text())
    assert set(state["ports"]) == {"vnetB"}
    # An old domain whose XML still names vnetB (B owns it now) is released: B keeps it.
    stale = lab.domain_xml("a", uuid="00000000-0000-4000-8000-00000000000a", tap="vnetB")
    assert lab.hook("old", "release", "end", stale).returncode == 0
    assert b_table in lab.ruleset()
    exactly_once(lab.traffic("out", VMS["b"], "RB-", 10), 10)


@pytest.mark.control("HVG-NET-002", effect=True)
def test_gate_drops_an_unmirrored_port_and_passes_it_once_mirrored(lab: Lab) -> None:
    """HVG-NET-002: with the gate loaded, C (no mirror) reaches nobody and nothing from it is
    seen; after its start hook its packets pass and are mirrored exactly once."""
    lab.load_gate()
    assert lab.start_domain("b").returncode == 0
    # Static neighbours: one-way traffic needs no ARP answer, so each direction of the gate
    # (prerouting: from the port, postrouting: to the port) is tested on its own.
    lab.ip("c", "neigh", "replace", VMS["b"], "lladdr", lab.macs["b"], "dev", "eth0")
    lab.ip("out", "neigh", "replace", VMS["c"], "lladdr", lab.macs["c"], "dev", "eth0")
    dark = lab.traffic("c", VMS["b"], "CB-", 20)
    assert dark["received"]["seen"] == {} and dark["captured"]["seen"] == {}
    dark_in = lab.traffic("out", VMS["c"], "OC-", 20)
    assert dark_in["received"]["seen"] == {}
    assert lab.start_domain("c").returncode == 0
    exactly_once(lab.traffic("c", VMS["b"], "CB2-", 20), 20)
    exactly_once(lab.traffic("out", VMS["c"], "OC2-", 20), 20)


@pytest.mark.control("HVG-NET-002")
def test_gate_reload_keeps_the_mirrored_set(lab: Lab) -> None:
    lab.load_gate()
    assert lab.start_domain("b").returncode == 0
    lab.load_gate()  # the boot unit or the handler loads the file again
    exactly_once(lab.traffic("out", VMS["b"], "KB-", 10), 10)


@pytest.mark.control("HVG-NET-002")
def test_fail_open_gate_passes_unmirrored_ports(lab: Lab) -> None:
    lab.load_gate(fail_open=True)
    passed = lab.traffic("c", VMS["b"], "FO-", 10)
    assert len(passed["received"]["seen"]) == 10 and passed["captured"]["seen"] == {}
    assert "fail-open" in lab.ruleset()


@pytest.mark.control("HVG-NET-001")
def test_a_missing_monitor_refuses_the_start_fail_closed(lab: Lab) -> None:
    lab.write_conf({"monitor": "nomon0"})
    proc = lab.start_domain("a")
    assert proc.returncode == 1 and b"nft refused" in proc.stderr
    assert "hvgm_vnetA" not in lab.ruleset()
    lab.write_conf({"monitor": "nomon0", "fail_open": True})
    assert lab.start_domain("a").returncode == 0


@pytest.mark.control("HVG-NET-001")
def test_the_hook_prints_nothing_on_stdout(lab: Lab) -> None:
    """For migrate/restore libvirt reads stdout as the new domain XML: it must stay empty.
    prepare and started do nothing (and change nothing) but drain stdin."""
    for op in ("prepare", "migrate", "restore", "start", "started", "reconnect", "release"):
        proc = lab.hook("vm-a", op, "begin", lab.domain_xml("a"))
        assert (proc.returncode, proc.stdout) == (0, b""), (op, proc.stderr)
        if op == "prepare":
            assert "hvgm_vnetA" not in lab.ruleset()
    big = lab.domain_xml("a").replace("</devices>", "<!--" + "x" * 8_000_000 + "--></devices>")
    for op in ("prepare", "started", "no-such-op"):
        assert lab.hook("vm-a", op, "begin", big).returncode == 0


@pytest.mark.control("HVG-NET-001")
def test_the_hook_runs_on_the_system_python_with_the_stdlib_only(lab: Lab) -> None:
    """Exec'd through its own #! line (/usr/bin/python3 -IS: no site-packages, no PYTHON*
    variables), as libvirt runs it on a hypervisor."""
    assert Path("/usr/bin/python3").exists()
    for op in ("prepare", "start", "started"):
        proc = lab.hook("vm-a", op, "begin", lab.domain_xml("a"), direct=True)
        assert proc.returncode == 0, proc.stderr
    assert "hvgm_vnetA" in lab.ruleset()
