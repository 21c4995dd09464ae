# SPDX-License-Identifier: Apache-2.0
"""Issue 10: the example fleet inventory a user copies (inventories/example) is valid input.

- Ansible reads it without warnings (the waiver file beside the hosts is not inventory),
  both hosts are in `hypervisors`, they connect as a non-root user with become.
- Every hvguard variable it sets is an option some role declares (a typo would be silently
  ignored by Ansible) or one of the playbooks' own variables.
- Every role's input validation (the first play of audit.yml/site.yml) accepts it, run here
  in check mode over a local connection with no control selected (and rejects a copy with a
  malformed migration address: the check is real).
- The CA directory is not under a home directory an ephemeral EE container loses.
- Its waiver file loads.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
EXAMPLE = ROOT / "inventories" / "example"
PLAYBOOK_VARS = {"hvguard_target", "hvguard_apply_to_controller", "hvguard_audit_fail_on_drift",
                 "hvguard_rotate_all", "hvguard_rotate_serial", "hvguard_pull_mode"}  # fmt: skip


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "HVGUARD_REPORT_DIR": str(tmp_path / "reports")}  # fmt: skip


def inventory(tmp_path: Path, source: Path = EXAMPLE) -> tuple[dict, str]:
    proc = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(source), "--list"],
        cwd=ROOT, env=env(tmp_path), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout), proc.stderr


def role_options() -> set[str]:
    names: set[str] = set()
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names.update(entry.get("options") or {})
    return names


def test_example_inventory_reads_cleanly(tmp_path: Path) -> None:
    inv, err = inventory(tmp_path)
    assert "WARNING" not in err, err
    hosts = inv["hypervisors"]["hosts"]
    assert len(hosts) >= 2
    for host in hosts:
        hv = inv["_meta"]["hostvars"][host]
        assert hv["ansible_become"] is True and hv["ansible_user"] != "root", hv
        assert hv["hvguard_migration_tls_addresses"], host
        assert not hv["hvguard_migration_tls_ca_dir"].startswith("~"), "lost in an EE container"


def test_every_hvguard_variable_is_declared(tmp_path: Path) -> None:
    inv, _ = inventory(tmp_path)
    known = role_options() | PLAYBOOK_VARS
    used = {k for hv in inv["_meta"]["hostvars"].values() for k in hv if k.startswith("hvguard")}
    assert used, "the example sets no hvguard variable"
    assert used <= known, f"not an option of any role: {sorted(used - known)}"


def validate(tmp_path: Path, source: Path) -> subprocess.CompletedProcess[str]:
    local = ["-e", "ansible_connection=local", "-e", "ansible_become=false",
             "-e", f"ansible_python_interpreter={BIN / 'python'}"]  # fmt: skip
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(source), "playbooks/audit.yml", *local,
         "--tags", "hvguard-select-no-control"],
        cwd=ROOT, env=env(tmp_path), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_roles_accept_the_example_input(tmp_path: Path) -> None:
    proc = validate(tmp_path, EXAMPLE)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "hv1.example.net" in out and "failed=0" in out


def test_validation_rejects_a_copy_with_a_bad_address(tmp_path: Path) -> None:
    copy = tmp_path / "inv"
    subprocess.run(["cp", "-r", str(EXAMPLE), str(copy)], check=True)
    host = copy / "host_vars" / "hv2.example.net.yml"
    host.write_text(host.read_text().replace("10.20.0.12", "10.20.0.312"))
    proc = validate(tmp_path, copy)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "10.20.0.312" in out, out[-3000:]


def test_example_waivers_load() -> None:
    from hvguard_reporting import waivers

    loaded, warnings = waivers.load([EXAMPLE / "hvguard_waivers.yml"])
    assert loaded and not warnings, warnings


@pytest.mark.parametrize("name", ["hosts.yml", "group_vars/hypervisors.yml"])
def test_example_files_are_commented(name: str) -> None:
    assert (EXAMPLE / name).read_text().count("#") >= 3, "a user copies this: say what it is"
