# SPDX-License-Identifier: Apache-2.0
"""Lab operations behind the CLI: up, down, status, inventory."""

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from lab import image, net, paths, state, vm
from lab.errors import LabError
from lab.host import REQUIRED_COMMANDS, log, require, run
from lab.spec import VmSpec
from lab.state import ScenarioState, VmState

_SCENARIO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
ACCEL_ENV = "HVGUARD_LAB_ACCEL"
SSH_KEEPALIVE = "-o ServerAliveInterval=5 -o ServerAliveCountMax=6"


def check_scenario(name: str) -> str:
    if not _SCENARIO_RE.match(name):
        raise LabError(f"invalid lab name '{name}'", "use letters, digits, '.', '_', '-' (max 40)")
    return name


def ensure_ssh_key(cache: Path) -> Path:
    """The lab's SSH keypair, one per cache (the VMs get its public half at every boot)."""
    key = paths.ssh_key(cache)
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hvguard-lab", "-f", key])
    return key


def select_accel(cache: Path, img: Path) -> str:
    """tcg or kvm: an override, the cached result of a probe on this host, or a new probe."""
    forced = os.environ.get(ACCEL_ENV, "").strip().lower()
    if forced:
        if forced not in ("tcg", "kvm"):
            raise LabError(
                f"{ACCEL_ENV}={forced!r} is not tcg or kvm", f"unset {ACCEL_ENV} to auto-detect"
            )
        return forced
    qemu = shutil.which("qemu-system-x86_64") or ""
    key = f"{os.uname().release}|{qemu}|{os.path.getmtime(qemu) if qemu else 0}"
    cached_file = cache / "accel.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        cached = json.loads(cached_file.read_text())
        if cached["key"] == key:
            return str(cached["accel"])
    t0 = time.monotonic()
    accel = "kvm" if vm.probe_kvm(img, paths.run_dir(cache)) else "tcg"
    verdict = "succeeded" if accel == "kvm" else "failed"
    log(f"KVM test boot {verdict} ({time.monotonic() - t0:.0f}s): using {accel}")
    cached_file.write_text(json.dumps({"key": key, "accel": accel}) + "\n")
    return accel


class _Interrupted(BaseException):
    """SIGTERM/SIGHUP during `up`: unwind like Ctrl-C so the VMs get torn down."""


@contextlib.contextmanager
def _teardown_on_signals() -> Iterator[None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise _Interrupted(f"signal {signum}")

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, prev in old.items():
            signal.signal(sig, prev)


def _alive(st: ScenarioState) -> list[VmState]:
    return [v for v in st.vms if vm.is_our_qemu(v.pid, v.name)]


def _other_scenarios(cache: Path, name: str) -> list[ScenarioState]:
    out = []
    for other in state.all_names(cache):
        if other == name:
            continue
        with contextlib.suppress(OSError, ValueError, TypeError):
            st = state.load(cache, other)
            if st and _alive(st):
                out.append(st)
    return out


def up(
    cache: Path, name: str, specs: list[VmSpec], timeout: float, ssh_port: int | None
) -> ScenarioState:
    check_scenario(name)
    require(REQUIRED_COMMANDS)
    existing = state.load(cache, name)
    if existing:
        if len(_alive(existing)) == len(existing.vms) and [v.name for v in existing.vms] == [
            s.name for s in specs
        ]:
            log(f"'{name}' is already up ({len(existing.vms)} VM(s)); reusing it")
            return existing
        log(f"'{name}' has stale state; tearing it down first")
        down(cache, name)
    # Scenarios come up side by side (`make molecule`): everything they share - the SSH key,
    # the KVM probe, slots and forward ports - is decided under one lock held until this
    # scenario's QEMUs run (and so hold their ports), or two of them pick the same.
    t0 = time.monotonic()
    try:
        with _teardown_on_signals():
            with _allocation_lock(cache):
                st = _allocate_and_start(cache, name, specs, ssh_port)
            log(
                f"booting {len(st.vms)} VM(s) with {st.accel} (serial logs under "
                f"{paths.scenario_dir(cache, name)})"
            )
            vm.wait_ssh(cache, st, timeout)
    except BaseException:
        log(f"'{name}' failed to come up; tearing it down")
        down(cache, name)
        raise
    log(f"'{name}' up in {time.monotonic() - t0:.0f}s")
    return st


@contextlib.contextmanager
def _allocation_lock(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "up.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _allocate_and_start(
    cache: Path, name: str, specs: list[VmSpec], ssh_port: int | None
) -> ScenarioState:
    img = image.ensure_image(cache)
    pubkey = Path(f"{ensure_ssh_key(cache)}.pub").read_text()
    accel = select_accel(cache, img)
    others = _other_scenarios(cache, name)
    slot = net.choose_slot(name, {o.slot for o in others})
    ports = net.pick_ports(len(specs), ssh_port, {v.ssh_port for o in others for v in o.vms})
    st = ScenarioState(name=name, slot=slot, accel=accel, image=str(img))
    for index, (spec, port) in enumerate(zip(specs, ports, strict=True)):
        st.vms.append(
            VmState(
                name=spec.name,
                index=index,
                ssh_port=port,
                private_ip=str(net.private_ip(slot, index)),
                private_mac=net.private_mac(slot, index),
                memory=spec.memory,
                cpus=spec.cpus,
                disks=list(spec.disks),
            )
        )
    scen = paths.scenario_dir(cache, name)
    state.save(cache, st)  # first, so `down` can clean up whatever follows
    for v in st.vms:
        vm.prepare_disks(img, v, v.dir(scen))
        vm.start(st, v, v.dir(scen), net.mcast(slot), pubkey)
        state.save(cache, st)
    return st


def _stray_qemus(name: str) -> list[int]:
    """QEMU processes of this scenario that the state does not know (state lost or stale)."""
    marker = f"hvguard-lab-{name}-".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = vm.cmdline_of(int(entry.name), settle=0)
            if (
                cmdline
                and b"qemu-system" in cmdline[0]
                and any(a.startswith(marker) for a in cmdline)
            ):
                pids.append(int(entry.name))
    return pids


def down(cache: Path, name: str) -> list[str]:
    """Stop the scenario's VMs and delete their overlays and disks. Safe to call twice."""
    check_scenario(name)
    stopped: list[str] = []
    scen = paths.scenario_dir(cache, name)
    with contextlib.suppress(OSError, ValueError, TypeError):
        st = state.load(cache, name)
        for v in st.vms if st else []:
            if vm.stop(v):
                stopped.append(v.name)
    for pid in _stray_qemus(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        stopped.append(f"pid {pid}")
    deadline = time.monotonic() + 10
    while _stray_qemus(name) and time.monotonic() < deadline:
        time.sleep(0.2)
    if scen.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(scen)], check=False)
    return stopped


