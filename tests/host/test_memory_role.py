# SPDX-License-Identifier: Apache-2.0
"""hvguard_memory converged on this machine against a sandbox.

The role's facts are injected (a grub-booted Debian hypervisor with KSM running) and its
OS paths are pointed into a temporary tree, so the real role logic runs end to end through
Ansible without touching this machine: audit (drift, nothing written) -> converge (fixed) ->
converge again (zero changed) -> audit after the simulated reboot (compliant).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import other_roles_off

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
OTHER_ROLES_OFF = other_roles_off("hvguard_memory")
QEMU_CONF = """# Master configuration file for the QEMU driver.
#user = "libvirt-qemu"
#dump_guest_core = 1
security_driver = "apparmor"
"""


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "reports" not in path.parts:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def facts(cmdline: str) -> dict[str, Any]:
    return {
        "os": {"family": "Debian", "distribution": "Debian", "version": "12",
               "pkg_mgr": "apt", "init": "other"},
        "kernel": {"release": "6.1.0", "cmdline": cmdline, "params": {}},
        "boot": {"loader": "grub", "grub_dropin_dir": "/etc/default/grub.d",
                 "update_cmd": "update-grub"},
        "memory": {"ksm": {"present": True, "run": 1, "pages_shared": 0},
                   "ksmtuned": {"installed": False}, "swap": []},
        "libvirt": {"present": True, "running": False, "daemon_mode": "monolithic",
                    "version": "9.0.0", "domains": [], "pools": [], "units": {}},
        "qemu": {"present": True, "version": "7.2.0", "binaries": []},
        "network": {"bridges": [], "ovs": {"present": False, "bridges": []}},
        "lvm": {"present": False, "conf": None},
    }  # fmt: skip


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / "etc" / "libvirt").mkdir(parents=True)
    (tmp_path / "etc" / "libvirt" / "qemu.conf").write_text(QEMU_CONF)
    (tmp_path / "etc" / "grub.d").mkdir()
    (tmp_path / "etc" / "tmpfiles.d").mkdir()
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "ksm_run").write_text("1\n")
    return tmp_path


def run(
    playbook: str,
    sandbox: Path,
    cmdline: str,
    *,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    wrapper: list[str] | None = None,
    expect_ok: bool = True,
) -> tuple[str, dict[str, Any]]:
    extra = {
        "hvguard": facts(cmdline),
        "__hvguard_memory_boot_dropin": str(sandbox / "etc/grub.d/90-hvguard-memory.cfg"),
        "__hvguard_memory_boot_update_cmd": ["touch", str(sandbox / "bootloader-updated")],
        "__hvguard_memory_tmpfiles_dir": str(sandbox / "etc/tmpfiles.d"),
        "__hvguard_memory_qemu_conf": str(sandbox / "etc/libvirt/qemu.conf"),
        "__hvguard_memory_ksm_run": str(sandbox / "sys/ksm_run"),
        "__hvguard_common_virsh": "false",
        # site.yml applies every role: keep the others' controls off this machine.
        **OTHER_ROLES_OFF,
        **(overrides or {}),
    }
    varfile = sandbox / "extra.json"
    varfile.write_text(json.dumps(extra))
    reports = sandbox / "reports"
    full_env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "HVGUARD_REPORT_DIR": str(reports),
        "ANSIBLE_NOCOLOR": "1",
        **(env or {}),
    }
    proc = subprocess.run(
        [*(wrapper or []), str(BIN / "ansible-playbook"), f"playbooks/{playbook}",
         "-e", f"@{varfile}", "-e", "hvguard_target=hypervisors"],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == expect_ok, out[-4000:]
    report = json.loads((reports / "hvguard-report.json").read_text())
    return out, report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    controls = report["hosts"]["localhost"]["controls"]
    return {cid: c["status"] for cid, c in controls.items() if cid.startswith("HVG-MEM")}


def test_audit_converge_idempotence_audit(sandbox: Path) -> None:
    plain = "BOOT_IMAGE=/vmlinuz root=/dev/vda ro quiet"
    before = tree_hash(sandbox)
    _, report = run("audit.yml", sandbox, plain)
    assert statuses(report) == {
        "HVG-MEM-001": "drift", "HVG-MEM-002": "drift",
        "HVG-MEM-003": "drift", "HVG-MEM-004": "compliant",
    }  # fmt: skip
    (sandbox / "extra.json").unlink()
    assert tree_hash(sandbox) == before, "the audit changed the target"

    out, report = run("site.yml", sandbox, plain)
    assert (sandbox / "bootloader-updated").exists(), "bootloader config not regenerated"
    dropin = (sandbox / "etc/grub.d/90-hvguard-memory.cfg").read_text()
    assert 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX init_on_free=1"' in dropin
    assert (sandbox / "sys/ksm_run").read_text().strip() == "2"
    assert "\ndump_guest_core = 0\n" in (sandbox / "etc/libvirt/qemu.conf").read_text()
    assert (
        "w /sys/kernel/mm/ksm/run - - - - 0"
        in (sandbox / "etc/tmpfiles.d/hvguard-ksm.conf").read_text()
    )
    assert report["hosts"]["localhost"]["reboot_required"] is True
    # The running kernel still lacks the argument: reported, not hidden.
    assert statuses(report)["HVG-MEM-001"] == "drift"

    out, report = run("site.yml", sandbox, plain)
    assert "changed=0" in out, "second converge changed something"

    # After the reboot the running kernel carries the argument.
    _, report = run("audit.yml", sandbox, plain + " init_on_free=1")
    assert set(statuses(report).values()) == {"compliant"}, statuses(report)
    assert report["hosts"]["localhost"]["reboot_required"] is False


def test_toggles_off_report_disabled(sandbox: Path) -> None:
    extra = sandbox / "toggles.json"
    extra.write_text(json.dumps({"hvguard_memory_no_guest_core_enabled": False}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "HVGUARD_REPORT_DIR": str(sandbox / "reports")}  # fmt: skip
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbooks/audit.yml", "-e", f"@{extra}",
         "-e", json.dumps({"hvguard": facts("ro"),
                           "__hvguard_memory_qemu_conf": str(sandbox / "etc/libvirt/qemu.conf"),
                           "__hvguard_memory_ksm_run": str(sandbox / "sys/ksm_run"),
                           **OTHER_ROLES_OFF})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    report = json.loads((sandbox / "reports" / "hvguard-report.json").read_text())
    assert statuses(report)["HVG-MEM-003"] == "disabled"


# -- HVG-MEM-001 reboot guard ----------------------------------------------------------------
# site.yml with hvguard_memory_reboot_ok and init_on_free=1 pending reaches the guard for real:
# hvguard_facts asks a scripted virsh (first on PATH) and scans /proc. Each run happens in its
# own PID namespace with its own /proc, so the only QEMU it can see is the one a test starts
# (this machine's lab VMs stay invisible). The reboot itself can never happen here: on a local
# connection ansible.builtin.reboot refuses ("would reboot the control node"), which is the
# sign that the guard let the reboot through.
FAKE_VIRSH = ROOT / "tests" / "fixtures" / "modules" / "bin" / "virsh"
PLAIN_CMDLINE = "BOOT_IMAGE=/vmlinuz root=/dev/vda ro quiet"
GUARD_REFUSED = "Not rebooting for init_on_free=1"
REBOOT_REACHED = "with local connection would reboot the control node"


def guarded_run(
    sandbox: Path,
    domains: list[dict[str, Any]],
    *,
    connect: bool = True,
    stray_qemu: bool = False,
    overrides: dict[str, Any] | None = None,
) -> str:
    """site.yml up to the reboot; returns its output (the run fails either way)."""
    bindir = sandbox / "bin"
    bindir.mkdir()
    shutil.copy(FAKE_VIRSH, bindir / "virsh")
    state = sandbox / "virsh-state.json"
    state.write_text(json.dumps({"connect": connect, "domains": domains, "pools": []}))
    # A QEMU nobody told libvirt about: a copy of sleep under a QEMU emulator's name.
    prelude = ""
    if stray_qemu:
        shutil.copy(shutil.which("sleep") or "/bin/sleep", bindir / "qemu-system-hvgtest")
        prelude = f"{bindir}/qemu-system-hvgtest 600 & "
    wrapper = ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
               prelude + 'exec "$@"', "sh"]  # fmt: skip
    out, _ = run(
        "site.yml",
        sandbox,
        PLAIN_CMDLINE,
        overrides={"hvguard_memory_reboot_ok": True, **(overrides or {})},
        env={
            "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
            "HVGUARD_FAKE_VIRSH_STATE": str(state),
        },
        wrapper=wrapper,
        expect_ok=False,
    )
    assert GUARD_REFUSED in out or REBOOT_REACHED in out, out[-3000:]
    return out


def asked_virsh(sandbox: Path) -> bool:
    """The guard asked libvirt right before the reboot (not the facts of the run's start)."""
    return (sandbox / "virsh-state.json.log").exists()


def domain(name: str, state: str) -> dict[str, Any]:
    return {"name": name, "state": state, "persistent": True, "xml": "/nonexistent"}


needs_libvirt = pytest.mark.skipif(
    not Path("/usr/sbin/libvirtd").exists(), reason="libvirt-daemon-system not installed"
)


@needs_libvirt
def test_hvg_mem_001_reboot_refused_when_libvirt_cannot_be_asked(sandbox: Path) -> None:
    """HVG-MEM-001: facts say `domains: []` because libvirt did not answer: that is no
    licence to reboot (the old guard counted running domains in those facts: none)."""
    out = guarded_run(sandbox, [], connect=False)
    assert GUARD_REFUSED in out, out[-3000:]
    assert "libvirt could not be asked" in out and "failed to connect" in out, out[-3000:]
    assert REBOOT_REACHED not in out
    assert asked_virsh(sandbox)


@needs_libvirt
def test_hvg_mem_001_reboot_refused_over_paused_and_suspended_domains(sandbox: Path) -> None:
    """HVG-MEM-001: a paused or pmsuspended domain dies with the host just like a running one;
    only shut-off domains may stay."""
    domains = [domain("p1", "paused"), domain("s1", "pmsuspended"), domain("off1", "shutoff")]
    out = guarded_run(sandbox, domains)
    assert GUARD_REFUSED in out, out[-3000:]
    assert "domains not shut off: p1 paused, s1 other" in out, out[-3000:]
    assert "off1" not in out.split(GUARD_REFUSED, 1)[1].split("\n", 1)[0]
    assert REBOOT_REACHED not in out
    assert asked_virsh(sandbox)


@needs_libvirt
def test_hvg_mem_001_reboot_refused_over_a_stray_qemu(sandbox: Path) -> None:
    """HVG-MEM-001: a QEMU process libvirt does not know about is still a VM."""
    out = guarded_run(sandbox, [domain("off1", "shutoff")], stray_qemu=True)
    assert GUARD_REFUSED in out, out[-3000:]
    assert "QEMU processes run:" in out and "qemu-system-hvgtest" in out, out[-3000:]
    assert REBOOT_REACHED not in out
    assert asked_virsh(sandbox)


@needs_libvirt
def test_hvg_mem_001_reboot_goes_ahead_when_nothing_runs(sandbox: Path) -> None:
    """HVG-MEM-001: libvirt answers, every domain is shut off, no QEMU: the guard passes
    (and the reboot module is the one that refuses, on a local connection)."""
    out = guarded_run(sandbox, [domain("off1", "shutoff")])
    assert REBOOT_REACHED in out, out[-3000:]
    assert GUARD_REFUSED not in out
    assert asked_virsh(sandbox)


@needs_libvirt
def test_hvg_mem_001_reboot_with_running_domains_overrides_the_guard(sandbox: Path) -> None:
    """HVG-MEM-001: hvguard_memory_reboot_with_running_domains is the admin's explicit yes."""
    out = guarded_run(
        sandbox,
        [domain("vm1", "running")],
        stray_qemu=True,
        overrides={"hvguard_memory_reboot_with_running_domains": True},
    )
    assert REBOOT_REACHED in out, out[-3000:]


def test_hvg_mem_001_no_reboot_in_check_mode(sandbox: Path) -> None:
    """HVG-MEM-001: the audit (check mode) never reaches the reboot, even with reboot_ok."""
    out, report = run("audit.yml", sandbox, PLAIN_CMDLINE,
                      overrides={"hvguard_memory_reboot_ok": True})  # fmt: skip
    assert "Ask libvirt and /proc now" not in out, out[-3000:]
    assert REBOOT_REACHED not in out
    assert statuses(report)["HVG-MEM-001"] == "drift"
    assert report["hosts"]["localhost"]["reboot_required"] is True


# -- HVG-MEM-004 classification through the role ----------------------------------------------
# One audit over several local "hosts", each with its own swap facts (as hvguard_facts reports
# them): the role must call plain swap drift and zram or dm-crypt swap compliant.
def swap(device: str, kind: str, backing: str) -> dict[str, Any]:
    return {
        "device": device,
        "name": device,
        "type": kind,
        "size_kb": 1024,
        "encrypted": backing == "dm-crypt",
        "backing": backing,
    }


PLAIN_PART = swap("/dev/sda2", "partition", "plain")
PLAIN_FILE = swap("/swapfile", "file", "plain")
CRYPT = swap("/dev/dm-1", "partition", "dm-crypt")
CRYPT_FILE = swap("/srv/swapfile", "file", "dm-crypt")  # a file on an encrypted filesystem
ZRAM = swap("/dev/zram0", "zram", "zram")
SWAP_CASES: dict[str, tuple[list[dict[str, Any]], str, list[str]]] = {
    # host: (swap facts, expected HVG-MEM-004 status, devices the drift message must name)
    "none": ([], "compliant", []),
    "plain-partition": ([PLAIN_PART], "drift", ["/dev/sda2"]),
    "plain-file": ([PLAIN_FILE], "drift", ["/swapfile"]),
    "dm-crypt": ([CRYPT, CRYPT_FILE], "compliant", []),
    "zram": ([ZRAM], "compliant", []),
    "mixed": ([ZRAM, CRYPT, PLAIN_FILE], "drift", ["/swapfile"]),
}


def test_hvg_mem_004_plain_swap_is_drift_zram_and_dm_crypt_compliant(sandbox: Path) -> None:
    """HVG-MEM-004: plain partition or file -> drift (named); dm-crypt or zram -> compliant."""
    hosts = {}
    for name, (swaps, _, _) in SWAP_CASES.items():
        host_facts = facts("ro init_on_free=1")
        host_facts["memory"]["swap"] = swaps
        hosts[f"swap-{name}"] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "hvguard": host_facts,
        }
    inventory = sandbox / "inventory.json"
    inventory.write_text(json.dumps({"hypervisors": {"hosts": hosts}}))
    extra = {
        "__hvguard_memory_qemu_conf": str(sandbox / "etc/libvirt/qemu.conf"),
        "__hvguard_memory_ksm_run": str(sandbox / "sys/ksm_run"),
        "__hvguard_memory_boot_dropin": str(sandbox / "etc/grub.d/90-hvguard-memory.cfg"),
        "__hvguard_memory_tmpfiles_dir": str(sandbox / "etc/tmpfiles.d"),
        **OTHER_ROLES_OFF,
    }
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "HVGUARD_REPORT_DIR": str(sandbox / "reports"), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbooks/audit.yml", "-i", str(inventory),
         "-e", json.dumps(extra)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    report = json.loads((sandbox / "reports" / "hvguard-report.json").read_text())
    found = {}
    for name, (_, _, named) in SWAP_CASES.items():
        control = report["hosts"][f"swap-{name}"]["controls"]["HVG-MEM-004"]
        found[name] = control["status"]
        messages = " ".join(str(entry.get("msg", "")) for entry in control["evidence"])
        for device in named:
            assert device in messages, (name, messages)
        if name == "mixed":
            assert "/dev/zram0" not in messages and "/dev/dm-1" not in messages, messages
    assert found == {name: case[1] for name, case in SWAP_CASES.items()}


