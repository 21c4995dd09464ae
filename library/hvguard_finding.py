#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
# Documentation and argument spec of the hvguard_finding action plugin
# (action_plugins/hvguard_finding.py). The action runs on the controller; this file exists so
# that ansible-doc and ansible-lint know the action and its arguments.
from __future__ import annotations

DOCUMENTATION = r"""
module: hvguard_finding
short_description: Record the result of a report-only hvguard control
description:
  - Records whether a report-only control is compliant, without running anything on the
    host. The hvguard_report callback turns the result into the control's status
    (C(hvguard_status) C(compliant) or C(drift)) with O(msg) and O(evidence) as evidence.
  - Never changes anything; works the same in check mode.
  - The task must carry the control ID tag and the control toggle as its first C(when)
    condition, like every other task of a control.
version_added: "0.1.0"
options:
  compliant:
    description:
      - Whether the host satisfies the control. Must be a boolean (C(true)/C(false) or
        their usual string forms); anything else fails the task.
    type: bool
    required: true
  msg:
    description: One line saying what was found.
    type: str
    default: ""
  evidence:
    description: Any JSON-able data supporting the finding (shown in the reports).
    type: raw
  fail_on_drift:
    description: Fail the task (and so the host) when the control is not compliant.
    type: bool
    default: false
  remedy:
    description:
      - What fixes the drift when applying the pack cannot on this host (for example a boot
        loader hvguard does not configure). The report shows it as the cell's fix, marked
        manual, instead of the C(site.yml) command.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: all
notes:
  - Runs as an action plugin on the controller; no module is transferred to the host.
author:
  - hvguard contributors
"""

EXAMPLES = r"""
- name: HVG-MIG-006 | Certificates stay valid for long enough
  hvguard_finding:
    compliant: "{{ __certs_expiring | length == 0 }}"
    msg: "{{ __certs_expiring | length }} certificate(s) expire within 30 days"
    evidence: "{{ __certs_expiring }}"
  when:
    - hvguard_migration_tls_expiry_check_enabled
  tags: [HVG-MIG-006, migration]

- name: HVG-MEM-004 | Swap is absent or encrypted (fail the host on drift)
  hvguard_finding:
    compliant: "{{ __plain_swap | length == 0 }}"
    msg: unencrypted swap in use
    evidence: "{{ __plain_swap }}"
    fail_on_drift: true
  when: hvguard_memory_swap_check_enabled
  tags: [HVG-MEM-004, memory]
"""

RETURN = r"""
changed:
  description: Always false; a finding changes nothing.
  returned: always
  type: bool
  sample: false
hvguard_status:
  description: C(compliant) or C(drift); read by the hvguard_report callback.
  returned: always
  type: str
  sample: drift
msg:
  description: O(msg), or the status when empty (prefixed with C(drift:) when the task fails).
  returned: always
  type: str
  sample: unencrypted swap in use
evidence:
  description: O(evidence) as given.
  returned: always
  type: raw
  sample: ["/dev/sda3"]
failed:
  description: True only when O(fail_on_drift) is set and the control is not compliant.
  returned: when failing
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    """Only reached when the action plugin is missing from the action plugin path."""
    module = AnsibleModule(
        argument_spec={
            "compliant": {"type": "bool", "required": True},
            "msg": {"type": "str", "default": ""},
            "evidence": {"type": "raw"},
            "fail_on_drift": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="hvguard_finding runs as an action plugin: check action_plugins")


if __name__ == "__main__":
    main()
