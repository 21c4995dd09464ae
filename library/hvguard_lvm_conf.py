#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: set LVM configuration keys in lvmlocal.conf, validated by lvmconfig."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hvguard_lvm_conf
short_description: Set LVM configuration keys (lvmlocal.conf), checked with lvmconfig
description:
  - Makes the I(effective) LVM configuration (what C(lvmconfig --type full) reports, i.e.
    defaults, C(lvm.conf) and C(lvmlocal.conf) together) carry the given values.
  - A key whose effective value already matches is left alone, wherever it is set. Otherwise
    the key is set in C(lvmlocal.conf), the last file of LVM's configuration cascade, which
    overrides C(lvm.conf) and is left alone by package upgrades (LVM 2.03 reads no other
    drop-in). The key replaces an existing assignment in its section, is added to an existing
    section, or a new section is appended.
  - Before writing, the result is checked in a copy of the LVM system directory with
    C(lvmconfig --validate), and the effective value of every key is read back; the module
    fails and writes nothing when either check fails.
  - Optionally turns zeroing on for existing thin pools (C(lvchange --zero y)).
  - In check mode nothing is written or changed; C(changed) means drift.
  - The C(diff) has the values of secret-looking keys and PEM bodies replaced by
    C(<redacted>).
version_added: "0.1.0"
author: hvguard contributors
options:
  path:
    description: The file to edit; its directory is the LVM system directory.
    type: path
    default: /etc/lvm/lvmlocal.conf
  settings:
    description:
      - Keys written as C(section/key) (for example C(devices/issue_discards)), each with an
        int or string value.
    type: dict
    default: {}
  thin_pools_zero:
    description:
      - Also make every existing thin pool zero newly provisioned blocks. Needs the
        device-mapper; pools of unavailable VGs are not seen.
    type: bool
    default: false
  lvm:
    description: The lvm binary (for lvmconfig, lvs and lvchange).
    type: path
    default: /sbin/lvm
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: HVG-STO-004 | LVM discards freed extents
  hvguard_lvm_conf:
    settings:
      devices/issue_discards: 1

- name: HVG-STO-003 | Thin pools zero new blocks (configuration and existing pools)
  hvguard_lvm_conf:
    settings:
      allocation/thin_pool_zero: 1
    thin_pools_zero: true
"""

RETURN = r"""
changed_keys:
  description: Keys whose effective value differed (set, or to be set in check mode).
  returned: always
  type: list
  elements: str
  sample: [devices/issue_discards]
effective:
  description: Effective value of every key before the module ran.
  returned: always
  type: dict
  sample: {"devices/issue_discards": "0"}
thin_pools_fixed:
  description: Thin pools (VG/LV) whose zeroing was off (turned on unless check mode).
  returned: always
  type: list
  elements: str
  sample: [vmvg/pool]
