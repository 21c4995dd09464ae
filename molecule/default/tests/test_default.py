# SPDX-License-Identifier: Apache-2.0
"""Effects of the memory controls on a converged lab hypervisor (molecule `default`).

Each test asserts what the control is for on the running VM, not what a task returned.
"""

import json
import os
from pathlib import Path
from typing import Any

import pytest
import testinfra.utils.ansible_runner
from testinfra.host import Host

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("hypervisors")

MEMORY_CONTROLS = ["HVG-MEM-001", "HVG-MEM-002", "HVG-MEM-003", "HVG-MEM-004"]


def _report(label: str) -> dict[str, Any]:
    path = (
        Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports" / label / "hvguard-report.json"
    )
    assert path.is_file(), f"{path} missing: did the {label} audit step run?"
    return json.loads(path.read_text())


def test_init_on_free_in_running_kernel(host: Host) -> None:
    """HVG-MEM-001: the running kernel zeroes freed pages (the VM was rebooted through GRUB)."""
    cmdline = host.file("/proc/cmdline").content_string.split()
    assert "init_on_free=1" in cmdline
    # the kernel reports the setting it actually uses, not just the argument it was given
    dmesg = host.run("dmesg | grep -i 'mem auto-init'")
    assert "free:on" in dmesg.stdout.replace(" ", ""), dmesg.stdout


def test_ksm_off(host: Host) -> None:
    """HVG-MEM-002: no page merging between VMs."""
    assert host.file("/sys/kernel/mm/ksm/run").content_string.strip() == "0"


def test_qemu_never_dumps_guest_memory(host: Host) -> None:
    """HVG-MEM-003: qemu.conf excludes guest RAM from core dumps and libvirt accepted it."""
    lines = host.file("/etc/libvirt/qemu.conf").content_string.splitlines()
    active = [
        line.split("=", 1)[1].strip()
        for line in lines
        if line.split("=")[0].strip() == "dump_guest_core"
    ]
    assert active == ["0"], active
    # a connection starts socket-activated libvirtd: it must come up with this config
    assert host.run("virsh -c qemu:///system list --all").rc == 0
    assert host.service("libvirtd").is_running


PLAIN_SWAP = "/var/lib/hvguard-swaptest/plain.swap"  # molecule/default/swap.sh


def _swap_evidence(host: Host, label: str) -> list[dict[str, Any]]:
    """The swap devices HVG-MEM-004 judged in the ``label`` audit (its finding's evidence)."""
    control = _report(label)["hosts"][host.backend.get_hostname()]["controls"]["HVG-MEM-004"]
    return [
        swap
        for entry in control["evidence"]
        if isinstance(entry.get("evidence"), list)
        for swap in entry["evidence"]
    ]


@pytest.mark.control("HVG-MEM-004", effect=True)
def test_hvg_mem_004_swap_in_use_is_zram_or_dm_crypt(host: Host) -> None:
    """HVG-MEM-004: guest memory paged to swap must not land on disk in the clear.

    The scenario leaves a zram device and a dm-crypt mapping as swap (swap.sh protected), so
    this checks real devices: each is zram or sits on a CRYPT- mapping, and the plain swap
    file of the pristine audit is gone."""
    swaps = host.run("swapon --show=NAME --noheadings --raw").stdout.split()
    kinds = set()
    for dev in swaps:
        real = host.run(f"readlink -f {dev}").stdout.strip()
        name = os.path.basename(real)
        if name.startswith("zram"):
            kinds.add("zram")  # compressed RAM, never on disk
            continue
        uuid = host.file(f"/sys/block/{name}/dm/uuid").content_string
        assert uuid.startswith("CRYPT-PLAIN-"), f"swap {dev} ({real}) is neither zram nor dm-crypt"
        kinds.add("dm-crypt")
    assert kinds == {"zram", "dm-crypt"}, swaps
    assert not host.file(PLAIN_SWAP).exists


@pytest.mark.control("HVG-MEM-004", effect=True)
def test_hvg_mem_004_audit_judged_each_swap(host: Host) -> None:
    """HVG-MEM-004: the pristine audit named the plain swap file as drift; the compliant one
    saw zram and dm-crypt swap and nothing plain."""
    pristine = _swap_evidence(host, "pristine")
    assert [(s["name"], s["type"], s["encrypted"], s["backing"]) for s in pristine] == [
        (PLAIN_SWAP, "file", False, "plain")
    ]
    compliant = _swap_evidence(host, "compliant")
    assert sorted(s["backing"] for s in compliant) == ["dm-crypt", "zram"], compliant
    assert all(s["backing"] != "plain" for s in compliant)


ALL_COMPLIANT = dict.fromkeys(MEMORY_CONTROLS, "compliant")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("pristine", dict.fromkeys(MEMORY_CONTROLS, "drift")),
        ("compliant", ALL_COMPLIANT),
    ],
)
def test_report_statuses(host: Host, label: str, expected: dict[str, str]) -> None:
    """The audit before converge found drift on every memory control, after it none."""
    controls = _report(label)["hosts"][host.backend.get_hostname()]["controls"]
    statuses = {cid: controls.get(cid, {}).get("status", "missing") for cid in MEMORY_CONTROLS}
    assert statuses == expected
