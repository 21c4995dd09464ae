#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: set one sysfs/procfs attribute, reporting drift in check mode."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hvguard_sysfs
short_description: Set a sysfs or procfs attribute to a value (runtime kernel state)
description:
  - Reads a kernel attribute such as C(/sys/kernel/mm/ksm/run) or
    C(/sys/kernel/mm/transparent_hugepage/enabled), compares it with the wanted value and
    writes the value when it differs.
  - Attributes that list choices with the active one in brackets (C(always [madvise] never))
    are compared on the bracketed word.
  - After a write the attribute is read again; unless it reads back as the written value
    (or one that C(match) accepts) the module fails instead of reporting success.
  - This changes the running kernel only; persisting the setting (kernel command line,
    sysctl.d, a unit) is the calling role's job.
  - In check mode nothing is written; C(changed) means the attribute differs (drift).
version_added: "0.1.0"
author: hvguard contributors
options:
  path:
    description:
      - The attribute file. A missing file is an error; the role decides beforehand
        whether the attribute applies to the host.
    type: path
    required: true
  value:
    description: The value to write (written as given, without a trailing newline).
    type: str
    required: true
  match:
    description:
      - Python regular expression (searched, use C(^...$) to anchor) that the current value
        (the bracketed word for choice files) must match to count as compliant. Use it when
        several values are acceptable or the kernel shows the value differently from what
        is written (for example a CPU list).
      - Default is an exact comparison of the stripped current value (or its bracketed
        word) with C(value).
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: HVG-MEM-002 | Stop KSM merging now
  hvguard_sysfs:
    path: /sys/kernel/mm/ksm/run
    value: "0"

# Any attribute, not only a control's (no hvguard control covers THP)
- name: Transparent hugepages only on request
  hvguard_sysfs:
    path: /sys/kernel/mm/transparent_hugepage/enabled
    value: madvise

- name: HVG-MEM-002 | Unmerge KSM pages and stop (run=2), compliant once KSM is stopped
  hvguard_sysfs:
    path: /sys/kernel/mm/ksm/run
    value: "2"
    match: "^[02]$"
"""

RETURN = r"""
previous:
  description: The value before the module ran (the bracketed word for choice files).
  returned: always
  type: str
  sample: "1"
value:
  description: The wanted value.
  returned: always
  type: str
  sample: "0"
current:
  description: The value read back after the module ran (equal to previous in check mode).
  returned: always
  type: str
  sample: "0"
raw:
  description: The attribute's full previous content, stripped.
  returned: always
  type: str
  sample: "always [madvise] never"
"""

import errno
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC: dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "value": {"type": "str", "required": True},
    "match": {"type": "str"},
}

_SELECTED_RE = re.compile(r"\[([^\]\s]+)\]")
_READ_ONLY = {errno.EROFS, errno.EPERM, errno.EACCES}


class SysfsError(Exception):
    """A failure with a message meant for the user."""


def effective(raw: str) -> str:
    """The active value: the bracketed word of a choice list, else the stripped text."""
    found = _SELECTED_RE.search(raw)
    return found.group(1) if found else raw.strip()


def is_compliant(raw: str, value: str, match: str | None) -> bool:
    if match is not None:
        return re.search(match, effective(raw)) is not None
    return effective(raw) == value.strip()


def read_attr(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise SysfsError(f"{path} does not exist on this host") from exc
    except OSError as exc:
        raise SysfsError(f"cannot read {path}: {exc.strerror}") from exc


def write_attr(path: str, value: str) -> None:
    try:
        # Unbuffered: sysfs takes one write() per value and reports errors on it.
        with open(path, "wb", buffering=0) as handle:
            handle.write(value.encode())
    except OSError as exc:
        if exc.errno in _READ_ONLY:
            raise SysfsError(
                f"{path} is read-only here ({exc.strerror}): the kernel or container "
                "does not allow changing this attribute"
            ) from exc
        if exc.errno == errno.EINVAL:
            raise SysfsError(f"the kernel rejected {value!r} for {path} (EINVAL)") from exc
        raise SysfsError(f"cannot write {value!r} to {path}: {exc.strerror}") from exc


def ensure(path: str, value: str, match: str | None, check_mode: bool) -> dict[str, Any]:
    """Compare and (unless check_mode) write; return the module result."""
    if match is not None:
        try:
            re.compile(match)
        except re.error as exc:
            raise SysfsError(f"match is not a valid regular expression: {exc}") from exc
    raw = read_attr(path)
    previous = effective(raw)
    changed = not is_compliant(raw, value, match)
    current = previous
    if changed and not check_mode:
        write_attr(path, value)
        after = read_attr(path)
        current = effective(after)
        # The kernel took the value if it reads back as written (a match that never
        # matches forces a write) or as something the match accepts.
        if current != value.strip() and not is_compliant(after, value, match):
            raise SysfsError(f"wrote {value!r} to {path} but it reads back as {after.strip()!r}")
    return {
        "changed": changed,
        "previous": previous,
        "value": value,
        "current": current,
        "raw": raw.strip(),
        "diff": {
            "before": previous + "\n",
            "after": (value if changed else previous) + "\n",
            "before_header": path,
            "after_header": path,
        },
    }


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    try:
        result = ensure(params["path"], params["value"], params["match"], module.check_mode)
    except SysfsError as exc:
        module.fail_json(msg=str(exc))
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
