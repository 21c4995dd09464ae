# SPDX-License-Identifier: Apache-2.0
"""Issue 10: the hvguard.kvm collection builds, installs with ansible-galaxy into a temporary
path, and audits this machine in check mode from the installed copy, with a playbook that
names everything by FQCN (roles, callback) and no repository path configured (a clean
ansible.cfg in a temporary directory: nothing resolves from this checkout).

Also proved here: why tools/build_collection.py qualifies hvguard's filter calls in roles.
Inside a collection role an unqualified module or role name resolves against the role's
collection, an unqualified filter name does not (a two-file synthetic collection shows both).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import config_fingerprint

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "modules"))
from hvguard_baseline import baseline_controls, baseline_roles  # noqa: E402

BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT / "tools"))
import build_collection  # noqa: E402

NS, NAME = build_collection.galaxy_fqcn()
FQCN = f"{NS}.{NAME}"
CATALOGUE = yaml.safe_load((ROOT / "controls" / "catalogue.yml").read_text())
ROLES = sorted({c["role"] for c in CATALOGUE["controls"]})
# What audit.yml applies: the staged roles (own playbooks) are shipped but not in the baseline.
BASELINE = baseline_roles()


def clean_env(work: Path) -> dict[str, str]:
    """No ANSIBLE_* of the caller (make exports ANSIBLE_CONFIG), this work dir's config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "HVGUARD_"))}
    return {
        **env,
        "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"),
        "HVGUARD_REPORT_DIR": str(work / "reports"),
    }


def run(argv: list[str], work: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=work,
        env=clean_env(work),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("collection")
    tree = build_collection.assemble(work / "src")
    build = run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "build",
            str(tree),
            "--output-path",
            str(work / "dist"),
        ],
        work,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (tarball,) = (work / "dist").glob(f"{NS}-{NAME}-*.tar.gz")
    (work / "ansible.cfg").write_text(
        "[defaults]\n"
        f"collections_path = {work / 'collections'}\n"
        f"callbacks_enabled = {FQCN}.hvguard_report\n"
        "gathering = explicit\ninterpreter_python = auto_silent\n"
    )
    inst = run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "install",
            str(tarball),
            "-p",
            str(work / "collections"),
            "--no-deps",
        ],
        work,
    )
    assert inst.returncode == 0, inst.stdout + inst.stderr
    (work / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "hypervisors": {
                            "hosts": {
                                "localhost": {
                                    "ansible_connection": "local",
                                    "ansible_python_interpreter": str(BIN / "python"),
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    home = work / "collections" / "ansible_collections" / NS / NAME
    return {"work": work, "tarball": tarball, "home": home}


def test_tarball_has_roles_plugins_engine_and_catalogue(installed: dict[str, Path]) -> None:
    with tarfile.open(installed["tarball"]) as tar:
        names = set(tar.getnames())
    expected = {
        "MANIFEST.json",
        "meta/runtime.yml",
        "controls/catalogue.yml",
        "hvguard_reporting/__init__.py",
        "hvguard_reporting/templates/report.html.j2",
        "plugins/callback/hvguard_report.py",
        "plugins/action/hvguard_finding.py",
        "plugins/filter/hvguard_tls.py",
        "plugins/module_utils/hvguard_virconf.py",
        "playbooks/audit.yml",
        "playbooks/site.yml",
    }
    expected |= {f"plugins/modules/{p.name}" for p in (ROOT / "library").glob("*.py")}
    expected |= {f"roles/{r}/tasks/main.yml" for r in ROLES}
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_no_repository_only_name_is_left(installed: dict[str, Path]) -> None:
    home = installed["home"]
    for module in (home / "plugins" / "modules").glob("*.py"):
        assert "from ansible.module_utils.hvguard" not in module.read_text(), module.name
    filters = build_collection.filter_names()
    assert "hvguard_tls_sans_problem" in filters and "hvguard_report_failures" in filters
    leftover = []
    for path in (home / "roles").rglob("*"):
        if path.suffix in (".yml", ".j2"):
            text = path.read_text()
            leftover += [
                f"{path.name}: {f}"
                for f in filters
                if build_collection.qualify_filters(text, [f], FQCN) != text
            ]
    assert not leftover, leftover


def test_ansible_doc_reads_the_installed_plugins(installed: dict[str, Path]) -> None:
    for kind, name in (
        ("module", "hvguard_facts"),
        ("module", "hvguard_libvirt_conf"),
        ("module", "hvguard_files_info"),
        ("callback", "hvguard_report"),
        # filters are documented by a sidecar NAME.yml beside the plugin file
        ("filter", "hvguard_tls_cert_info"),
        ("filter", "hvguard_files_as_slurp"),
    ):
        proc = run([str(BIN / "ansible-doc"), "-t", kind, f"{FQCN}.{name}"], installed["work"])
        assert proc.returncode == 0 and name in proc.stdout, proc.stderr


def audit_report(work: Path) -> dict[str, Any]:
    return json.loads((work / "reports" / "hvguard-report.json").read_text())


def test_fqcn_playbook_audits_this_machine_from_the_installed_copy(
    installed: dict[str, Path],
) -> None:
    work = installed["work"]
    roles = [f"{FQCN}.{r}" for r in BASELINE]
    (work / "audit.yml").write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Audit with the installed collection, FQCNs only",
                    "hosts": "hypervisors",
                    "gather_facts": False,
                    "check_mode": True,
                    "diff": True,
                    "roles": [{"role": r} for r in roles],
                }
            ],
            sort_keys=False,
        )
    )
    before = config_fingerprint()
    proc = run([str(BIN / "ansible-playbook"), "-i", "hosts.yml", "audit.yml"], work)
    out = proc.stdout + proc.stderr
    assert config_fingerprint() == before, "the check-mode audit changed this machine"
    assert proc.returncode == 0, out[-4000:]
    assert "No filter named" not in out and "couldn't resolve module" not in out
    report = audit_report(work)
    controls = report["hosts"]["localhost"]["controls"]
    wanted = baseline_controls()
    assert set(controls) == wanted, sorted(wanted ^ set(controls))
    assert not {cid: c["status"] for cid, c in controls.items() if c["status"] == "error"}
    # The report came from the installed engine and catalogue, not from this checkout.
    assert str(installed["home"]) in json.dumps(report["run"]["catalogue"]), report["run"]


