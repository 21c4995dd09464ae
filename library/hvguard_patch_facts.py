#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: patch state of a hypervisor (pending updates, reboot, stale QEMU) in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hvguard_patch_facts
short_description: Report the patch state of a hypervisor (updates, reboot, stale QEMU processes)
description:
  - Returns C(ansible_facts.hvguard_patch) with four parts, gathered in one call with the
    Python standard library only (no python3-apt).
  - C(updates) lists the pending updates from a simulated C(apt-get dist-upgrade) (nothing is
    installed or locked). An update is a security update when one of its candidate's origins
    has a suite matching O(security_suite_regex) (C(bookworm-security), C(stable-security),
    C(noble-security)). Each security update carries C(name), C(installed), C(candidate),
    C(origins), C(first_seen) (epoch seconds), C(age_days) and C(recorded).
  - The age of a security update counts from the first time this module saw that candidate
    version, recorded in O(state_file) on the host. Entries of updates no longer pending are
    dropped. In check mode the state file is never written; an update not recorded yet then
    reports C(first_seen=null), C(age_days=0) and C(recorded=false) (its clock starts with the
    first run that may write, so an audit-only fleet never ages an update).
  - C(reboot) says whether a reboot is pending, from the sentinel file
    (O(reboot_required_file), C(.pkgs) next to it) and from the running kernel release being
    older than the newest C(vmlinuz-*) in O(boot_dir) (Debian version order); C(since) is the
    oldest of the sentinel's and the newer kernel's modification times.
  - C(qemu) lists every running process whose executable's name matches O(process_regex)
    with the domain name and UUID from its command line (C(-name guest=...), C(-uuid)), and
    whether it runs replaced code. An executable or executable mapping shown as C((deleted))
    in C(/proc/PID/exe) or C(/proc/PID/maps) is compared with the file now at that path by
    GNU build-id (ELF note; SHA-256 of the content when there is no build-id); an identical
    file (same build-id) is a C(unchanged_replacement), anything else (different build-id,
    file gone) a C(changed) file, and the process is C(stale).
  - C(unattended_upgrades) reads O(uu_log) for the last run, the errors logged since that run
    started and the packages it reported as kept back.
version_added: "0.1.0"
author: hvguard contributors
options:
  state_file:
    description: JSON file where the first-seen time of each pending security update is kept.
    type: path
    default: /var/lib/hvguard/patch-first-seen.json
  security_suite_regex:
    description:
      - Regular expression a candidate origin's suite must match (search) to count as security.
    type: str
    default: "-security$"
  apt_config:
    description:
      - Path of an APT configuration file, passed as C(APT_CONFIG) (a private APT root for tests).
    type: path
  updates:
    description: List pending updates (runs C(apt-get -s dist-upgrade)); C(false) skips it.
    type: bool
    default: true
  process_regex:
    description: Regular expression (full match) on the executable's file name of a QEMU process.
    type: str
    default: "qemu-system-[A-Za-z0-9_.-]+|qemu-kvm"
  proc_dir:
    description: Where procfs is mounted.
    type: path
    default: /proc
  reboot_required_file:
    description: Sentinel file that package scripts create when a reboot is needed.
    type: path
    default: /run/reboot-required
  boot_dir:
    description: Directory holding the installed kernels (C(vmlinuz-RELEASE)).
    type: path
    default: /boot
  running_kernel:
    description: Release of the running kernel; by default the one C(uname -r) reports.
    type: str
  uu_log:
    description: unattended-upgrades' log file.
    type: path
    default: /var/log/unattended-upgrades/unattended-upgrades.log
  needrestart_paths:
    description: Paths whose existence means needrestart is installed.
    type: list
    elements: path
    default: [/usr/sbin/needrestart, /etc/needrestart]
  packages:
    description:
      - Packages whose installed version is wanted (in C(packages)), read from O(dpkg_status).
        The role installs only those reported missing, so a host that has them pays no
        package-manager round trip in the audit.
    type: list
    elements: str
    default: []
  dpkg_status:
    description: dpkg's database of installed packages.
    type: path
    default: /var/lib/dpkg/status
  qemu_log_dir:
    description:
      - Where libvirt writes each domain's QEMU log (C(NAME.log)), read for the QEMU version
        libvirt started it with.
    type: path
    default: /var/log/libvirt/qemu
  timeout:
    description: Seconds the C(apt-get) simulation may take.
    type: int
    default: 120
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
notes:
  - Reading other processes' C(/proc/PID/map_files) and C(/proc/PID/exe) needs root.
  - The simulation reads APT's cache as it is; refreshing it (C(apt-get update)) is the job of
    the APT timers or the caller.