"""

import json
import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.hvguard_redact import redact_text
except ImportError:  # run as a plain script from the repository (tests): same rules, by path
    import importlib.util

    _here = os.path.dirname(os.path.abspath(__file__))
    _spec = importlib.util.spec_from_file_location(
        "hvguard_redact", os.path.join(_here, "..", "module_utils", "hvguard_redact.py")
    )
    if _spec is None or _spec.loader is None:
        raise
    _redact = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_redact)  # a missing file fails the module: no unredacted diff
    redact_text = _redact.redact_text

KEY_RE = re.compile(r"^[a-z_]+/[a-z_]+$")
LVM_ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1"}


def render_value(value: object) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if re.fullmatch(r"-?\d+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def section_span(lines: list[str], section: str) -> tuple[int, int] | None:
    """(index of `section {`, index of its closing `}`) at the top level, or None."""
    depth, start = 0, None
    opener = re.compile(r"^\s*" + re.escape(section) + r"\s*\{\s*(#.*)?$")
    for i, line in enumerate(lines):
        code = line.split("#", 1)[0]
        if depth == 0 and opener.match(line):
            start = i
        depth += code.count("{") - code.count("}")
        if start is not None and depth == 0 and i >= start and "}" in code:
            return start, i
    return None


def set_key(text: str, section: str, key: str, value: str) -> str:
    """Set section/key in LVM config text: in place, into the section, or a new section."""
    lines = text.splitlines(keepends=True)
    assign = f"\t{key} = {value}\n"
    span = section_span(lines, section)
    if span is None:
        tail = "" if not lines or lines[-1].endswith("\n") else "\n"
        return text + tail + f"\n# Managed by hvguard\n{section} {{\n{assign}}}\n"
    start, end = span
    key_re = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for i in range(start + 1, end):
        if key_re.match(lines[i]):
            lines[i] = assign
            return "".join(lines)
    lines.insert(end, assign)
    return "".join(lines)


def run_lvm(module: AnsibleModule, lvm: str, args: list[str], system_dir: str) -> str:
    env = dict(os.environ, LVM_SYSTEM_DIR=system_dir, **LVM_ENV)
    rc, out, err = module.run_command([lvm, *args], environ_update=env)
    if rc != 0:
        module.fail_json(msg=f"lvm {' '.join(args)} failed: {err.strip()}", rc=rc)
    return out


def effective(module: AnsibleModule, lvm: str, key: str, system_dir: str) -> str:
    out = run_lvm(module, lvm, ["lvmconfig", "--type", "full", key], system_dir).strip()
    return out.split("=", 1)[1].strip() if "=" in out else ""


def validate_candidate(
    module: AnsibleModule, lvm: str, path: str, text: str, want: dict[str, str]
) -> None:
    """Check the new file in a copy of the system dir before it replaces the real one."""
    system_dir = os.path.dirname(path)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("lvm.conf", "lvmlocal.conf"):
            src = os.path.join(system_dir, name)
            if os.path.exists(src):
                shutil.copy(src, tmp)
        with open(os.path.join(tmp, os.path.basename(path)), "w") as fh:
            fh.write(text)
        run_lvm(module, lvm, ["lvmconfig", "--validate"], tmp)
        for key, value in want.items():
            got = effective(module, lvm, key, tmp)
            if got != value.strip('"'):
                module.fail_json(
                    msg=f"{key} would be {got!r}, not {value}, after editing {path}; "
                    "another file of the cascade overrides it",
                )


def thin_pools_without_zero(module: AnsibleModule, lvm: str, system_dir: str) -> list[str]:
    out = run_lvm(
        module,
        lvm,
        ["lvs", "--reportformat", "json", "--binary", "-o", "vg_name,lv_name,zero",
         "-S", "segtype=thin-pool"],
        system_dir,
    )  # fmt: skip
    pools = []
    for rep in json.loads(out).get("report", []):
        pools += [f"{lv['vg_name']}/{lv['lv_name']}" for lv in rep.get("lv", [])
                  if lv.get("zero") != "1"]  # fmt: skip
    return pools


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/lvm/lvmlocal.conf"},
            "settings": {"type": "dict", "default": {}},
            "thin_pools_zero": {"type": "bool", "default": False},
            "lvm": {"type": "path", "default": "/sbin/lvm"},
        },
        supports_check_mode=True,
    )
    path, lvm = module.params["path"], module.params["lvm"]
    system_dir = os.path.dirname(path)
    bad = [k for k in module.params["settings"] if not KEY_RE.match(k)]
    if bad:
        module.fail_json(msg=f"settings keys must look like section/key: {', '.join(bad)}")
    if not os.path.exists(os.path.join(system_dir, "lvm.conf")):
        module.fail_json(msg=f"{system_dir}/lvm.conf not found: is LVM installed?")
    want = {k: render_value(v) for k, v in module.params["settings"].items()}
    before_eff = {k: effective(module, lvm, k, system_dir) for k in want}
    changed_keys = sorted(k for k, v in want.items() if before_eff[k] != v.strip('"'))
    before = ""
    if os.path.exists(path):
        with open(path) as fh:
            before = fh.read()
    after = before
    for key in changed_keys:
        section, name = key.split("/")
        after = set_key(after, section, name, want[key])
    result = {"changed": False, "changed_keys": changed_keys, "effective": before_eff}
    if changed_keys:
        validate_candidate(module, lvm, path, after, {k: want[k] for k in changed_keys})
        result["changed"] = True
        # Reported and printed with context: secret-looking values never travel with it.
        result["diff"] = {
            "before": redact_text(before),
            "after": redact_text(after),
            "before_header": path,
            "after_header": path,
        }
        if not module.check_mode:
            fd, tmp = tempfile.mkstemp(dir=system_dir, prefix=".hvguard-")
            with os.fdopen(fd, "w") as fh:
                fh.write(after)
            if os.path.exists(path):
                shutil.copymode(path, tmp)
            else:
                os.chmod(tmp, 0o644)
            module.atomic_move(tmp, path)
    fixed: list[str] = []
    if module.params["thin_pools_zero"]:
        fixed = thin_pools_without_zero(module, lvm, system_dir)
        if fixed:
            result["changed"] = True
            if not module.check_mode:
                for pool in fixed:
                    run_lvm(module, lvm, ["lvchange", "--zero", "y", pool], system_dir)
    result["thin_pools_fixed"] = fixed
    module.exit_json(**result)


if __name__ == "__main__":
    main()
