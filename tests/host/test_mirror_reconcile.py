# SPDX-License-Identifier: Apache-2.0
"""HVG-NET-001/002/003 (issue 11): the reconciler module against real nft state in namespaces.

The module (library/hvguard_mirror.py) runs inside the lab's hypervisor namespace as Ansible
would run it (an args file), with the domain list in the shape hvguard_facts returns.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest
from mirror_netns import HOOK, ROOT, VMS, Lab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, nft and ip (network namespaces)",
)
MODULE = ROOT / "library" / "hvguard_mirror.py"


def facts(lab: Lab, vms: str = "ab", **extra_iface: Any) -> list[dict[str, Any]]:
    import uuid as uuidlib

    out = []
    for vm in vms:
        iface = {"type": "bridge", "source": "br0", "bridge": "br0", "model": "virtio"}
        iface.update(target_dev=f"vnet{vm.upper()}", mac=lab.macs[vm], **extra_iface)
        uuid = str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"hvgm-{vm}"))
        out.append({"name": f"vm-{vm}", "uuid": uuid, "state": "running", "interfaces": [iface]})
    return out


def run(lab: Lab, check: str, domains: list, check_mode: bool, **params: Any) -> dict[str, Any]:
    args = {
        "check": check, "domains": domains, "monitor": "hvgmon0", "mark": 0x00100000,
        "hook": str(HOOK), "hook_conf": str(lab.conf), "nft": shutil.which("nft"),
        "_ansible_check_mode": check_mode, "_ansible_diff": True, **params,
    }  # fmt: skip
    path = lab.tmp / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    argv = ["ip", "netns", "exec", lab.ns["hv"], sys.executable, str(MODULE), str(path)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return json.loads(proc.stdout)


@pytest.mark.control("HVG-NET-001", effect=True)
def test_check_mode_reports_a_mirror_removed_by_hand(lab: Lab) -> None:
    """HVG-NET-001: after an admin deletes B's mirror, the audit names B's port, domain, UUID
    and MAC, changes nothing; apply puts it back and B's packets are copied exactly once."""
    for vm in "ab":
        assert lab.start_domain(vm).returncode == 0
    assert run(lab, "mirror", facts(lab), check_mode=True)["changed"] is False
    lab.nft("delete", "table", "netdev", "hvgm_vnetB")
    before = lab.ruleset()
    audit = run(lab, "mirror", facts(lab), check_mode=True)
    assert audit["changed"] is True and lab.ruleset() == before
    (drift,) = audit["drift"]
    dom_b = facts(lab)[1]
    assert drift == {"port": "vnetB", "domain": "vm-b", "uuid": dom_b["uuid"],
                     "mac": lab.macs["b"], "type": "bridge", "bridge": "br0",
                     "problem": "no mirror"}  # fmt: skip
    assert audit["diff"]["before"] == "vnetA\n" and audit["diff"]["after"] == "vnetA\nvnetB\n"
    healed = run(lab, "mirror", facts(lab), check_mode=False)
    assert healed["changed"] is True and "failed" not in healed, healed
    assert run(lab, "mirror", facts(lab), check_mode=True)["changed"] is False
    got = lab.traffic("out", VMS["b"], "HB-", 20)
    assert got["captured"]["seen"] == {f"{i:08d}": 1 for i in range(20)}


@pytest.mark.control("HVG-NET-001")
def test_tampered_rules_and_stale_tables_are_drift(lab: Lab) -> None:
    assert lab.start_domain("a").returncode == 0
    lab.nft("flush", "chain", "netdev", "hvgm_vnetA", "egress")  # egress copies gone
    lab.nft("add", "table", "netdev", "hvgm_vnetZ")  # a table no running domain owns
    audit = run(lab, "mirror", facts(lab, "a"), check_mode=True)
    problems = sorted(d["problem"] for d in audit["drift"])
    assert problems == ["mirror egress rules differ (monitor hvgmon0, mark 0x100000)",
                        "stale mirror"]  # fmt: skip
    assert run(lab, "mirror", facts(lab, "a"), check_mode=False)["changed"] is True
    assert "hvgm_vnetZ" not in lab.ruleset()
    assert run(lab, "mirror", facts(lab, "a"), check_mode=True)["changed"] is False