"""

EXAMPLES = r"""
- name: Gather the patch state
  hvguard_patch_facts:

- name: Patch state without the APT simulation (stale QEMU and reboot only)
  hvguard_patch_facts:
    updates: false

- name: Show the stale QEMU processes
  ansible.builtin.debug:
    msg: "{{ hvguard_patch.qemu.stale | map(attribute='name') | list }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    hvguard_patch:
      description: The patch state.
      type: dict
      returned: always
      sample:
        updates:
          ok: true
          error: null
          security:
            - name: libssl3
              installed: 3.0.11-1~deb12u1
              candidate: 3.0.11-1~deb12u2
              origins: ["Debian-Security:12/stable-security"]
              first_seen: 1764000000
              age_days: 12.5
              recorded: true
          other:
            - name: tzdata
              installed: 2024a-0+deb12u1
              candidate: 2024b-0+deb12u1
              origins: ["Debian:12.8/stable"]
          state_file: /var/lib/hvguard/patch-first-seen.json
          state_changed: false
        reboot:
          required: true
          sentinel: true
          packages: [linux-image-6.1.0-30-amd64]
          running_kernel: 6.1.0-28-amd64
          newest_kernel: 6.1.0-30-amd64
          kernel_outdated: true
          since: 1764000000
          age_days: 3.2
        qemu:
          processes:
            - pid: 4242
              name: web1
              uuid: 1b4e28ba-2fa1-11d2-883f-0016d3cca427
              exe: /usr/bin/qemu-system-x86_64
              stale: true
              changed:
                - path: /usr/bin/qemu-system-x86_64
                  kind: exe
                  running_build_id: "build-id:ab12"
                  installed_build_id: "build-id:cd34"
                  reason: build-id differs
              unchanged_replacements: []
              log_qemu_version: "7.2.0Debian 1:7.2+dfsg-7+deb12u6"
          stale: ["... the stale entries of processes ..."]
        unattended_upgrades:
          log_present: true
          last_run: 1764000000
          last_run_age_days: 0.4
          errors: []
          kept_back: []
        needrestart:
          present: true
        packages:
          unattended-upgrades: "2.9.1+nmu3"
          missing-package: null
changed:
  description: True when the state file was written (never in check mode).
  returned: always
  type: bool
"""

import contextlib
import json
import os
import re
import struct
import subprocess
import tempfile
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DAY = 86400.0
NT_GNU_BUILD_ID = 3
PT_NOTE = 4
# Mappings that are not files a package owns.
IGNORED_MAPPINGS = re.compile(r"^/(dev/|memfd:|SYSV|\[|run/|tmp/\.|proc/)")
INST_RE = re.compile(r"^Inst (\S+) (?:\[([^\]]+)\] )?\((\S+) (.*?)(?: \[[^\]]+\])?\)")
UU_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:,\d+)? (\w+) (.*)$")


# -- Debian version order (dpkg's algorithm) -------------------------------------------------
def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_version(version: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in version:
        head, version = version.split(":", 1)
        epoch = int(head) if head.isdigit() else 0
    upstream, _, revision = version.rpartition("-")
    if not upstream:
        upstream, revision = revision, ""
    return epoch, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """<0, 0, >0 like dpkg --compare-versions (a lt/eq/gt b)."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return ea - eb
    return _compare_part(ua, ub) or _compare_part(ra, rb)


# -- ELF build-id ----------------------------------------------------------------------------
def build_id(path: str) -> str | None:
    """The GNU build-id (hex) from an ELF file's PT_NOTE segments, or None."""
    try:
        with open(path, "rb") as handle:
            ident = handle.read(64)
            if len(ident) < 52 or ident[:4] != b"\x7fELF":
                return None
            wide = ident[4] == 2
            end = "<" if ident[5] == 1 else ">"
            if wide:
                phoff = struct.unpack_from(end + "Q", ident, 32)[0]
                phentsize, phnum = struct.unpack_from(end + "HH", ident, 54)
            else:
                phoff = struct.unpack_from(end + "I", ident, 28)[0]
                phentsize, phnum = struct.unpack_from(end + "HH", ident, 42)
            for index in range(phnum):
                handle.seek(phoff + index * phentsize)
                header = handle.read(phentsize)
                if wide:
                    p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(end + "IIQQQQ", header)
                else:
                    p_type, p_offset, _, _, p_filesz = struct.unpack_from(end + "IIIII", header)
                if p_type != PT_NOTE:
                    continue
                handle.seek(p_offset)
                found = _note_build_id(handle.read(min(p_filesz, 1 << 20)), end)
                if found:
                    return found
    except (OSError, struct.error):
        return None
    return None


