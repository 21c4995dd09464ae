# SPDX-License-Identifier: Apache-2.0
"""library/hvguard_libvirt_conf: check mode, diff, idempotence, validation, file attributes."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import (
    ROOT,
    ansible_adhoc,
    ansible_doc,
    load_library,
    load_module_utils,
    run_module,
)

mod = load_library("hvguard_libvirt_conf")
virconf = load_module_utils("hvguard_virconf")
FIXTURE = ROOT / "tests" / "fixtures" / "modules" / "virconf" / "libvirtd.conf"
SETTINGS = {
    "listen_tls": True,
    "listen_tcp": False,
    "tls_allowed_dn_list": ["O=lab,CN=hv1", "O=lab,CN=hv2"],
    "tls_priority": "@LIBVIRT,SYSTEM:-VERS-TLS1.1:-VERS-TLS1.0",
}


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "libvirtd.conf"
    path.write_bytes(FIXTURE.read_bytes())
    path.chmod(0o640)
    return path


def snapshot(path: Path) -> tuple[bytes, int, int, int]:
    st = path.stat()
    return path.read_bytes(), st.st_ino, st.st_mtime_ns, stat.S_IMODE(st.st_mode)


def test_check_mode_writes_nothing_and_reports_drift_with_diff(conf, capsys):
    before = snapshot(conf)
    result = run_module(mod, capsys, {"path": str(conf), "settings": SETTINGS}, True, True)
    assert snapshot(conf) == before
    assert result["changed"] is True
    assert result["changed_keys"] == list(SETTINGS)
    diff = result["diff"]
    assert diff["before"] == FIXTURE.read_text()
    assert diff["before_header"] == diff["after_header"] == str(conf)
    assert diff["after"].endswith(
        "\n# Managed by hvguard\nlisten_tls = 1\nlisten_tcp = 0\n"
        'tls_allowed_dn_list = [ "O=lab,CN=hv1", "O=lab,CN=hv2" ]\n'
        'tls_priority = "@LIBVIRT,SYSTEM:-VERS-TLS1.1:-VERS-TLS1.0"\n'
    )


def test_apply_writes_atomically_keeps_mode_and_is_idempotent(conf, capsys):
    _, inode, _, _ = snapshot(conf)
    first = run_module(mod, capsys, {"path": str(conf), "settings": SETTINGS})
    assert first["changed"] is True
    written = virconf.VirConf(conf.read_text())
    assert written.get("listen_tls") == 1
    assert written.get("tls_allowed_dn_list") == SETTINGS["tls_allowed_dn_list"]
    assert conf.read_text().startswith(FIXTURE.read_text())  # comments kept
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert conf.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert not [p for p in conf.parent.iterdir() if p.name.startswith(".hvguard-")]

    before = snapshot(conf)
    second = run_module(mod, capsys, {"path": str(conf), "settings": SETTINGS})
    assert second["changed"] is False
    assert second["changed_keys"] == []
    assert snapshot(conf) == before
    again = run_module(mod, capsys, {"path": str(conf), "settings": SETTINGS}, True, True)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"]


def test_replaces_existing_value_and_removes_absent(tmp_path, capsys):
    path = tmp_path / "qemu.conf"
    path.write_text('# keep\ndump_guest_core = 1 # why\nmax_core = "unlimited"\nvnc_tls = 0\n')
    args = {"path": str(path), "settings": {"dump_guest_core": False}, "absent": ["max_core"]}
    result = run_module(mod, capsys, args)
    assert result["changed_keys"] == ["dump_guest_core", "max_core"]
    assert path.read_text() == "# keep\ndump_guest_core = 0 # why\nvnc_tls = 0\n"


def test_invalid_existing_file_fails_with_line_and_changes_nothing(conf, capsys):
    conf.write_text(FIXTURE.read_text() + 'listen_tls = 1\nauth_tls = "sasl\n')
    before = snapshot(conf)
    result = run_module(mod, capsys, {"path": str(conf), "settings": SETTINGS})
    assert result["failed"] is True
    line = FIXTURE.read_text().count("\n") + 2
    assert result["msg"] == f"invalid libvirt config: {conf}:{line}: unterminated string"
    assert result["line"] == line
    assert snapshot(conf) == before


@pytest.mark.parametrize(
    ("settings", "absent", "message"),
    [
        ({"bad-key": 1}, [], "invalid libvirt config key 'bad-key'"),
        ({}, ["9lives"], "invalid libvirt config key '9lives'"),
        ({"listen_tls": 1.5}, [], "listen_tls: unsupported type float"),
        ({"tls_allowed_dn_list": ["a", 2]}, [], "tls_allowed_dn_list: list items must be"),
        ({"listen_tls": 1}, ["listen_tls"], "both in settings and absent: listen_tls"),
        ({"x": 'a"b\'c"'}, [], "cannot be written in libvirt config syntax"),
    ],
)
def test_bad_input_fails_clearly_and_changes_nothing(conf, capsys, settings, absent, message):
    before = snapshot(conf)
    args = {"path": str(conf), "settings": settings, "absent": absent}
    result = run_module(mod, capsys, args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert snapshot(conf) == before


def test_missing_file_needs_create(tmp_path, capsys):
    path = tmp_path / "virtproxyd.conf"
    result = run_module(mod, capsys, {"path": str(path), "settings": {"listen_tls": 1}})
    assert result["failed"] is True
    assert "does not exist (set create=true" in result["msg"]
    assert not path.exists()

    args = {"path": str(path), "settings": {"listen_tls": 1}, "create": True}
    checked = run_module(mod, capsys, args, check=True, diff=True)
    assert checked["changed"] is True
    assert checked["diff"]["before_header"] == "/dev/null"
    assert not path.exists()

    created = run_module(mod, capsys, args)
    assert created["changed"] is True
    assert path.read_text() == "# Managed by hvguard\nlisten_tls = 1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert run_module(mod, capsys, args)["changed"] is False


def test_symlink_target_is_edited_and_link_kept(conf, capsys):
    link = conf.parent / "link.conf"
    link.symlink_to(conf.name)
    result = run_module(mod, capsys, {"path": str(link), "settings": {"listen_tls": 1}})
    assert result["changed"] is True
    assert link.is_symlink()
    assert virconf.VirConf(conf.read_text()).get("listen_tls") == 1


def test_backup_keeps_previous_content(conf, capsys):
    result = run_module(mod, capsys, {"path": str(conf), "settings": SETTINGS, "backup": True})
    backup = Path(result["backup_file"])
    assert backup.read_bytes() == FIXTURE.read_bytes()
    assert conf.read_bytes() != FIXTURE.read_bytes()


def test_mode_drift_is_reported_in_check_mode_and_fixed_in_apply(conf, capsys):
    run_module(mod, capsys, {"path": str(conf), "settings": SETTINGS})
    args = {"path": str(conf), "settings": SETTINGS, "mode": "0600"}
    checked = run_module(mod, capsys, args, check=True)
    assert checked["changed"] is True
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    applied = run_module(mod, capsys, args)
    assert applied["changed"] is True
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert run_module(mod, capsys, args)["changed"] is False


def test_ansible_doc_renders():
    text = ansible_doc("hvguard_libvirt_conf")
    for word in ("settings", "absent", "create", "backup", "changed_keys", "EXAMPLES"):
        assert word in text


def test_real_ansible_run_check_then_apply(conf, tmp_path):
    args = {"path": str(conf), "settings": SETTINGS, "absent": ["auth_tcp"]}
    before = snapshot(conf)
    checked = ansible_adhoc("hvguard_libvirt_conf", args, tmp_path / "r", check=True, diff=True)
    assert checked["changed"] is True, checked
    assert snapshot(conf) == before
    applied = ansible_adhoc("hvguard_libvirt_conf", args, tmp_path / "r")
    assert applied["changed"] is True, applied
    assert virconf.VirConf(conf.read_text()).get("listen_tcp") == 0
    again = ansible_adhoc("hvguard_libvirt_conf", args, tmp_path / "r", check=True)
    assert again["changed"] is False, again
    assert os.access(conf, os.R_OK)
