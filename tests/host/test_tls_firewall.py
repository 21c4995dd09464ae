# SPDX-License-Identifier: Apache-2.0
"""HVG-MIG-005 (issue 8 finding 11): the migration firewall touches no table but its own.

The role's nftables file and boot unit are rendered by Ansible from the role itself, the
file is loaded into a throw-away network namespace next to an "admin" table and a
libvirt-style table (twice: boot, then the handler's reload), and the tasks are checked
for what they enable: never the distribution's nftables.service, whose ruleset starts
with `flush ruleset` and whose stop/reload flush every table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "hvguard_migration_tls"
ANSIBLE = ROOT / ".venv" / "bin" / "ansible-playbook"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not ANSIBLE.exists() or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, the venv, nft and ip (network namespaces)",
)

RENDER = """
- name: Render the role's firewall files
  hosts: hypervisors
  gather_facts: false
  vars_files: [{defaults}, {vars}, {debian}]
  tasks:
    - name: Render
      ansible.builtin.template:
        src: "{{{{ item.src }}}}"
        dest: "{{{{ out }}}}/{{{{ item.dest }}}}"
        mode: "0644"
      loop:
        - {{src: {role}/templates/hvguard-migration.nft.j2, dest: rules.nft}}
        - {{src: {role}/templates/hvguard-migration-firewall.service.j2, dest: unit.service}}
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("fw")
    play = tmp / "render.yml"
    play.write_text(
        RENDER.format(
            defaults=ROLE / "defaults" / "main.yml",
            vars=ROLE / "vars" / "main.yml",
            debian=ROLE / "vars" / "Debian.yml",
            role=ROLE,
        )
    )
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "hvguard_migration_tls_addresses": ["192.0.2.10", "2001:db8::10"],
    }
    inv = tmp / "hosts.json"
    inv.write_text(json.dumps({"all": {"children": {"hypervisors": {"hosts": {"hv": host}}}}}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env["HVGUARD_REPORT_DIR"] = str(tmp / "reports")
    proc = subprocess.run(
        [str(ANSIBLE), "-i", str(inv), str(play), "-e", f"out={tmp}"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"hvg-fw-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def nft(ns: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", *args],
        input=stdin, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


OTHERS = """
table inet admin_keep {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 22 accept
    }
}
table ip libvirt_like {
    chain LIBVIRT_INP {
        tcp dport 53 accept
    }
}
"""


def test_hvg_mig_005_rules_replace_only_our_table(rendered: Path, netns: str) -> None:
    rules = (rendered / "rules.nft").read_text()
    assert "flush" not in rules, rules
    nft(netns, "-f", "-", stdin=OTHERS)
    before = nft(netns, "list", "ruleset")
    for _ in range(2):  # boot (the unit), then a reload (the handler)
        nft(netns, "-f", str(rendered / "rules.nft"))
    tables = nft(netns, "list", "tables").split("\n")
    assert "table inet hvguard_migration" in tables
    assert tables.count("table inet hvguard_migration") == 1
    after = nft(netns, "list", "ruleset")
    for table in ("table inet admin_keep", "table ip libvirt_like"):
        block = before[before.index(table) :].split("\n}\n")[0]
        assert block in after, f"{table} changed:\n{after}"
    assert "192.0.2.10" in after and "2001:db8::10" in after


def test_hvg_mig_005_boot_unit_loads_only_our_file(rendered: Path) -> None:
    unit = (rendered / "unit.service").read_text()
    exec_lines = [ln for ln in unit.splitlines() if ln.startswith("Exec")]
    assert exec_lines == ["ExecStart=/usr/sbin/nft -f /etc/nftables.d/hvguard-migration.nft"]
    assert "After=nftables.service" in unit


def _tasks(name: str) -> list[dict]:
    return yaml.safe_load((ROLE / "tasks" / name).read_text()) or []


def test_hvg_mig_005_role_never_enables_a_flushing_ruleset() -> None:
    """The distribution's nftables.service (flush on start/stop/reload) is never enabled,
    started or reloaded, and nothing is added to its ruleset file."""
    for name in ("firewall.yml", "main.yml"):
        for task in _tasks(name):
            svc = task.get("ansible.builtin.systemd_service") or task.get("ansible.builtin.service")
            if svc:
                assert "nft_service" not in str(svc["name"]), task["name"]
                assert "nftables.service" not in str(svc["name"]), task["name"]
                assert "nft_unit" in str(svc["name"]), task["name"]
            line = task.get("ansible.builtin.lineinfile")
            if line and "nft_main" in str(line.get("path")):
                assert line.get("state") == "absent", task["name"]
    handlers = yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())
    assert "flush" not in json.dumps(handlers)