@pytest.mark.control("HVG-MEM-001")
@pytest.mark.parametrize("loader", ["systemd-boot", "none"])
def test_hvg_mem_001_without_grub_the_advice_is_manual_and_no_reboot_is_pending(
    sandbox: Path, loader: str
) -> None:
    """Issue 10, bug 4: without a GRUB drop-in directory the role writes nothing, so "reboot
    pending" and the site.yml fix were wrong advice; the cell says what fixes it by hand,
    and nothing reboots (reboot allowed, no domains)."""
    plain = "BOOT_IMAGE=/vmlinuz root=/dev/vda ro quiet"
    host_facts = facts(plain)
    host_facts["boot"] = {"loader": loader, "grub_dropin_dir": None, "update_cmd": None}
    out, report = run(
        "site.yml", sandbox, plain,
        overrides={"hvguard": host_facts, "hvguard_memory_reboot_ok": True},
    )  # fmt: skip
    host = report["hosts"]["localhost"]
    cell = host["controls"]["HVG-MEM-001"]
    assert cell["status"] == "drift"
    assert host["reboot_required"] is False
    assert not (sandbox / "etc/grub.d/90-hvguard-memory.cfg").exists()
    assert REBOOT_REACHED not in out and GUARD_REFUSED not in out
    msgs = " ".join(str(e.get("msg")) for e in cell["evidence"])
    assert "reboot pending" not in msgs and f"boot loader {loader}" in msgs, msgs
    action = cell["action"]
    assert action["manual"] is True
    assert action["command"].startswith("by hand: add init_on_free=1 to the kernel command")
    assert "site.yml" not in action["command"]
