# SPDX-License-Identifier: Apache-2.0
"""Evidence never carries secrets (issue 8 finding 10): planted secrets in every file the
pack diffs, through every report renderer and at the source in the pack's own modules.

Files the pack diffs (roles' copy/template/lineinfile/hvguard_libvirt_conf/hvguard_lvm_conf
tasks): qemu.conf (HVG-MEM-003, HVG-MIG-004), libvirtd.conf/virtproxyd.conf (HVG-MIG-002/003),
lvmlocal.conf (HVG-STO-003/004), the GRUB drop-in (HVG-MEM-001), the KSM tmpfiles.d file
(HVG-MEM-002), the scrub JSON config and systemd unit (HVG-STO-001), nftables.conf
(HVG-MIG-005) and the TLS keys and certificates (HVG-MIG-001). The engine itself is an
installed file: evidence by checksum, no text.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from callback_plugins import hvguard_report as hr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import ROOT, load_library, load_module_utils, run_module

libvirt_conf = load_library("hvguard_libvirt_conf")
rd = load_module_utils("hvguard_redact")

SECRETS = ROOT / "tests" / "fixtures" / "report" / "secrets"
CATALOGUE = hr.load_catalogue(ROOT / "controls" / "catalogue.yml")["controls"]
LVM = shutil.which("lvm") or "/sbin/lvm"
ANSIBLE_PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"


def pem(label: str, seed: int, lines: int = 12) -> str:
    """A PEM block with a random (reproducible) body: no real key is kept in the repo."""
    rng = random.Random(seed)
    body = base64.b64encode(bytes(rng.randrange(256) for _ in range(48 * lines))).decode()
    rows = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(rows) + f"\n-----END {label}-----\n"


OLD_KEY, NEW_KEY = pem("PRIVATE KEY", 1), pem("PRIVATE KEY", 2)
OLD_CERT, NEW_CERT = pem("CERTIFICATE", 3), pem("CERTIFICATE", 4)
OLD_RSA = pem("RSA PRIVATE KEY", 5)


def pem_bodies(*blocks: str) -> list[str]:
    return [line for b in blocks for line in b.splitlines() if not line.startswith("-----")]


def text(name: str) -> str:
    return (SECRETS / name).read_text()


def planted(*texts: str) -> set[str]:
    found = {m for t in texts for m in re.findall(r"PLANTED-[A-Za-z0-9-]+", t)}
    assert found, "no planted secret"
    return found


def assert_clean(output: str, where: str, secrets: set[str]) -> None:
    leaked = sorted(s for s in secrets if s in output)
    assert not leaked, f"{where} leaks {leaked[:3]}"
    assert "PLANTED" not in output, f"{where} leaks a planted secret"


ALL_PEM_LINES = set(pem_bodies(OLD_KEY, NEW_KEY, OLD_CERT, NEW_CERT, OLD_RSA))


# -- the rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('vnc_password = "s3"', 'vnc_password = "<redacted>"'),
        ('#vnc_password = "XYZ12345"', '#vnc_password = "<redacted>"'),
        ("+spice_password='s3'", "+spice_password='<redacted>'"),
        ('  "api_token": "s3",', '  "api_token": "<redacted>",'),
        ('\\"client_secret\\": \\"s3\\"', '\\"client_secret\\": \\"<redacted>\\"'),
        ("GRUB_PASSWORD=s3", "GRUB_PASSWORD=<redacted>"),
        ("password_pbkdf2 root grub.pbkdf2.sha512.1.AB", "password_pbkdf2 <redacted>"),
        ("ssh_key: AAAAB3", "ssh_key: <redacted>"),
        ("run --password s3 --user bob", "run --password <redacted> --user bob"),
        ("run --db-token=s3", "run --db-token=<redacted>"),
        ("Authorization: Bearer s3", "Authorization: <redacted>"),
        ("qemu+ssh://root:s3@peer/system", "qemu+ssh://root:<redacted>@peer/system"),
        # what the pack itself sets, and references to secrets, stay readable
        ('auth_tls = "none"', 'auth_tls = "none"'),
        ('tls_priority = "@LIBVIRT,SYSTEM"', 'tls_priority = "@LIBVIRT,SYSTEM"'),
        ('vnc_tls_x509_secret_uuid = "0000-1"', 'vnc_tls_x509_secret_uuid = "0000-1"'),
        ('key_file = "/etc/pki/k.pem"', 'key_file = "/etc/pki/k.pem"'),
        ("dump_guest_core = 0", "dump_guest_core = 0"),
        ('vnc_password = ""', 'vnc_password = ""'),
        ("changed_keys = [listen_tls]", "changed_keys = [listen_tls]"),
        ("sha256: " + "ab12" * 16, "sha256: " + "ab12" * 16),
        ("ab12" * 16, "ab12" * 16),
        ("key = listen_tls", "key = listen_tls"),
    ],
)
def test_redaction_keeps_the_line_and_replaces_the_value(line, expected) -> None:
    assert rd.redact_text(line) == expected
    assert rd.redact_text(expected) == expected  # idempotent


def test_pem_bodies_are_replaced_by_a_digest_also_in_diffs_and_cut_text() -> None:
    out = rd.redact_text(OLD_KEY)
    assert out.startswith("-----BEGIN PRIVATE KEY-----\n<redacted sha256:")
    assert out.endswith("\n-----END PRIVATE KEY-----\n")
    assert rd.redact_text(NEW_KEY) != out  # a changed key still shows as a change
    assert rd.redact_text(out) == out
    cut = OLD_RSA[: len(OLD_RSA) // 2]  # no END line: redacted to the end of the text
    assert not any(line in rd.redact_text(cut) for line in pem_bodies(OLD_RSA))
    # a diff hunk inside a key (no armour) and a PEM inside escaped JSON
    hunk = "@@ -3,2 +3,2 @@\n" + "".join(f"-{line}\n" for line in pem_bodies(OLD_KEY)[2:4])
    assert not any(line in rd.redact_text(hunk) for line in pem_bodies(OLD_KEY))
    escaped = json.dumps({"stdout": OLD_CERT})
    assert not any(line in rd.redact_text(escaped) for line in pem_bodies(OLD_CERT))


def test_structures_redact_secret_keys_and_key_value_pairs() -> None:
    value = {
        "password": "s3",
        "nested": [{"client_secret": {"a": 1}}, {"key": "vnc_password", "value": "s3"}],
        "key": "listen_tls",
        "changed_keys": ["vnc_password"],
        "note": "token=s3",
    }
    assert rd.redact(value) == {
        "password": "<redacted>",
        "nested": [{"client_secret": "<redacted>"}, {"key": "vnc_password", "value": "<redacted>"}],
        "key": "listen_tls",
        "changed_keys": ["vnc_password"],
        "note": "token=<redacted>",
    }


# -- every evidence path, every renderer ------------------------------------------------


def edit(before: str, old: str, new: str) -> str:
    assert old in before
    return before.replace(old, new)


def diff(path: str, before: str, after: str, copy_style: bool = False) -> object:
    part = {"before": before, "after": after, "before_header": path, "after_header": path}
    if copy_style:  # copy/template: a list, after_header names the source
        return [part | {"after_header": "dynamically generated"}]
    return part


def planted_report() -> tuple[dict, set[str]]:
    qemu, libvirtd, lvm = text("qemu.conf"), text("libvirtd.conf"), text("lvmlocal.conf")
    grub, scrub = text("hvguard-grub.cfg"), text("hvguard-scrub.json")
    others = [text(n) for n in ("hvguard-scrub.service", "hvguard-ksm.conf", "nftables.conf")]
    secrets = planted(qemu, libvirtd, lvm, grub, scrub, *others) | ALL_PEM_LINES
    agg = hr.Aggregator(CATALOGUE)
    agg.start_play("audit", set(CATALOGUE), check_mode=True)

    def rec(host: str, cid: str, outcome: str, result: dict, task: str = "") -> None:
        agg.record(host, task or f"{cid} | task", [cid], outcome, result, True)

    new_qemu = edit(qemu, "dump_guest_core = 1", "dump_guest_core = 0")
    rec("hv1", "HVG-MEM-003", "ok", {"changed": True, "diff": diff("/q", qemu, new_qemu)})
    new_libvirtd = edit(libvirtd, "listen_tls = 0", "listen_tls = 1")
    rec("hv1", "HVG-MIG-002", "ok", {"changed": True, "diff": diff("/l", libvirtd, new_libvirtd)})
    new_lvm = lvm + "\n# Managed by hvguard\ndevices {\n\tissue_discards = 1\n}\n"
    rec("hv1", "HVG-STO-004", "ok", {"changed": True, "diff": diff("/lvm", lvm, new_lvm)})
    new_grub = '# Managed by hvguard\nGRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX init_on_free=1"\n'
    rec("hv1", "HVG-MEM-001", "ok", {"changed": True, "diff": diff("/g", grub, new_grub, True)})
    new_scrub = json.dumps({"state_dir": "/var/lib/hvguard-scrub", "pools": []}, indent=2)
    rec("hv1", "HVG-STO-001", "ok", {"changed": True, "diff": diff("/s", scrub, new_scrub, True)})
    unit = text("hvguard-scrub.service")
    new_unit = text("hvguard-scrub.service.j2")
    udiff = diff("/etc/systemd/system/hvguard-scrub.service", unit, new_unit, True)
    rec("hv3", "HVG-STO-001", "ok", {"changed": True, "diff": udiff})
    ksm = text("hvguard-ksm.conf")
    new_ksm = edit(ksm, "- 1", "- 0")
    rec("hv3", "HVG-MEM-002", "ok", {"changed": True, "diff": diff("/etc/t", ksm, new_ksm, True)})
    nft = text("nftables.conf")
    new_nft = nft + 'include "/etc/nftables.d/hvguard-*.nft"\n'
    ndiff = diff("/etc/nftables.conf", nft, new_nft)
    rec("hv3", "HVG-MIG-005", "ok", {"changed": True, "diff": ndiff})
    items = [
        {"changed": True, "item": {"name": name}, "_ansible_item_label": f"/etc/pki/{name}",
         "diff": diff(f"/etc/pki/{name}", old, new, True)}
        for name, old, new in (("server-key.pem", OLD_KEY, NEW_KEY),
                               ("servercert.pem", OLD_CERT, NEW_CERT),
                               ("client-key.pem", "", NEW_KEY))
    ]  # fmt: skip
    rec("hv1", "HVG-MIG-001", "ok", {"changed": True, "results": items})
    # other paths: prepared diffs, messages, stderr, findings, item labels, conditions
    prepared = "--- a\n+++ b\n+api_token = PLANTED-prepared-9a\n" + "".join(
        f"+{line}\n" for line in pem_bodies(OLD_RSA)
    )
    rec("hv2", "HVG-MEM-003", "ok", {"changed": True, "diff": {"prepared": prepared}})
    failed = {
        "msg": "curl: Authorization: Bearer PLANTED-msg-bearer-1",
        "stderr": f"cmd --password PLANTED-stderr-flag-2 failed\n{OLD_RSA}",
        "rc": 1,
    }
    rec("hv2", "HVG-MIG-002", "failed", failed)
    finding = {
        "hvguard_status": "drift",
        "msg": "found secret_key: PLANTED-finding-msg-3",
        "evidence": {
            "password": "PLANTED-finding-pw-4",
            "stdout": "token=PLANTED-finding-stdout-5\n" + OLD_CERT,
            "settings": [{"key": "vnc_password", "value": "PLANTED-finding-kv-6"}],
        },
    }
    rec("hv2", "HVG-MIG-006", "ok", finding)
    loop = {"changed": True, "results": [
        {"changed": True, "item": {"user": "a", "password": "PLANTED-item-7"}},
        {"changed": True, "item": "x", "_ansible_item_label": "--token PLANTED-label-8"},
    ]}  # fmt: skip
    rec("hv2", "HVG-STO-004", "ok", loop)
    rec("hv2", "HVG-MEM-001", "skipped", {"false_condition": "vault_token == 'PLANTED-cond-9'"})
    rec("hv3", "HVG-MEM-003", "unreachable", {"msg": "ssh://admin:PLANTED-unreach-10@hv3 down"})
    agg.record(
        "hv3", "facts", [], "failed", {"msg": "secret=PLANTED-stop-11"}, True, stops_host=True
    )
    secrets |= {f"PLANTED-{s}" for s in ("prepared-9a", "msg-bearer-1", "stderr-flag-2")}
    secrets |= {f"PLANTED-{s}" for s in ("finding-msg-3", "finding-pw-4", "finding-stdout-5")}
    secrets |= {f"PLANTED-{s}" for s in ("finding-kv-6", "item-7", "label-8", "cond-9")}
    secrets |= {"PLANTED-unreach-10", "PLANTED-stop-11"}
    meta = {"check_mode": True, "playbooks": ["audit.yml"], "catalogue": {}, "warnings": []}
    return hr.build_report(agg, meta), secrets


def test_planted_secrets_reach_no_report_format() -> None:
    """HVG-MEM-003 HVG-MIG-001 HVG-MIG-002 HVG-STO-001 HVG-STO-004 HVG-MEM-001: JSON, JUnit,
    HTML, Markdown and the console carry no planted secret from any evidence path."""
    report, secrets = planted_report()
    outputs = {fmt: render(report) for fmt, render in hr.RENDERERS.items()}
    outputs["console"] = "\n".join(hr.render_console(report, ["/r/hvguard-report.json"]))
    for where, output in outputs.items():
        assert_clean(output, where, secrets)
    # The drift stays readable: the line is there with the value replaced.
    cells = report["hosts"]["hv1"]["controls"]
    qemu = cells["HVG-MEM-003"]["evidence"][0]["diff"]
    assert ' vnc_password = "<redacted>"' in qemu
    assert " spice_password = '<redacted>'" in qemu
    assert "-dump_guest_core = 1\n+dump_guest_core = 0" in qemu
    assert '-tls_key_passphrase = "<redacted>"' not in cells["HVG-MIG-002"]["evidence"][0]["diff"]
    assert "+listen_tls = 1" in cells["HVG-MIG-002"]["evidence"][0]["diff"]
    assert '-GRUB_PASSWORD="<redacted>"' in cells["HVG-MEM-001"]["evidence"][0]["diff"]
    assert '-  "notify_token": "<redacted>",' in cells["HVG-STO-001"]["evidence"][0]["diff"]
    unit = report["hosts"]["hv3"]["controls"]["HVG-STO-001"]["evidence"][0]["diff"]
    assert '-Environment="SCRUB_NOTIFY_PASSWORD=<redacted>' in unit
    assert "-Environment=API_TOKEN=<redacted>" in unit
    key = cells["HVG-MIG-001"]["evidence"][0]["diff"]
    assert " -----BEGIN PRIVATE KEY-----" in key
    assert re.search(r"^-<redacted sha256:\w+>\n\+<redacted sha256:\w+>$", key, re.M)
    for fmt in ("json", "md", "junit"):
        assert "vnc_password = " in outputs[fmt]
    assert "vnc_password = &#34;&lt;redacted&gt;&#34;" in outputs["html"]


# -- at the source: the pack's own modules ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "settings"),
    [("qemu.conf", {"dump_guest_core": 0}), ("libvirtd.conf", {"listen_tls": 1})],
)
def test_libvirt_conf_module_redacts_its_diff_and_keeps_the_file(tmp_path, capsys, name, settings):
    """HVG-MEM-003 / HVG-MIG-002: the module's diff (printed by Ansible with --diff) hides the
    secrets; the file itself keeps them."""
    conf = tmp_path / name
    shutil.copy(SECRETS / name, conf)
    secrets = planted(conf.read_text())
    args = {"path": str(conf), "settings": settings}
    checked = run_module(libvirt_conf, capsys, args, check=True, diff=True)
    assert checked["changed"] is True
    assert_clean(json.dumps(checked), f"{name} diff", secrets)
    assert "<redacted>" in checked["diff"]["before"] and "<redacted>" in checked["diff"]["after"]
    applied = run_module(libvirt_conf, capsys, args, diff=True)
    assert applied["changed"] is True
    assert_clean(json.dumps(applied), f"{name} diff", secrets)
    assert planted(conf.read_text()) == secrets  # redaction is for the diff only
    assert run_module(libvirt_conf, capsys, args)["changed"] is False


@pytest.mark.skipif(
    not Path("/etc/lvm/lvm.conf").exists() or not os.path.exists(LVM), reason="LVM not installed"
)
def test_lvm_conf_module_redacts_its_diff_and_keeps_the_file(tmp_path) -> None:
    """HVG-STO-004: hvguard_lvm_conf's diff hides what lvmlocal.conf's comments hold."""
    lvmdir = tmp_path / "lvm"
    shutil.copytree("/etc/lvm", lvmdir)
    shutil.copy(SECRETS / "lvmlocal.conf", lvmdir / "lvmlocal.conf")
    secrets = planted((lvmdir / "lvmlocal.conf").read_text())

    def run(check: bool) -> dict:
        args = {
            "path": str(lvmdir / "lvmlocal.conf"),
            "settings": {"devices/issue_discards": 1},
            "lvm": LVM,
            "_ansible_check_mode": check,
            "_ansible_diff": True,
        }
        argfile = tmp_path / "args.json"
        argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        script = ROOT / "library" / "hvguard_lvm_conf.py"
        proc = subprocess.run(
            [sys.executable, str(script), str(argfile)], capture_output=True, text=True
        )
        return json.loads(proc.stdout)

    checked = run(check=True)
    assert checked["changed"] is True, checked
    assert_clean(json.dumps(checked), "lvm diff", secrets)
    assert '# luks_passphrase = "<redacted>"' in checked["diff"]["after"]
    applied = run(check=False)
    assert applied["changed"] is True, applied
    assert_clean(json.dumps(applied), "lvm diff", secrets)
    assert planted((lvmdir / "lvmlocal.conf").read_text()) == secrets


# -- a real run: copy, template and the pack's modules, every report file ---------------


def test_real_check_run_reports_carry_no_planted_secret(tmp_path) -> None:
    """HVG-MIG-001 HVG-MEM-001 HVG-STO-001 HVG-MEM-003 HVG-MIG-002 HVG-STO-004 through
    ansible-playbook --check --diff: real copy/template/module results."""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip("no .venv/bin/ansible-playbook (run make venv)")
    data = tmp_path / "data"
    data.mkdir()
    copied = ("qemu.conf", "libvirtd.conf", "hvguard-grub.cfg", "hvguard-scrub.json",
                 "hvguard-scrub.service", "hvguard-ksm.conf", "nftables.conf")  # fmt: skip
    for name in copied:
        shutil.copy(SECRETS / name, data / name)
    (data / "server-key.pem").write_text(OLD_KEY)
    (data / "cacert.pem").write_text(OLD_CERT)
    have_lvm = Path("/etc/lvm/lvm.conf").exists() and os.path.exists(LVM)
    if have_lvm:
        shutil.copytree("/etc/lvm", data / "lvm")
        shutil.copy(SECRETS / "lvmlocal.conf", data / "lvm" / "lvmlocal.conf")
    secrets = planted(*(text(n) for n in copied))
    if have_lvm:
        secrets |= planted(text("lvmlocal.conf"))
    secrets |= set(pem_bodies(OLD_KEY, OLD_CERT, NEW_KEY, NEW_CERT))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "HVGUARD_"))}
    env |= {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "HVGUARD_REPORT_DIR": str(tmp_path / "reports"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    extra = {
        "secrets_dir": str(data),
        "secrets_templates": str(SECRETS),
        "secrets_lvm": LVM if have_lvm else "",
        "secrets_new_key": NEW_KEY,
        "secrets_new_cert": NEW_CERT,
    }
    cmd = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", "--check", "--diff"]
    cmd += [str(SECRETS / "play.yml"), "-e", json.dumps(extra)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    top = sorted((tmp_path / "reports").iterdir())
    assert [p.name for p in top] == sorted([*hr.FORMAT_FILES.values(), "latest", "runs"])
    reports = [p for p in top if p.is_file() and not p.is_symlink()]
    reports += sorted((tmp_path / "reports" / "latest").iterdir())
    assert len(reports) == 2 * len(hr.FORMAT_FILES)
    for path in reports:
        assert_clean(path.read_text(), path.name, secrets)
    # the console table our callback prints (after the play recap)
    assert_clean(proc.stdout.split("PLAY RECAP")[1], "console", secrets)
    # the pack's modules redact at the source: Ansible's own --diff output is clean for them
    module_secrets = planted(text("qemu.conf"), text("libvirtd.conf"))
    if have_lvm:
        module_secrets |= planted(text("lvmlocal.conf"))
    leaked = sorted(s for s in module_secrets if s in proc.stdout)
    assert not leaked, f"ansible-playbook --diff output leaks {leaked}"
    report = json.loads((tmp_path / "reports" / "hvguard-report.json").read_text())
    statuses = {c: v["status"] for c, v in report["hosts"]["localhost"]["controls"].items()}
    expected = {"HVG-MEM-001", "HVG-MEM-002", "HVG-MEM-003", "HVG-MIG-001", "HVG-MIG-002"}
    expected |= {"HVG-MIG-005", "HVG-STO-001"}
    assert statuses == dict.fromkeys(expected | ({"HVG-STO-004"} if have_lvm else set()), "drift")
    evidence = report["hosts"]["localhost"]["controls"]["HVG-MEM-003"]["evidence"][0]
    assert 'vnc_password = "<redacted>"' in evidence["diff"]
    for name in copied:
        assert (data / name).read_text() == text(name)  # check mode