def _note_build_id(data: bytes, end: str) -> str | None:
    offset = 0
    while offset + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(end + "III", data, offset)
        offset += 12
        name = data[offset : offset + namesz]
        offset += (namesz + 3) & ~3
        desc = data[offset : offset + descsz]
        offset += (descsz + 3) & ~3
        if ntype == NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU":
            return desc.hex()
    return None


def content_id(path: str) -> str | None:
    """build-id:HEX, or sha256:HEX when the file has no build-id; None when unreadable."""
    found = build_id(path)
    if found:
        return f"build-id:{found}"
    try:
        digest = sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return f"sha256:{digest.hexdigest()}"


# -- QEMU processes --------------------------------------------------------------------------
def qemu_identity(argv: list[str]) -> tuple[str | None, str | None]:
    """(domain name, UUID) from a QEMU command line."""
    name = uuid = None
    for index, arg in enumerate(argv[:-1]):
        value = argv[index + 1]
        if arg in ("-name", "--name"):
            parts = re.split(r"(?<!,),(?!,)", value)
            for part in parts:
                if part.startswith("guest="):
                    name = part[len("guest=") :].replace(",,", ",")
                    break
            else:
                name = parts[0].replace(",,", ",") if "=" not in parts[0] else None
        elif arg in ("-uuid", "--uuid"):
            uuid = value
    return name, uuid


def _strip_deleted(path: str) -> tuple[str, bool]:
    if path.endswith(" (deleted)"):
        return path[: -len(" (deleted)")], True
    return path, False


def _compare(path: str, running_file: str, kind: str) -> dict[str, Any]:
    running = content_id(running_file)
    installed = content_id(path) if os.path.exists(path) else None
    if installed is None:
        reason = "file removed"
    elif running is None:
        reason = "running copy unreadable"
    elif running == installed:
        reason = "identical replacement"
    else:
        reason = "build-id differs" if running.startswith("build-id:") else "content differs"
    return {
        "path": path,
        "kind": kind,
        "running_build_id": running,
        "installed_build_id": installed,
        "reason": reason,
    }


def process_facts(proc: Path, pid: int, log_dir: Path) -> dict[str, Any] | None:
    base = proc / str(pid)
    try:
        exe_link = os.readlink(base / "exe")
        argv = (base / "cmdline").read_bytes().split(b"\0")
        maps = (base / "maps").read_text(errors="replace").splitlines()
    except OSError:
        return None
    exe, exe_deleted = _strip_deleted(exe_link)
    name, uuid = qemu_identity([a.decode(errors="replace") for a in argv if a])
    changed: list[dict[str, Any]] = []
    unchanged: list[dict[str, Any]] = []
    checked: set[str] = set()
    if exe_deleted:
        result = _compare(exe, str(base / "exe"), "exe")
        (unchanged if result["reason"] == "identical replacement" else changed).append(result)
        checked.add(exe)
    for line in maps:
        fields = line.split(None, 5)
        if len(fields) < 6 or "x" not in fields[1]:
            continue
        path, deleted = _strip_deleted(fields[5])
        if not deleted or path in checked or not path.startswith("/"):
            continue
        if IGNORED_MAPPINGS.match(path):
            continue
        checked.add(path)
        result = _compare(path, str(base / "map_files" / fields[0]), "library")
        (unchanged if result["reason"] == "identical replacement" else changed).append(result)
    return {
        "pid": pid,
        "name": name,
        "uuid": uuid,
        "exe": exe,
        "stale": bool(changed),
        "changed": changed,
        "unchanged_replacements": unchanged,
        "log_qemu_version": log_qemu_version(log_dir, name),
    }


def log_qemu_version(log_dir: Path, name: str | None) -> str | None:
    """The QEMU version libvirt wrote into the domain's log when it last started it."""
    if not name:
        return None
    try:
        text = (log_dir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"qemu version: ([^,\n]+)", text)
    return found[-1].strip() if found else None