def status(cache: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name in state.all_names(cache):
        st = state.load(cache, name)
        if st is None:
            continue
        for v in st.vms:
            rows.append(
                {
                    "scenario": name,
                    "vm": v.name,
                    "running": vm.is_our_qemu(v.pid, v.name),
                    "pid": v.pid,
                    "ssh": f"127.0.0.1:{v.ssh_port}",
                    "private_ip": v.private_ip,
                    "accel": st.accel,
                    "memory": v.memory,
                    "cpus": v.cpus,
                    "disks": len(v.disks),
                }
            )
    return rows


def require_up(cache: Path, name: str) -> ScenarioState:
    st = state.load(cache, check_scenario(name))
    if st is None:
        raise LabError(f"lab '{name}' is not up", f"python -m lab up --name {name}")
    return st


def inventory_yaml(cache: Path, st: ScenarioState) -> str:
    """An Ansible inventory: group `hypervisors`, one host per VM, SSH through the forward."""
    key = paths.ssh_key(cache)
    lines = [
        "# Written by `python -m lab inventory`; regenerated at every `up`.",
        "all:",
        "  children:",
        "    hypervisors:",
        "      hosts:",
    ]
    for v in st.vms:
        lines += [
            f"        {v.name}:",
            "          ansible_host: 127.0.0.1",
            f"          ansible_port: {v.ssh_port}",
            "          ansible_user: root",
            f"          ansible_ssh_private_key_file: {json.dumps(str(key))}",
            # a guest reboot leaves the SSH master hanging on slirp: keepalives end it
            f"          ansible_ssh_common_args: {json.dumps(SSH_KEEPALIVE)}",
            f"          hvguard_lab_private_ip: {v.private_ip.split('/')[0]}",
            f"          hvguard_lab_private_cidr: {v.private_ip}",
            # the lab network is the migration network (certificate SANs, firewall peers)
            f"          hvguard_migration_tls_addresses: [{v.private_ip.split('/')[0]}]",
        ]
    return "\n".join(lines) + "\n"


def instance_config(cache: Path, st: ScenarioState) -> list[dict[str, object]]:
    """Molecule's default-driver instance config: one entry per VM."""
    return [
        {
            "instance": v.name,
            "address": "127.0.0.1",
            "port": v.ssh_port,
            "user": "root",
            "identity_file": str(paths.ssh_key(cache)),
            "hvguard_lab_private_ip": v.private_ip.split("/")[0],
        }
        for v in st.vms
    ]
