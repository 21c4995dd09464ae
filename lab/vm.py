# SPDX-License-Identifier: Apache-2.0
"""QEMU lifecycle of lab VMs: overlays, command line, start, wait for SSH, stop."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from lab import paths
from lab.errors import LabError
from lab.host import log, run
from lab.state import ScenarioState, VmState

SSH_OPTS = (
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "IdentitiesOnly=yes",
    "-o", "BatchMode=yes",
)  # fmt: skip
# cache=unsafe: throwaway overlays, so flushes are wasted time under TCG
DRIVE_OPTS = "format=qcow2,discard=unmap,cache=unsafe"
# `max`: qemu64 ran CPU-bound guest loops ~20 % faster but the scenarios ~2x slower (the scrub
# coverage matrix 18 min instead of 7-11; the kernel's page and block paths lose ERMS and
# friends). HVGUARD_LAB_CPU picks another model for such comparisons.
TCG = ("-accel", "tcg,thread=multi", "-cpu", os.environ.get("HVGUARD_LAB_CPU", "max"))
KVM = ("-accel", "kvm", "-cpu", "max")


def accel_args(accel: str) -> tuple[str, ...]:
    return KVM if accel == "kvm" else TCG


def fw_cfg_text(state: ScenarioState, vm: VmState, pubkey: str) -> str:
    """The per-VM identity the guest's hvguard-lab-init reads at boot."""
    lines = [
        f"hostname={vm.name}",
        f"private_ip={vm.private_ip}",
        f"private_mac={vm.private_mac}",
        f"authorized_key={pubkey.strip()}",
    ]
    lines += [f"host={peer.private_ip.split('/')[0]} {peer.name}" for peer in state.vms]
    return "\n".join(lines) + "\n"


def qemu_argv(state: ScenarioState, vm: VmState, vmdir: Path, mcast: tuple[str, int]) -> list[str]:
    group, port = mcast
    argv = [
        "qemu-system-x86_64",
        "-name", f"hvguard-lab-{state.name}-{vm.name},process=hvguard-lab-{vm.name}",
        "-machine", "pc",
        *accel_args(state.accel),
        "-smp", str(vm.cpus),
        "-m", str(vm.memory),
        "-nodefaults", "-display", "none", "-vga", "none",
        "-serial", f"file:{vmdir / 'serial.log'}",
        "-pidfile", str(vmdir / "qemu.pid"),
        "-device", "virtio-rng-pci",
        "-fw_cfg", f"name=opt/hvguard/lab,file={vmdir / 'fw_cfg.txt'}",
        # root disk first so it is vda
        "-drive", f"file={vmdir / 'root.qcow2'},if=none,id=root,{DRIVE_OPTS}",
        "-device", "virtio-blk-pci,drive=root,bootindex=0",
        "-netdev", f"user,id=mgmt,hostfwd=tcp:127.0.0.1:{vm.ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=mgmt",
        "-netdev", f"socket,id=priv,mcast={group}:{port},localaddr=127.0.0.1",
        "-device", f"virtio-net-pci,netdev=priv,mac={vm.private_mac}",
    ]  # fmt: skip
    for number, _size in enumerate(vm.disks, start=1):
        argv += [
            "-drive",
            f"file={vmdir / f'disk{number}.qcow2'},if=none,id=disk{number},{DRIVE_OPTS}",
            "-device",
            f"virtio-blk-pci,drive=disk{number},serial=hvguard-disk{number},discard=on",
        ]
    return argv


def prepare_disks(image: Path, vm: VmState, vmdir: Path) -> None:
    vmdir.mkdir(parents=True, exist_ok=True)
    run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            image,
            vmdir / "root.qcow2",
        ]
    )
    for number, size in enumerate(vm.disks, start=1):
        run(["qemu-img", "create", "-q", "-f", "qcow2", vmdir / f"disk{number}.qcow2", str(size)])