@pytest.mark.control("HVG-NET-002", effect=True)
def test_gate_set_drift_is_reported_and_healed(lab: Lab) -> None:
    """HVG-NET-002: a running port missing from the gate set (its traffic is dark) and a name
    in it that no running domain owns (a future port of that name would pass unmirrored)."""
    lab.load_gate()
    assert lab.start_domain("a").returncode == 0
    lab.nft("delete", "element", "bridge", "hvguard_mirror_gate", "mirrored", '{ "vnetA" }')
    lab.nft("add", "element", "bridge", "hvguard_mirror_gate", "mirrored", '{ "vnetC" }')
    audit = run(lab, "gate", facts(lab, "a"), check_mode=True)
    assert [(d["port"], d["problem"]) for d in audit["drift"]] == [
        ("vnetA", "not in the gate set"),
        ("vnetC", "in the gate set, no running domain owns it"),
    ]
    assert audit["drift"][0]["mac"] == lab.macs["a"] and audit["unhealable"] == []
    assert run(lab, "gate", facts(lab, "a"), check_mode=False)["changed"] is True
    assert run(lab, "gate", facts(lab, "a"), check_mode=True)["changed"] is False
    assert lab.traffic("c", VMS["a"], "GC-", 5)["received"]["seen"] == {}


@pytest.mark.control("HVG-NET-002")
def test_a_missing_or_open_gate_is_drift(lab: Lab) -> None:
    assert lab.start_domain("a").returncode == 0  # the hook creates the set, not the chains
    audit = run(lab, "gate", facts(lab, "a"), check_mode=True)
    assert audit["hvguard_status"] == "drift" and "does not drop" in audit["msg"]
    lab.load_gate(fail_open=True)
    audit = run(lab, "gate", facts(lab, "a"), check_mode=True, fail_open=True)
    assert audit["hvguard_status"] == "drift" and "fail-open by choice" in audit["msg"]
    lab.load_gate()
    assert "hvguard_status" not in run(lab, "gate", facts(lab, "a"), check_mode=True)


@pytest.mark.control("HVG-NET-001")
def test_libvirt_not_answering_fails_closed(lab: Lab) -> None:
    assert lab.start_domain("a").returncode == 0
    before = lab.ruleset()
    result = run(lab, "mirror", [], check_mode=False, libvirt_error="connection refused")
    assert result["failed"] is True and "nothing checked or changed" in result["msg"]
    assert lab.ruleset() == before  # an empty domain list did not clean every mirror away


@pytest.mark.control("HVG-NET-001")
def test_an_interface_without_host_device_stays_drift(lab: Lab) -> None:
    audit = run(lab, "mirror", facts(lab, "a", type="vhostuser"), check_mode=True)
    assert audit["hvguard_status"] == "drift" and "no host device" in audit["msg"]


@pytest.mark.control("HVG-NET-003")
def test_a_fresh_kernel_is_dark_until_the_reconnect_hook(lab: Lab) -> None:
    """Boot replay: the gate file alone (the boot unit's command) blocks VM ports before any
    hook ran; libvirt's reconnect hook then restores the mirror and the traffic passes."""
    lab.load_gate()
    # A static neighbour: the dark phase must not leave a failed ARP entry behind.
    lab.ip("out", "neigh", "replace", VMS["a"], "lladdr", lab.macs["a"], "dev", "eth0")
    assert lab.traffic("out", VMS["a"], "BA-", 5)["received"]["seen"] == {}
    proc = lab.hook("vm-a", "reconnect", "begin", lab.domain_xml("a"))
    assert proc.returncode == 0
    got = lab.traffic("out", VMS["a"], "BA2-", 5)
    assert len(got["received"]["seen"]) == 5 and len(got["captured"]["seen"]) == 5