def test_shipped_audit_playbook_gates_from_the_installed_copy(installed: dict[str, Path]) -> None:
    work = installed["work"]
    proc = run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            "hosts.yml",
            f"{FQCN}.audit",
            "--tags",
            "HVG-MEM-003",
            "-e",
            "hvguard_audit_fail_on_drift=true",
        ],
        work,
    )
    out = proc.stdout + proc.stderr
    status = audit_report(work)["hosts"]["localhost"]["controls"]["HVG-MEM-003"]["status"]
    if status == "compliant":
        assert proc.returncode == 0 and "hvguard audit passed" in out, out[-3000:]
    else:
        assert proc.returncode == 2, out[-3000:]
        assert f"localhost HVG-MEM-003: {status}" in out, out[-3000:]


def test_unqualified_filter_names_do_not_resolve_in_collection_roles(tmp_path: Path) -> None:
    """The reason for build_collection.qualify_filters (ansible-core 2.19)."""
    home = tmp_path / "collections" / "ansible_collections" / "t" / "c"
    (home / "plugins" / "filter").mkdir(parents=True)
    (home / "plugins" / "filter" / "f.py").write_text(
        "class FilterModule:\n    def filters(self):\n        return {'t_twice': lambda x: x * 2}\n"
    )
    (home / "plugins" / "modules").mkdir()
    (home / "plugins" / "modules" / "t_ping.py").write_text(
        "from ansible.module_utils.basic import AnsibleModule\n"
        "AnsibleModule(argument_spec={}).exit_json(changed=False, pong=1)\n"
    )
    for role, expr in (("short", "{{ 21 | t_twice }}"), ("fqcn", "{{ 21 | t.c.t_twice }}")):
        tasks = home / "roles" / role / "tasks"
        tasks.mkdir(parents=True)
        tasks.joinpath("main.yml").write_text(
            yaml.safe_dump(
                [
                    {"name": "unqualified module", "t_ping": {}},
                    {"name": "filter", "ansible.builtin.debug": {"msg": expr}},
                ]
            )
        )
    cfg = f"[defaults]\ncollections_path = {tmp_path / 'collections'}\n"
    (tmp_path / "ansible.cfg").write_text(cfg)
    results = {}
    for role in ("short", "fqcn"):
        (tmp_path / "p.yml").write_text(
            yaml.safe_dump(
                [{"hosts": "localhost", "gather_facts": False, "roles": [f"t.c.{role}"]}]
            )
        )
        results[role] = run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                "localhost,",
                "-c",
                "local",
                "-e",
                f"ansible_python_interpreter={BIN / 'python'}",
                "p.yml",
            ],
            tmp_path,
            timeout=120,
        )
    assert results["fqcn"].returncode == 0, results["fqcn"].stdout
    assert '"msg": 42' in results["fqcn"].stdout
    short = results["short"].stdout + results["short"].stderr
    assert "No filter named 't_twice'" in short, short[-2000:]
    assert "ok: [localhost]" in short, "the unqualified module name resolved"