def qemu_facts(proc_dir: str, process_regex: str, log_dir: str) -> dict[str, Any]:
    proc = Path(proc_dir)
    pattern = re.compile(process_regex)
    processes = []
    for entry in sorted(proc.iterdir(), key=lambda p: (len(p.name), p.name)):
        if not entry.name.isdigit():
            continue
        try:
            exe_name = os.path.basename(_strip_deleted(os.readlink(entry / "exe"))[0])
        except OSError:
            continue
        if not pattern.fullmatch(exe_name):
            continue
        facts = process_facts(proc, int(entry.name), Path(log_dir))
        if facts is not None:
            processes.append(facts)
    return {"processes": processes, "stale": [p for p in processes if p["stale"]]}


# -- updates ---------------------------------------------------------------------------------
def parse_simulation(text: str, security: re.Pattern[str]) -> tuple[list[dict], list[dict]]:
    sec, other = [], []
    for line in text.splitlines():
        match = INST_RE.match(line)
        if not match:
            continue
        name, installed, candidate, origin_text = match.groups()
        origins = [o.strip() for o in origin_text.split(", ") if o.strip()]
        suites = [o.rsplit("/", 1)[-1] if "/" in o else o.split(":", 1)[-1] for o in origins]
        entry = {"name": name, "installed": installed, "candidate": candidate, "origins": origins}
        (sec if any(security.search(s) for s in suites) else other).append(entry)
    return sec, other


def _read_state(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    seen = data.get("first_seen") if isinstance(data, dict) else None
    if not isinstance(seen, dict):
        return {}
    return {str(k): float(v) for k, v in seen.items() if isinstance(v, (int, float))}


def _write_state(path: Path, seen: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=".hvguard-")
    with os.fdopen(fd, "w") as handle:
        json.dump({"version": 1, "first_seen": seen}, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def update_facts(module: AnsibleModule, now: float) -> tuple[dict[str, Any], bool]:
    params = module.params
    state_path = Path(params["state_file"])
    facts: dict[str, Any] = {
        "ok": False,
        "error": None,
        "security": [],
        "other": [],
        "state_file": str(state_path),
        "state_changed": False,
    }
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    if params["apt_config"]:
        env["APT_CONFIG"] = params["apt_config"]
    argv = ["apt-get", "-s", "-q", "-o", "Debug::NoLocking=true", "dist-upgrade"]
    try:
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=params["timeout"], check=False
        )
    except FileNotFoundError:
        facts["error"] = "apt-get not found"
        return facts, False
    except subprocess.TimeoutExpired:
        facts["error"] = f"apt-get -s took longer than {params['timeout']} s"
        return facts, False
    if proc.returncode != 0:
        facts["error"] = (proc.stderr.strip() or proc.stdout.strip())[-500:]
        return facts, False
    security, other = parse_simulation(proc.stdout, re.compile(params["security_suite_regex"]))
    seen = _read_state(state_path)
    new_seen: dict[str, float] = {}
    for entry in security:
        key = f"{entry['name']}={entry['candidate']}"
        first = seen.get(key)
        new_seen[key] = now if first is None else first
        # Check mode records nothing: an update seen for the first time has no age yet.
        entry["recorded"] = first is not None or not module.check_mode
        entry["first_seen"] = new_seen[key] if entry["recorded"] else None
        entry["age_days"] = round((now - new_seen[key]) / DAY, 2) if entry["recorded"] else 0.0
    changed = new_seen != seen
    facts.update(ok=True, security=security, other=other, state_changed=changed)
    if changed and not module.check_mode:
        _write_state(state_path, new_seen)
        return facts, True
    return facts, False


# -- reboot ----------------------------------------------------------------------------------
def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def reboot_facts(sentinel: str, boot_dir: str, running: str, now: float) -> dict[str, Any]:
    sentinel_path = Path(sentinel)
    sentinel_since = _mtime(sentinel_path)
    try:
        packages = Path(sentinel + ".pkgs").read_text().split()
    except OSError:
        packages = []
    kernels = []
    with contextlib.suppress(OSError):
        kernels = [p.name[len("vmlinuz-") :] for p in Path(boot_dir).glob("vmlinuz-*")]
    newest = None
    for release in kernels:
        if newest is None or compare_versions(release, newest) > 0:
            newest = release
    outdated = newest is not None and compare_versions(newest, running) > 0
    times = [t for t in (sentinel_since,) if t is not None]
    if outdated:
        kernel_time = _mtime(Path(boot_dir) / f"vmlinuz-{newest}")
        if kernel_time is not None:
            times.append(kernel_time)
    since = min(times) if times else None
    required = sentinel_since is not None or outdated
    return {
        "required": required,
        "sentinel": sentinel_since is not None,
        "packages": packages,
        "running_kernel": running,
        "newest_kernel": newest,
        "kernel_outdated": outdated,
        "since": since,
        "age_days": round((now - since) / DAY, 2) if required and since is not None else 0.0,
    }


# -- unattended-upgrades ---------------------------------------------------------------------
def uu_facts(log: str, now: float) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "log_present": False,
        "last_run": None,
        "last_run_age_days": None,
        "errors": [],
        "kept_back": [],
    }
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return facts
    facts["log_present"] = True
    start = None
    for index, line in enumerate(lines):
        if "Starting unattended upgrades script" in line:
            start = index
    if start is None:
        return facts
    match = UU_LINE.match(lines[start])
    if match:
        stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
        facts["last_run"] = stamp
        facts["last_run_age_days"] = round((now - stamp) / DAY, 2)
    for line in lines[start:]:
        match = UU_LINE.match(line)
        if not match:
            continue
        level, message = match.group(2), match.group(3)
        if level in ("ERROR", "CRITICAL"):
            facts["errors"].append(message)
        if "kept back" in message:
            facts["kept_back"].append(message)
    return facts


