# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Action plugin hvguard_finding: record a report-only control result on the controller.

Documentation lives in library/hvguard_finding.py (ansible-doc reads modules, not actions).
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import BOOLEANS
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "compliant": {"type": "raw", "required": True},
    "msg": {"type": "str", "default": ""},
    "evidence": {"type": "raw"},
    "fail_on_drift": {"type": "bool", "default": False},
    "remedy": {"type": "str"},
}


def parse_compliant(value: Any) -> bool:
    """Strict bool: a typo or an undefined-looking string must not read as compliant."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str | int) and not isinstance(value, bool):
        key = value.strip().lower() if isinstance(value, str) else value
        if key in BOOLEANS:
            return key in (True, 1, "1", "y", "yes", "on", "true", "t")
    raise AnsibleActionFail(
        f"hvguard_finding: 'compliant' must be a boolean, got {_kind(value)} {_plain(value)!r}"
    )


def _kind(value: Any) -> str:
    # Templated values are tagged subclasses (_AnsibleTaggedStr): name the plain type.
    for base in (bool, int, float, str, list, dict):
        if isinstance(value, base):
            return base.__name__
    return "null" if value is None else type(value).__name__


def _plain(value: Any) -> Any:
    for base in (str, int, float):
        if isinstance(value, base) and not isinstance(value, bool):
            return base(value)
    return value


def finding(
    compliant: bool, msg: str, evidence: Any, fail_on_drift: bool, remedy: str | None = None
) -> dict[str, Any]:
    """The task result for a finding (pure: unit-tested without Ansible objects)."""
    status = "compliant" if compliant else "drift"
    result: dict[str, Any] = {
        "changed": False,
        "hvguard_status": status,
        "msg": msg or status,
        "evidence": evidence,
    }
    if remedy and not compliant:
        result["hvguard_remedy"] = remedy
    if fail_on_drift and not compliant:
        result["failed"] = True
        result["msg"] = f"drift: {msg}" if msg else "drift"
    return result


class ActionModule(ActionBase):
    """Report-only control: no module runs on the host."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        result.update(
            finding(
                parse_compliant(args["compliant"]),
                args.get("msg") or "",
                args.get("evidence"),
                bool(args.get("fail_on_drift")),
                args.get("remedy") or None,
            )
        )
        return result
