#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: live-migrate one running libvirt domain to a peer, never stopping it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hvguard_migrate
short_description: Live-migrate a running libvirt domain to a peer (virsh), never stopping it
description:
  - Moves one running domain to O(dest_uri) with C(virsh migrate --live) (over TLS by default,
    C(--tls)), keeping it persistent on the destination and undefining it on the source, then
    checks that it runs on the destination with the same UUID and no longer runs here.
  - Never shuts down, destroys, pauses or managed-saves a domain. When the migration fails or
    takes longer than O(timeout) seconds, the job is aborted with C(virsh domjobabort) (the
    domain keeps running on the source) and the task fails.
  - Idempotent. A domain not running here but running on the destination with the same UUID
    is C(changed=false); a domain running nowhere is an error (the module never starts one).
  - In check mode nothing moves. The module checks that the domain runs here and that the
    destination answers, and reports C(changed=true) (a migration would happen).
  - community.libvirt.virt has no migrate command; this module needs only the C(virsh) client.
version_added: "0.1.0"
author: hvguard contributors
options:
  domain:
    description: Name or UUID of the domain.
    type: str
    required: true
  dest_uri:
    description: libvirt URI of the destination, for example C(qemu+tls://hv2.example.org/system).
    type: str
    required: true
  uri:
    description: libvirt URI of the source.
    type: str
    default: qemu:///system
  migrate_uri:
    description:
      - C(--migrateuri) for the migration stream, when the peer's name does not resolve to
        its migration address.
    type: str
  tls:
    description: Pass C(--tls) (QEMU's migration stream over TLS, required by C(migrate_tls_force)).
    type: bool
    default: true
  timeout:
    description:
      - Seconds the migration may take before it is aborted (the domain stays on the source).
    type: int
    default: 600
  command_timeout:
    description: Seconds each other C(virsh) query may take.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Uses C(virsh migrate --live --persistent --undefinesource --verbose) and, after the move,
    C(virsh domjobinfo --completed) on the destination for the measured downtime.
"""

EXAMPLES = r"""
- name: Evacuate web1 to hv2 over TLS
  hvguard_migrate:
    domain: web1
    dest_uri: qemu+tls://hv2.example.org/system
    timeout: 300

- name: Through a dedicated migration network
  hvguard_migrate:
    domain: 3f6e0a52-9d1c-4c5b-8f44-2a4ce0d1f001
    dest_uri: qemu+tls://hv2.example.org/system
    migrate_uri: tcp://10.10.0.2
"""

RETURN = r"""
domain:
  description: Name of the domain.
  returned: success
  type: str
  sample: web1
uuid:
  description: UUID of the domain (the same on both ends after the move).
  returned: success
  type: str
  sample: 3f6e0a52-9d1c-4c5b-8f44-2a4ce0d1f001
migrated:
  description:
    - Whether this run moved the domain (false in check mode and when it already ran on the
      destination).
  returned: success
  type: bool
downtime_ms:
  description: C(Total downtime) of the completed job as the destination reports it, when available.
  returned: when migrated
  type: int
  sample: 42
elapsed_ms:
  description: C(Time elapsed) of the completed job, when available.
  returned: when migrated
  type: int
  sample: 5230
commands:
  description: The virsh command lines run (or, in check mode, the migration that would run).
  returned: always
  type: list
  elements: list
"""

import re
import subprocess
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def run_virsh(argv: list[str], timeout: int) -> tuple[int, str, str]:
    """Run one virsh command; (rc, stdout, stderr). rc 124 means it timed out."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout} s"
    except FileNotFoundError:
        return 127, "", "virsh not found"
    return proc.returncode, proc.stdout, proc.stderr


class Migration:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.commands: list[list[str]] = []

    def virsh(self, uri: str, *args: str, timeout: int | None = None) -> tuple[int, str, str]:
        argv = ["virsh", "-q", "-c", uri, *args]
        self.commands.append(argv)
        return run_virsh(argv, timeout or self.params["command_timeout"])

    def fail(self, msg: str, **extra: Any) -> None:
        self.module.fail_json(msg=msg, commands=self.commands, **extra)

    def state(self, uri: str) -> tuple[str | None, str | None]:
        """(state, uuid) of the domain at uri; (None, None) when it is not defined there."""
        rc, out, err = self.virsh(uri, "domstate", self.params["domain"])
        if rc != 0:
            if "failed to get domain" in err or "Domain not found" in err:
                return None, None
            self.fail(f"cannot ask {uri} about {self.params['domain']}: {err.strip()}")
        rc_uuid, uuid, _ = self.virsh(uri, "domuuid", self.params["domain"])
        return out.strip(), uuid.strip() if rc_uuid == 0 else None

    def migrate_argv(self) -> list[str]:
        argv = ["migrate", "--live", "--persistent", "--undefinesource", "--verbose"]
        if self.params["tls"]:
            argv.append("--tls")
        argv += [self.params["domain"], self.params["dest_uri"]]
        if self.params["migrate_uri"]:
            argv += ["--migrateuri", self.params["migrate_uri"]]
        return argv

    def job_stats(self) -> dict[str, int]:
        rc, out, _ = self.virsh(
            self.params["dest_uri"], "domjobinfo", "--completed", self.params["domain"]
        )
        stats: dict[str, int] = {}
        if rc != 0:
            return stats
        for key, field in (("downtime_ms", "Total downtime"), ("elapsed_ms", "Time elapsed")):
            match = re.search(rf"^{field}:\s+(\d+)\s*ms", out, re.MULTILINE)
            if match:
                stats[key] = int(match.group(1))
        return stats

    def run(self) -> dict[str, Any]:
        domain, dest = self.params["domain"], self.params["dest_uri"]
        here, uuid = self.state(self.params["uri"])
        if here != "running":
            there, dest_uuid = self.state(dest)
            if there == "running" and (uuid is None or uuid == dest_uuid):
                return {"changed": False, "migrated": False, "domain": domain, "uuid": dest_uuid}
            self.fail(
                f"{domain} is not running here (state {here or 'undefined'}) nor on {dest} "
                f"(state {there or 'undefined'}); the module never starts, resumes or moves a "
                "domain that is not running"
            )
        rc, _, err = self.virsh(dest, "uri")
        if rc != 0:
            self.fail(f"destination {dest} does not answer: {err.strip()}")
        if self.module.check_mode:
            self.commands.append(["virsh", "-q", "-c", self.params["uri"], *self.migrate_argv()])
            return {"changed": True, "migrated": False, "domain": domain, "uuid": uuid}
        rc, _, err = self.virsh(
            self.params["uri"], *self.migrate_argv(), timeout=self.params["timeout"]
        )
        if rc != 0:
            # Abort whatever is left of the job; the domain keeps running on the source.
            self.virsh(self.params["uri"], "domjobabort", domain)
            still, _ = self.state(self.params["uri"])
            why = "timed out" if rc == 124 else "failed"
            self.fail(
                f"migration of {domain} to {dest} {why} and was aborted: {err.strip()} "
                f"(state here now: {still or 'undefined'})",
                migrated=False,
            )
        there, dest_uuid = self.state(dest)
        left, _ = self.state(self.params["uri"])
        if there != "running" or dest_uuid != uuid or left == "running":
            self.fail(
                f"after the migration {domain} is {there or 'undefined'} on {dest} (UUID "
                f"{dest_uuid}, expected {uuid}) and {left or 'undefined'} here",
                migrated=True,
            )
        return {"changed": True, "migrated": True, "domain": domain, "uuid": uuid,
                **self.job_stats()}  # fmt: skip


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "domain": {"type": "str", "required": True},
            "dest_uri": {"type": "str", "required": True},
            "uri": {"type": "str", "default": "qemu:///system"},
            "migrate_uri": {"type": "str"},
            "tls": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 600},
            "command_timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    for key in ("timeout", "command_timeout"):
        if module.params[key] < 1:
            module.fail_json(msg=f"{key} must be at least 1 second")
    if module.params["dest_uri"] == module.params["uri"]:
        module.fail_json(msg="dest_uri is the source uri: a domain cannot migrate to itself")
    migration = Migration(module)
    result = migration.run()
    module.exit_json(commands=migration.commands, **result)


if __name__ == "__main__":
    main()