def installed_packages(status_file: str, names: list[str]) -> dict[str, str | None]:
    """Installed version of each of ``names`` (None: not installed, or no dpkg database)."""
    found: dict[str, str | None] = dict.fromkeys(names)
    if not names:
        return found
    try:
        text = Path(status_file).read_text(errors="replace")
    except OSError:
        return found
    for paragraph in text.split("\n\n"):
        lines = [line for line in paragraph.splitlines() if ": " in line and line[0] != " "]
        fields = dict(line.split(": ", 1) for line in lines)
        name = fields.get("Package")
        if name in found and fields.get("Status", "").endswith(" installed"):
            found[name] = fields.get("Version")
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state_file": {"type": "path", "default": "/var/lib/hvguard/patch-first-seen.json"},
            "security_suite_regex": {"type": "str", "default": "-security$"},
            "apt_config": {"type": "path"},
            "updates": {"type": "bool", "default": True},
            "process_regex": {"type": "str", "default": "qemu-system-[A-Za-z0-9_.-]+|qemu-kvm"},
            "proc_dir": {"type": "path", "default": "/proc"},
            "reboot_required_file": {"type": "path", "default": "/run/reboot-required"},
            "boot_dir": {"type": "path", "default": "/boot"},
            "running_kernel": {"type": "str"},
            "uu_log": {
                "type": "path",
                "default": "/var/log/unattended-upgrades/unattended-upgrades.log",
            },
            "needrestart_paths": {
                "type": "list",
                "elements": "path",
                "default": ["/usr/sbin/needrestart", "/etc/needrestart"],
            },
            "packages": {"type": "list", "elements": "str", "default": []},
            "dpkg_status": {"type": "path", "default": "/var/lib/dpkg/status"},
            "qemu_log_dir": {"type": "path", "default": "/var/log/libvirt/qemu"},
            "timeout": {"type": "int", "default": 120},
        },
        supports_check_mode=True,
    )
    params = module.params
    for key in ("security_suite_regex", "process_regex"):
        try:
            re.compile(params[key])
        except re.error as exc:
            module.fail_json(msg=f"{key} is not a valid regular expression: {exc}")
    if params["timeout"] < 1:
        module.fail_json(msg="timeout must be at least 1 second")
    now = time.time()
    changed = False
    if params["updates"]:
        updates, changed = update_facts(module, now)
    else:
        updates = {
            "ok": False,
            "error": "not gathered (updates=false)",
            "security": [],
            "other": [],
        }
    facts = {
        "updates": updates,
        "reboot": reboot_facts(
            params["reboot_required_file"],
            params["boot_dir"],
            params["running_kernel"] or os.uname().release,
            now,
        ),
        "qemu": qemu_facts(params["proc_dir"], params["process_regex"], params["qemu_log_dir"]),
        "unattended_upgrades": uu_facts(params["uu_log"], now),
        "needrestart": {"present": any(os.path.exists(p) for p in params["needrestart_paths"])},
        "packages": installed_packages(params["dpkg_status"], params["packages"]),
    }
    module.exit_json(changed=changed, ansible_facts={"hvguard_patch": facts})


if __name__ == "__main__":
    main()
