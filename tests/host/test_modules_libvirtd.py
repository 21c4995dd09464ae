# SPDX-License-Identifier: Apache-2.0
"""Host test: the modules against a real, hand-started libvirtd 9 (root only).

A session libvirtd runs as ``nobody`` in its own directories (nothing shared with the host's
/etc/libvirt or other engineers' daemons):

* its libvirtd.conf and qemu.conf are written by ``hvguard_libvirt_conf`` through a real
  ``ansible`` run, with the keys and Python types the roles use; libvirtd type-checks every
  key at start-up, so a bool/str/list mapping mistake makes it refuse to start, and
  ``virt-admin`` shows a value from the file in effect;
* ``hvguard_facts`` (its Gatherer, pointed at ``qemu:///session``) reports a dir pool and a
  tiny diskless TCG domain that really runs: state, persistence, QEMU pid and start time.

The domain is a VM start, so it holds /tmp/hvguard-vm.lock. A developer's run waits 2 min
for it and then skips; on CI (CI set, or HVGUARD_STRICT_SKIPS=1) the test is required, so it
waits up to 15 min (HVGUARD_VM_LOCK_WAIT overrides both) and then fails instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import ansible_adhoc, load_library, load_module_utils

facts_mod = load_library("hvguard_facts")
virconf = load_module_utils("hvguard_virconf")

NOBODY = 65534
TOOLS = ("libvirtd", "virsh", "virt-admin", "setpriv", "qemu-system-x86_64")
needs_libvirt = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in TOOLS),
    reason="needs root, libvirtd, virsh, virt-admin, setpriv and qemu-system-x86_64",
)
VM_LOCK = "/tmp/hvguard-vm.lock"

# The keys and Python types the roles pass (migration_tls, memory).
LIBVIRTD_SETTINGS = {
    "listen_tls": True,
    "listen_tcp": False,
    "auth_tls": "none",
    "tls_no_verify_certificate": False,
    "tls_no_sanity_certificate": False,
    "tls_allowed_dn_list": ["O=hvguard,CN=hv1.example.org", "O=hvguard,CN=hv2.example.org"],
    "tls_priority": "@LIBVIRT,SYSTEM:-VERS-TLS1.1:-VERS-TLS1.0",
    "max_clients": 23,
    "max_anonymous_clients": 5,
}
QEMU_SETTINGS = {
    "dump_guest_core": False,
    "migrate_tls_force": True,
    "migrate_tls_x509_verify": True,
    "default_tls_x509_verify": True,
}
DOMAIN_XML = """<domain type='qemu'>
  <name>hvguard-b</name>
  <memory unit='MiB'>32</memory>
  <memoryBacking><nosharepages/></memoryBacking>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
"""


def required_on_ci() -> bool:
    """Same rule as tests/conftest.py: CI (or HVGUARD_STRICT_SKIPS=1) must not skip."""
    flag = os.environ.get("HVGUARD_STRICT_SKIPS", "")
    if flag in {"0", "1"}:
        return flag == "1"
    return os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}


def lock_wait() -> float:
    """Seconds to wait for the VM lock: generous where the test is required."""
    return float(os.environ.get("HVGUARD_VM_LOCK_WAIT", 900 if required_on_ci() else 120))


@contextlib.contextmanager
def vm_lock(path: str = VM_LOCK, wait: float | None = None, poll: float = 2) -> Iterator[None]:
    strict = required_on_ci()
    wait = lock_wait() if wait is None else wait
    with open(path, "a") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    message = f"the host-wide VM lock {path} stayed busy for {wait:.0f} s"
                    if strict:
                        pytest.fail(message + " (required on CI: nothing else may hold it)")
                    pytest.skip(message)
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Session:
    """A session libvirtd as nobody below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "home" / ".config" / "libvirt"
        self.env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(root / "home"),
            "XDG_RUNTIME_DIR": str(root / "run"),
            "XDG_CONFIG_HOME": str(root / "home" / ".config"),
            "XDG_CACHE_HOME": str(root / "home" / ".cache"),
            "XDG_DATA_HOME": str(root / "home" / ".local" / "share"),
            "LC_ALL": "C",
        }
        self.pid: int | None = None

    def argv(self, *argv: str) -> list[str]:
        envs = [f"{key}={value}" for key, value in self.env.items()]
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        return [*prefix, "env", "-i", *envs, *argv]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    def virsh(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("virsh", "-c", "qemu:///session", *args)

    def runner(self, argv: list[str], timeout: int) -> facts_mod.CmdResult:
        """Gatherer runner: every command as nobody in the session's environment."""
        proc = self.run(*argv, timeout=timeout)
        return facts_mod.CmdResult(proc.returncode, proc.stdout, proc.stderr)

    def start(self) -> None:
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(self.root)], check=True)
        started = self.run("libvirtd", "--daemon", timeout=30)
        assert started.returncode == 0, started.stderr + self.log()
        pidfile = self.root / "run" / "libvirt" / "libvirtd.pid"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.virsh("uri").returncode != 0:
            time.sleep(0.2)
        if pidfile.exists():
            self.pid = int(pidfile.read_text().strip())
        assert self.virsh("uri").returncode == 0, self.log()

    def log(self) -> str:
        log = self.root / "log" / "libvirtd.log"
        return log.read_text()[-3000:] if log.exists() else ""

    def stop(self) -> None:
        for pidfile in (self.root / "run" / "libvirt" / "qemu" / "run").glob("*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{self.pid}").exists():
                    break
                time.sleep(0.1)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    # nobody must reach the directory: pytest's tmp_path is private to root.
    root = Path(tempfile.mkdtemp(prefix="hvguard-b-", dir="/var/tmp"))
    root.chmod(0o755)
    for sub in ("home/.config/libvirt", "run", "log", "pool"):
        (root / sub).mkdir(parents=True)
    daemon = Session(root)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