def start(
    state: ScenarioState, vm: VmState, vmdir: Path, mcast: tuple[str, int], pubkey: str
) -> None:
    (vmdir / "fw_cfg.txt").write_text(fw_cfg_text(state, vm, pubkey))
    (vmdir / "serial.log").write_text("")
    with (vmdir / "qemu.log").open("w") as out:
        # Own session: a Ctrl-C in the terminal reaches the lab (which tears down), not QEMU.
        proc = subprocess.Popen(
            qemu_argv(state, vm, vmdir, mcast),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    vm.pid = proc.pid


def _state(pid: int) -> str:
    """The process state letter from /proc/PID/stat ('' when the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def cmdline_of(pid: int, settle: float = 3.0) -> list[bytes]:
    """argv of a live process. Right after fork/vfork + exec the kernel briefly shows an
    empty cmdline; wait for it instead of taking a starting QEMU for a dead one."""
    deadline = time.monotonic() + settle
    while True:
        state = _state(pid)
        if state in ("", "Z", "X"):
            return []
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return []
        if raw or time.monotonic() > deadline:
            return raw.split(b"\0")
        time.sleep(0.05)


def is_our_qemu(pid: int, vm_name: str) -> bool:
    """True when pid is alive and is the QEMU of this VM (pids get reused)."""
    if pid <= 0:
        return False
    cmdline = cmdline_of(pid)
    if not cmdline or b"qemu-system" not in cmdline[0]:
        return False
    return f"process=hvguard-lab-{vm_name}".encode() in b" ".join(cmdline)


def stop(vm: VmState, grace: float = 5.0) -> bool:
    """Kill the VM's QEMU (TERM, then KILL). True when a process was running."""
    if not is_our_qemu(vm.pid, vm.name):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(vm.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and is_our_qemu(vm.pid, vm.name):
        _reap(vm.pid)
        time.sleep(0.1)
    if is_our_qemu(vm.pid, vm.name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(vm.pid, signal.SIGKILL)
        for _ in range(50):
            _reap(vm.pid)
            if not is_our_qemu(vm.pid, vm.name):
                break
            time.sleep(0.1)
    _reap(vm.pid)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def ssh_base(cache: Path, port: int) -> list[str]:
    return ["ssh", "-i", str(paths.ssh_key(cache)), "-p", str(port), *SSH_OPTS, "root@127.0.0.1"]


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(text.splitlines()[-lines:])


def _describe_pid(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
    except OSError:
        return f"pid {pid} is gone"
    return f"pid {pid} is now: {cmdline.decode(errors='replace')}"


def died_error(vm: VmState, vmdir: Path) -> LabError:
    return LabError(
        f"QEMU of VM '{vm.name}' exited during boot ({_describe_pid(vm.pid)}). "
        f"{vmdir / 'qemu.log'}:\n"
        f"{tail(vmdir / 'qemu.log')}\n"
        f"serial console ({vmdir / 'serial.log'}):\n{tail(vmdir / 'serial.log', 10)}",
        "fix the QEMU error above (memory, port, image); `python -m lab down --name ...` cleans up",
    )


def timeout_error(late: list[VmState], scen: Path, timeout: float) -> LabError:
    parts = [f"boot timed out after {timeout:.0f}s: {', '.join(v.name for v in late)} never"]
    parts[0] += " answered SSH"
    for v in late:
        serial = v.dir(scen) / "serial.log"
        parts.append(f"--- {v.name}: last lines of {serial}\n{tail(serial)}")
    return LabError(
        "\n".join(parts),
        "read the serial log above; on a busy host raise --timeout (TCG boots take 30-90s)",
    )


def wait_ssh(cache: Path, state: ScenarioState, timeout: float) -> dict[str, float]:
    """Wait until every VM answers SSH; seconds each took. Raises with the serial log tail."""
    scen = paths.scenario_dir(cache, state.name)
    t0 = time.monotonic()
    ready: dict[str, float] = {}
    while True:
        for vm in (v for v in state.vms if v.name not in ready):
            if not is_our_qemu(vm.pid, vm.name):
                _reap(vm.pid)
                raise died_error(vm, vm.dir(scen))
            if _ssh_ready(cache, vm.ssh_port):
                ready[vm.name] = time.monotonic() - t0
                log(f"{vm.name} answers SSH on 127.0.0.1:{vm.ssh_port} after {ready[vm.name]:.0f}s")
        if len(ready) == len(state.vms):
            return ready
        if time.monotonic() - t0 > timeout:
            raise timeout_error([v for v in state.vms if v.name not in ready], scen, timeout)
        time.sleep(2)


def _ssh_ready(cache: Path, port: int) -> bool:
    """SSH answers and systemd finished booting (so services the roles probe are settled)."""
    base = ssh_base(cache, port)
    argv = [base[0], "-o", "ConnectTimeout=5", *base[1:]]
    argv.append("timeout 90 systemctl is-system-running --wait >/dev/null 2>&1; true")
    try:
        return subprocess.run(argv, capture_output=True, timeout=120, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def probe_kvm(image: Path, workdir: Path, timeout: float = 20.0) -> bool:
    """A real test boot under KVM: does the guest kernel print on the console in time?

    /dev/kvm existing proves nothing (a PVM host has it, but guests hang after SeaBIOS).
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    workdir.mkdir(parents=True, exist_ok=True)
    serial = workdir / "kvm-probe.serial"
    serial.write_text("")
    argv = [
        "qemu-system-x86_64", "-name", "hvguard-lab-kvm-probe", *KVM, "-m", "512",
        "-nodefaults", "-display", "none", "-vga", "none", "-serial", f"file:{serial}",
        "-drive", f"file={image},if=virtio,format=qcow2,snapshot=on", "-net", "none",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if "Linux version" in serial.read_text(errors="replace"):
                return True
            time.sleep(0.5)
        return False
    finally:
        proc.kill()
        proc.wait()
