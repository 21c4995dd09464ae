#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: set or remove keys in a libvirt config file, validating the grammar."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hvguard_libvirt_conf
short_description: Set or remove keys in a libvirt config file (libvirtd.conf, qemu.conf, ...)
description:
  - Edits files in libvirt's own config grammar (C(key = value), integers, quoted strings,
    lists) such as C(libvirtd.conf), C(virtproxyd.conf), C(virtqemud.conf), C(qemu.conf).
  - The existing file is parsed with the same rules libvirt uses; an invalid file makes the
    module fail with the line number, before anything is written.
  - A key that is already set is replaced in place (its first uncommented occurrence, the one
    libvirt reads), later duplicates are removed, missing keys are appended at the end in a
    block headed by C(# Managed by hvguard). Comments and layout are kept; a key whose value
    is already right is left byte-for-byte as it is.
  - The result is parsed again and checked to read back exactly the requested values before
    it is written atomically, so a daemon restart never meets a config this module broke.
  - In check mode nothing is written; C(changed) and the diff say what would change.
version_added: "0.1.0"
author: hvguard contributors
options:
  path:
    description: The config file to edit.
    type: path
    required: true
  settings:
    description:
      - Keys to set. Values are strings (written quoted), integers, booleans (written as
        C(1)/C(0)) or lists of strings.
      - Keys must start with a letter and contain only letters, digits and C(_).
    type: dict
    default: {}
  absent:
    description: Keys to remove (every uncommented occurrence).
    type: list
    elements: str
    default: []
  create:
    description:
      - Create the file when it does not exist. When false, a missing file is an error
        (it usually means the daemon or package is not installed).
    type: bool
    default: false
  backup:
    description: Keep a timestamped copy of the previous file next to it when it changes.
    type: bool
    default: false
extends_documentation_fragment:
  - files
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - libvirt strings have no escape sequences; a string containing C(") is written in single
    quotes, one with newlines in triple quotes, as libvirt itself does.
  - Integers are never quoted, so pass C(listen_tls=0) as an integer or boolean, not C("0").
"""

EXAMPLES = r"""
- name: HVG-MIG-002 | libvirt listens for TLS only, with a client DN allow-list
  hvguard_libvirt_conf:
    path: /etc/libvirt/libvirtd.conf
    settings:
      listen_tls: true
      listen_tcp: false
      tls_allowed_dn_list:
        - "C=GB,O=Example,CN=hv1.example.org"

- name: HVG-MIG-003 | libvirt TLS priority allows TLS 1.2/1.3 only
  hvguard_libvirt_conf:
    path: /etc/libvirt/libvirtd.conf
    settings:
      tls_priority: "@LIBVIRT,SYSTEM:-VERS-TLS1.1:-VERS-TLS1.0"

- name: HVG-MEM-003 | No guest memory in core dumps
  hvguard_libvirt_conf:
    path: /etc/libvirt/qemu.conf
    settings:
      dump_guest_core: false
    absent:
      - max_core
"""

RETURN = r"""
changed_keys:
  description: Keys whose lines changed (set to a new value, appended, duplicates dropped or
    removed).
  returned: always
  type: list
  elements: str
  sample: [listen_tls, tls_allowed_dn_list]
path:
  description: The edited file.
  returned: always
  type: str
  sample: /etc/libvirt/libvirtd.conf
backup_file:
  description: The backup copy, when C(backup=true) and the file changed.
  returned: when a backup was made
  type: str
  sample: /etc/libvirt/libvirtd.conf.12345.2026-01-01@10:00:00~
diff:
  description:
    - Full before/after text (with C(--diff)), with the values of secret-looking keys
      (C(vnc_password), C(spice_password), ...) and PEM bodies replaced by C(<redacted>).
  returned: when diff mode is on
  type: dict
"""

import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.module_utils.hvguard_redact import redact_text
from ansible.module_utils.hvguard_virconf import VirConfError, apply

ARGUMENT_SPEC: dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "settings": {"type": "dict", "default": {}},
    "absent": {"type": "list", "elements": "str", "default": []},
    "create": {"type": "bool", "default": False},
    "backup": {"type": "bool", "default": False},
}


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            return to_text(handle.read(), errors="surrogate_or_strict")
    except FileNotFoundError:
        return None


def compute(path: str, before: str, settings: dict, absent: list[str]) -> tuple[str, list[str]]:
    """The new text and changed keys; raises ValueError/TypeError with a clear message."""
    return apply(before, settings, absent, source=path)


def write_atomic(module: AnsibleModule, path: str, text: str, existed: bool) -> None:
    """Write via a temp file in the same directory and atomic_move (keeps mode/owner)."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".hvguard-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(text, errors="surrogate_or_strict"))
        if not existed:
            os.chmod(tmp, 0o644)  # libvirt's own configs are world-readable
        module.atomic_move(tmp, path, unsafe_writes=module.params["unsafe_writes"])
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    path: str = params["path"]
    # Edit a symlink's target rather than replacing the link with a file.
    real = os.path.realpath(path)
    before = read_text(real)
    existed = before is not None
    if not existed:
        if not params["create"]:
            module.fail_json(msg=f"{path} does not exist (set create=true to create it)", path=path)
        if not os.path.isdir(os.path.dirname(real) or "."):
            module.fail_json(msg=f"directory of {path} does not exist", path=path)
        before = ""
    try:
        after, changed_keys = compute(path, before, params["settings"], params["absent"])
    except VirConfError as exc:
        module.fail_json(msg=f"invalid libvirt config: {exc}", path=path, line=exc.line)
    except (ValueError, TypeError) as exc:
        module.fail_json(msg=f"{path}: {exc}", path=path)

    changed = after != before or not existed
    result: dict[str, Any] = {"changed": changed, "path": path, "changed_keys": changed_keys}
    if module._diff:
        # The diff is printed and reported with context: an admin's vnc_password or
        # spice_password must not travel with it (the comparison above uses the real text).
        result["diff"] = {
            "before": redact_text(before) if existed else "",
            "after": redact_text(after),
            "before_header": path if existed else "/dev/null",
            "after_header": path,
        }
    if changed and not module.check_mode:
        if params["backup"] and existed:
            result["backup_file"] = module.backup_local(real)
        write_atomic(module, real, after, existed)
    if existed or not module.check_mode:
        file_args = module.load_file_common_arguments(params, path=real)
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC, supports_check_mode=True, add_file_common_args=True
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
