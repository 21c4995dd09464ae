# SPDX-License-Identifier: Apache-2.0
"""hvguard_patching's configuration files, rendered from the role and read by the real tools.

- APT (HVG-PAT-001): the drop-in passes the role's validator (``apt-config -c FILE dump``) and,
  merged by apt-config after Debian's 50unattended-upgrades and 20auto-upgrades, leaves only
  the security origin pattern, no automatic reboot and both dpkg conffile options.
- needrestart (HVG-PAT-002): the snippet passes ``perl -c`` and, evaluated the way needrestart
  3.6 evaluates /etc/needrestart/conf.d/*.conf (``eval do { local(@ARGV, $/) = $fn; <> }``
  after needrestart.conf), sets list-only mode and matches every libvirt daemon in
  ``override_rc`` with 0, while other services keep the default.
- libvirt-guests (HVG-PAT-002): passes ``sh -n`` and, sourced by sh, gives ON_BOOT=start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "hvguard_patching"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
TASKS = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
needs = {t: pytest.mark.skipif(shutil.which(t) is None, reason=f"{t} not installed")
         for t in ("apt-config", "perl", "sh")}  # fmt: skip

# Debian 12's unattended-upgrades 2.9.1 defaults, in the parts that matter here: both the
# plain "Debian" origin (point releases: not security) and the security origin.
DEBIAN_50UU = """Unattended-Upgrade::Origins-Pattern {
        "origin=Debian,codename=${distro_codename},label=Debian";
        "origin=Debian,codename=${distro_codename},label=Debian-Security";
        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";
};
Unattended-Upgrade::Package-Blacklist {
};
//Unattended-Upgrade::Automatic-Reboot "false";
"""
DEBIAN_20AUTO = """APT::Periodic::Update-Package-Lists "0";
APT::Periodic::Unattended-Upgrade "0";
"""
SECURITY_ONLY = ["origin=Debian,codename=${distro_codename}-security,label=Debian-Security"]
LIBVIRT_UNITS = [
    "libvirtd.service", "libvirtd-tls.socket", "virtqemud.service", "virtproxyd.service",
    "virtlogd.service", "virtlockd.service", "libvirt-guests.service",
    "virtnetworkd.service", "virtstoraged.service", "virtnodedevd.service",
]  # fmt: skip


def render(template: str, **overrides: Any) -> str:
    # Ansible's template module renders with trim_blocks on.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        trim_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(template).render({**DEFAULTS, **overrides})


def validator(template: str) -> str:
    """The `validate` of the hvguard_files entry that installs ``template``."""
    entry = rf"'ansible\.builtin\.template', '{re.escape(template)}'\).*?'validate': '([^']*)'"
    found = [
        re.search(entry, t["hvguard_files"]["files"], re.S) for t in TASKS if "hvguard_files" in t
    ]
    [match] = [m for m in found if m]
    return match.group(1)


def validate(template: str, path: Path) -> subprocess.CompletedProcess[str]:
    argv = validator(template).replace("%s", str(path)).split()
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- APT -------------------------------------------------------------------------------------
def apt_dump(tmp: Path, parts: dict[str, str]) -> dict[str, list[str]]:
    """apt-config's merged view of a private parts directory, as key -> values."""
    for name, text in parts.items():
        write(tmp / "parts", name, text)
    conf = write(tmp, "apt.conf", f'Dir::Etc::parts "{tmp / "parts"}";\n')
    out = subprocess.run(
        ["apt-config", "dump"],
        env={**os.environ, "APT_CONFIG": str(conf)},
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    merged: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        value = value.rstrip(";").strip('"')
        merged.setdefault(key.rstrip(":").lower(), []).append(value)  # APT keys: any case
    return merged


@needs["apt-config"]
@pytest.mark.control("HVG-PAT-001")
def test_apt_dropin_leaves_only_security_origins(tmp_path: Path) -> None:
    ours = render("52hvguard-unattended-upgrades.j2", hvguard_patching_package_blocklist=["^qemu-"])
    path = write(tmp_path, "52hvguard", ours)
    assert validate("52hvguard-unattended-upgrades.j2", path).returncode == 0
    merged = apt_dump(
        tmp_path,
        {"20auto-upgrades": DEBIAN_20AUTO, "50unattended-upgrades": DEBIAN_50UU,
         "52hvguard-unattended-upgrades": ours},
    )  # fmt: skip
    assert [v for v in merged["unattended-upgrade::origins-pattern"] if v] == SECURITY_ONLY
    assert [v for v in merged["unattended-upgrade::package-blacklist"] if v] == ["^qemu-"]
    assert merged["unattended-upgrade::automatic-reboot"] == ["false"]
    assert merged["unattended-upgrade::syslogenable"] == ["true"]
    assert merged["apt::periodic::unattended-upgrade"] == ["1"]
    assert merged["apt::periodic::update-package-lists"] == ["1"]
    options = [v for v in merged["dpkg::options"] if v]
    assert "--force-confdef" in options and "--force-confold" in options


@needs["apt-config"]
def test_without_the_clear_the_debian_origin_would_leak_in(tmp_path: Path) -> None:
    """The control's reason for #clear: APT merges lists across files."""
    ours = render("52hvguard-unattended-upgrades.j2").replace(
        "#clear Unattended-Upgrade::Origins-Pattern;", ""
    )
    merged = apt_dump(tmp_path, {"50unattended-upgrades": DEBIAN_50UU, "52hvguard": ours})
    assert (
        "origin=Debian,codename=${distro_codename},label=Debian"
        in (merged["unattended-upgrade::origins-pattern"])
    )


@needs["apt-config"]
def test_apt_validator_rejects_a_broken_dropin(tmp_path: Path) -> None:
    broken = render("52hvguard-unattended-upgrades.j2", hvguard_patching_origins_patterns=['a"b'])
    path = write(tmp_path, "52hvguard", broken)
    proc = validate("52hvguard-unattended-upgrades.j2", path)
    assert proc.returncode != 0 and "Syntax error" in proc.stderr, proc.stderr


def test_maintenance_window_dropin_resets_and_sets_oncalendar(tmp_path: Path) -> None:
    text = render(
        "apt-daily-upgrade-window.conf.j2", hvguard_patching_maintenance_window="Sun *-*-* 03:00"
    )
    lines = text.splitlines()
    assert lines.index("OnCalendar=") < lines.index("OnCalendar=Sun *-*-* 03:00")
    assert "RandomizedDelaySec=15m" in lines
    if shutil.which("systemd-analyze") is None:
        return  # the expression's own check needs systemd's parser; the rendering is checked
    proc = subprocess.run(
        ["systemd-analyze", "calendar", "Sun *-*-* 03:00"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


# -- needrestart -----------------------------------------------------------------------------
# needrestart 3.6: its own override_rc defaults are replaced by a neutral one here, so only
# the hvguard snippet can protect libvirt; the eval line is needrestart.conf's own.
NEEDRESTART_EVAL = r"""
use strict; use warnings;
our %nrconf;
$nrconf{restart} = 'i';
$nrconf{override_rc} = { qr(^dbus) => 0 };
my $fn = shift @ARGV;
eval do { local(@ARGV, $/) = $fn; <>};
die "Error parsing $fn: $@" if($@);
my %out = (restart => $nrconf{restart});
foreach my $rc (@ARGV) {
    my $sel = 1;
    foreach my $re (keys %{$nrconf{override_rc}}) {
        next unless($rc =~ /$re/);
        $sel = $nrconf{override_rc}->{$re};
        last;
    }
    $out{$rc} = $sel;
}
print join("\n", map { "$_=$out{$_}" } sort keys %out), "\n";
"""


def needrestart_view(snippet: Path, units: list[str]) -> dict[str, str]:
    proc = subprocess.run(
        ["perl", "-e", NEEDRESTART_EVAL, str(snippet), *units],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


@needs["perl"]
@pytest.mark.control("HVG-PAT-002")
def test_needrestart_snippet_lists_only_and_never_selects_libvirt(tmp_path: Path) -> None:
    path = write(tmp_path, "90-hvguard.conf", render("90-hvguard.conf.j2"))
    assert validate("90-hvguard.conf.j2", path).returncode == 0
    view = needrestart_view(path, [*LIBVIRT_UNITS, "ssh.service", "cron.service"])
    assert view.pop("restart") == "l"
    assert {u: view[u] for u in LIBVIRT_UNITS} == dict.fromkeys(LIBVIRT_UNITS, "0")
    assert (view["ssh.service"], view["cron.service"]) == ("1", "1")


@needs["perl"]
def test_perl_validator_rejects_a_broken_snippet(tmp_path: Path) -> None:
    text = render("90-hvguard.conf.j2", hvguard_patching_needrestart_never_restart=["^virt(oops"])
    path = write(tmp_path, "90-hvguard.conf", text)
    assert validate("90-hvguard.conf.j2", path).returncode != 0


# -- libvirt-guests --------------------------------------------------------------------------
def sourced(path: Path) -> dict[str, str]:
    names = "ON_BOOT ON_SHUTDOWN SHUTDOWN_TIMEOUT URIS"
    script = f'. "{path}"; for v in {names}; do eval echo "$v=\\$$v"; done'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@needs["sh"]
@pytest.mark.control("HVG-PAT-002")
@pytest.mark.parametrize("on_shutdown", ["shutdown", "suspend"])
def test_libvirt_guests_brings_the_guests_back(tmp_path: Path, on_shutdown: str) -> None:
    text = render("libvirt-guests.j2", hvguard_patching_guests_on_shutdown=on_shutdown)
    path = write(tmp_path, "libvirt-guests", text)
    assert validate("libvirt-guests.j2", path).returncode == 0
    assert sourced(path) == {
        "ON_BOOT": "start", "ON_SHUTDOWN": on_shutdown, "SHUTDOWN_TIMEOUT": "300",
        "URIS": "default",
    }  # fmt: skip


def test_rendered_files_name_their_control() -> None:
    for template, cid in [("52hvguard-unattended-upgrades.j2", "HVG-PAT-001"),
                          ("apt-daily-upgrade-window.conf.j2", "HVG-PAT-001"),
                          ("90-hvguard.conf.j2", "HVG-PAT-002"),
                          ("libvirt-guests.j2", "HVG-PAT-002")]:  # fmt: skip
        assert f"Managed by hvguard ({cid})" in render(template), template
    assert json.dumps(DEFAULTS["hvguard_patching_origins_patterns"]) == json.dumps(SECURITY_ONLY)


@pytest.mark.control("HVG-PAT-001")
def test_only_packages_the_facts_found_missing_are_installed(tmp_path: Path) -> None:
    """The role's apt task gets exactly the packages hvguard_patch_facts reported without an
    installed version (evaluated by Ansible from the role's vars/main.yml)."""
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n"
        f"  vars_files: [{ROLE / 'vars' / 'main.yml'}]\n"
        "  tasks:\n    - ansible.builtin.debug:\n"
        '        msg: "MISSING={{ __hvguard_patching_missing_packages | to_json }}"\n'
    )
    cases = [
        ({"a": "1.0", "b": None}, ["b", "c"]),
        ({"a": "1.0", "b": "2", "c": "3"}, []),
        ({}, ["a", "b", "c"]),
    ]
    for packages, want in cases:
        extra = {"__hvguard_patching_packages": ["a", "b", "c"],
                 "hvguard_patch": {"packages": packages}}  # fmt: skip
        proc = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(play), "-e", json.dumps(extra)],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        [line] = [x for x in proc.stdout.splitlines() if "MISSING=" in x]
        assert json.loads(line.split("MISSING=", 1)[1].rstrip('"').replace('\\"', '"')) == want
