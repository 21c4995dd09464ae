"""hvguard_scrub converged on this machine against a sandbox.

Facts are injected (a Debian hypervisor with LVM and one dir pool) and the role's OS paths
point into a temporary tree, so the role runs end to end through Ansible without touching
this machine: audit (drift, nothing written) -> converge -> converge again (zero changed)
-> audit (compliant) -> the installed engine scrubs a file of the configured pool.
The lvremove diversion (dpkg database) and the systemd unit are proven in molecule/scrub.
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

pytestmark = pytest.mark.skipif(
    not Path("/etc/lvm/lvm.conf").exists() or not shutil.which("lvm"), reason="needs lvm2"
)


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "reports" not in path.parts and path.name != "extra.json":
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def facts(pool_dir: Path) -> dict[str, Any]:
    return {
        "os": {"family": "Debian", "distribution": "Debian", "version": "12",
               "pkg_mgr": "apt", "init": "other"},
        "kernel": {"release": "6.1.0", "cmdline": "init_on_free=1", "params": {}},
        "boot": {"loader": "none", "grub_dropin_dir": None, "update_cmd": None},
        "memory": {"ksm": {"present": False, "run": None, "pages_shared": None},
                   "ksmtuned": {"installed": False}, "swap": []},
        "libvirt": {"present": True, "running": False, "daemon_mode": "monolithic",
                    "version": "9.0.0", "domains": [], "units": {},
                    "pools": [{"name": "images", "type": "dir", "active": True,
                               "target": str(pool_dir), "source_device": None,
                               "source_name": None, "thin": False},
                              {"name": "iso", "type": "netfs", "active": True,
                               "target": "/mnt/iso", "source_device": None,
                               "source_name": None, "thin": False}]},
        "qemu": {"present": True, "version": "7.2.0", "binaries": []},
        "network": {"bridges": [], "ovs": {"present": False, "bridges": []}},
        "lvm": {"present": True, "conf": "/etc/lvm/lvm.conf"},
    }  # fmt: skip


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / "pool").mkdir()
    (tmp_path / "sbin").mkdir()
    shutil.copytree("/etc/lvm", tmp_path / "lvm")
    return tmp_path


def run(sandbox: Path, check: bool, **more: Any) -> tuple[str, dict[str, Any]]:
    extra = {
        "hvguard": facts(sandbox / "pool"),
        "hvguard_target": "localhost",
        # site.yml applies every role: keep the others' controls off this machine.
        **other_roles_off("hvguard_scrub"),
        "hvguard_scrub_lvm_divert_enabled": False,  # dpkg's database is not sandboxed
        "__hvguard_scrub_engine": str(sandbox / "sbin/hvguard-scrub"),
        "__hvguard_scrub_config": str(sandbox / "hvguard-scrub.json"),
        "__hvguard_scrub_state_dir": str(sandbox / "state"),
        "__hvguard_scrub_lvm_conf": str(sandbox / "lvm/lvmlocal.conf"),
        "__hvguard_common_virsh": "false",
        **more,
    }
    (sandbox / "extra.json").write_text(json.dumps(extra))
    reports = sandbox / "reports"
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "HVGUARD_REPORT_DIR": str(reports), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbooks/audit.yml" if check else "playbooks/site.yml",
         "-e", f"@{sandbox / 'extra.json'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    report = json.loads((reports / "hvguard-report.json").read_text())
    return out, report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    controls = report["hosts"]["localhost"]["controls"]
    return {cid: c["status"] for cid, c in controls.items() if cid.startswith("HVG-STO")}


def effective(sandbox: Path, key: str) -> str:
    env = {**os.environ, "LVM_SYSTEM_DIR": str(sandbox / "lvm"), "LVM_SUPPRESS_FD_WARNINGS": "1"}
    out = subprocess.run(
        ["lvm", "lvmconfig", "--type", "full", key], capture_output=True, text=True, env=env
    ).stdout
    return out.strip().split("=", 1)[1]


def test_audit_converge_idempotence_audit_and_engine(sandbox: Path) -> None:
    before = tree_hash(sandbox)
    _, report = run(sandbox, check=True)
    assert statuses(report) == {
        "HVG-STO-001": "drift", "HVG-STO-002": "disabled", "HVG-STO-003": "compliant",
        "HVG-STO-004": "drift", "HVG-STO-005": "not_applicable",
    }  # fmt: skip
    assert tree_hash(sandbox) == before, "the audit changed the target"

    out, _ = run(sandbox, check=False)
    assert effective(sandbox, "devices/issue_discards") == "1"
    config = json.loads((sandbox / "hvguard-scrub.json").read_text())
    assert config["pools"] == [{"name": "images", "type": "dir", "path": str(sandbox / "pool")}]
    assert config["rate_mib"] == 200
    engine = sandbox / "sbin/hvguard-scrub"
    assert engine.read_bytes() == (ROOT / "roles/hvguard_scrub/files/hvguard-scrub").read_bytes()
    assert os.access(engine, os.X_OK)

    out, _ = run(sandbox, check=False)
    assert "changed=0" in out, "second converge changed something"
    _, report = run(sandbox, check=True)
    assert set(statuses(report).values()) <= {"compliant", "disabled", "not_applicable"}

    # the installed engine with the rendered configuration: libvirt is not running here, so
    # it cannot tell whether a domain uses the volume and must refuse (fail closed) ...
    vol = sandbox / "pool/vm.raw"
    vol.write_bytes(b"HVGUARD-ROLE-MARK" * 4096)
    cmd = [str(engine), "--config", str(sandbox / "hvguard-scrub.json"), "scrub", str(vol)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 3, proc.stderr  # EXIT_INUSE: not provably unused
    assert "cannot ask libvirt" in proc.stderr and vol.exists()
    # ... and scrubs the file once libvirt is out of the picture
    config["libvirt_check"] = False
    (sandbox / "hvguard-scrub.json").write_text(json.dumps(config))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not vol.exists()


def test_unknown_pool_backend_rejected_before_any_change(sandbox: Path) -> None:
    before = tree_hash(sandbox)
    extra = {
        "hvguard": facts(sandbox / "pool"),
        "hvguard_target": "localhost",
        "hvguard_scrub_pools": ["images", "iso"],
    }
    (sandbox / "bad.json").write_text(json.dumps(extra))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "HVGUARD_REPORT_DIR": str(sandbox / "reports"), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbooks/audit.yml", "--tags", "storage,always",
         "-e", f"@{sandbox / 'bad.json'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "unknown backend" in out and "iso" in out
    (sandbox / "bad.json").unlink()
    assert tree_hash(sandbox) == before