@needs_libvirt
def test_configs_written_by_module_are_taken_by_libvirtd_and_facts_see_it(session, tmp_path):
    reports = tmp_path / "reports"
    libvirtd_conf = session.config / "libvirtd.conf"
    settings = dict(
        LIBVIRTD_SETTINGS,
        log_outputs=f"1:file:{session.root / 'log' / 'libvirtd.log'}",
        log_filters="3:*",
    )
    args = {"path": str(libvirtd_conf), "settings": settings, "create": True}
    assert ansible_adhoc("hvguard_libvirt_conf", args, reports)["changed"] is True
    qemu_args = {"path": str(session.config / "qemu.conf"), "settings": QEMU_SETTINGS}
    qemu_args["create"] = True
    assert ansible_adhoc("hvguard_libvirt_conf", qemu_args, reports)["changed"] is True
    assert ansible_adhoc("hvguard_libvirt_conf", args, reports)["changed"] is False

    session.start()
    info = session.run("virt-admin", "-c", "libvirtd:///session", "server-clients-info", "libvirtd")
    assert info.returncode == 0, info.stderr
    assert "nclients_max        : 23" in info.stdout, info.stdout  # our file is in effect

    pool = session.virsh("pool-define-as", "hvgpool", "dir", "--target", str(session.root / "pool"))
    assert pool.returncode == 0, pool.stderr
    assert session.virsh("pool-start", "hvgpool").returncode == 0
    domain_xml = session.root / "domain.xml"
    domain_xml.write_text(DOMAIN_XML)
    assert session.virsh("define", str(domain_xml)).returncode == 0

    gatherer = facts_mod.Gatherer(
        uri="qemu:///session",
        runner=session.runner,
        qemu_run_dir=str(session.root / "run" / "libvirt" / "qemu" / "run"),
    )
    with vm_lock():
        started = session.virsh("start", "hvguard-b")
        assert started.returncode == 0, started.stderr + session.log()
        try:
            facts = gatherer.libvirt_facts("other")
            pids = [dom["qemu_pid"] for dom in facts["domains"]]
            comms = [Path(f"/proc/{pid}/comm").read_text() for pid in pids if pid]
        finally:
            session.virsh("destroy", "hvguard-b")
    assert facts["running"] is True, facts["error"]
    assert (
        facts["version"]
        == subprocess.run(
            ["virsh", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    assert "libvirtd" in facts["daemons_running"]
    assert facts["pools"] == [
        {
            "name": "hvgpool",
            "type": "dir",
            "active": True,
            "target": str(session.root / "pool"),
            "source_device": None,
            "source_name": None,
            "thin": False,
        }
    ]
    (domain,) = facts["domains"]
    assert (domain["name"], domain["state"], domain["persistent"]) == ("hvguard-b", "running", True)
    assert domain["memory_backing"] == {"nosharepages": True}
    assert len(comms) == 1 and comms[0].startswith("qemu-system"), comms
    assert abs(domain["qemu_started"] - time.time()) < 120
    assert domain["qemu_binary"] == "/usr/bin/qemu-system-x86_64"
    assert domain["qemu_binary_deleted"] is False

    after = gatherer.libvirt_facts("other")
    (stopped,) = after["domains"]
    assert (stopped["state"], stopped["qemu_pid"]) == ("shutoff", None)


# -- the lock itself -----------------------------------------------------------------------
@contextlib.contextmanager
def held(path: Path, seconds: float) -> Iterator[subprocess.Popen]:
    """Another process holds ``path`` for ``seconds`` (as a Molecule run would)."""
    holder = subprocess.Popen(["flock", str(path), "sleep", str(seconds)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until flock really holds it
            with open(path, "a") as probe:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(probe, fcntl.LOCK_UN)
                except BlockingIOError:
                    break
            time.sleep(0.05)
        yield holder
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({"CI": "true"}, pytest.fail.Exception),
        ({"HVGUARD_STRICT_SKIPS": "1"}, pytest.fail.Exception),
        ({}, pytest.skip.Exception),
    ],
)
def test_busy_vm_lock_fails_on_ci_and_skips_elsewhere(tmp_path, monkeypatch, env, outcome):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HVGUARD_STRICT_SKIPS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    lock = tmp_path / "vm.lock"
    # BaseException: pytest's skip and fail outcomes both derive from it, and a skip must not
    # escape and turn this test into a skip itself.
    with (
        held(lock, 30),
        pytest.raises(BaseException) as raised,
        vm_lock(str(lock), wait=1, poll=0.1),
    ):
        raise AssertionError("entered while another process held the lock")
    assert raised.type is outcome, raised.value
    assert "stayed busy for 1 s" in str(raised.value)


def test_ci_waits_for_the_vm_lock_generously(tmp_path, monkeypatch):
    monkeypatch.delenv("HVGUARD_STRICT_SKIPS", raising=False)
    monkeypatch.delenv("HVGUARD_VM_LOCK_WAIT", raising=False)
    monkeypatch.setenv("CI", "true")
    assert lock_wait() >= 900  # a Molecule VM boot + audit holds it for minutes
    monkeypatch.setenv("HVGUARD_VM_LOCK_WAIT", "20")
    lock = tmp_path / "vm.lock"
    start = time.monotonic()
    with held(lock, 2), vm_lock(str(lock), poll=0.1):
        waited = time.monotonic() - start
    assert 1 < waited < 20  # taken once the holder let go, not skipped or failed
