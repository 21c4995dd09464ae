#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: audit and heal the per-port mirrors and the gate set (HVG-NET-001/002)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hvguard_mirror
short_description: Reconcile the VM port mirrors and the fail-closed gate set with libvirt's domains
description:
  - Compares the running (and paused) domains' interfaces, as C(hvguard_facts) read them from
    libvirt (O(domains)), with the kernel's nftables state, and reports every difference as
    drift with the domain, its UUID and the MAC as evidence.
  - O(check=mirror) (HVG-NET-001) expects, for each port, the netdev table the hvguard mirror
    hook installs (ingress marks and dups to O(monitor), egress dups unmarked packets only) and
    no such table for ports no running domain owns. O(check=gate) (HVG-NET-002) expects every
    port in the gate set O(gate_set) of the bridge table O(gate_table), no other name in it, and
    the gate's prerouting/postrouting chains dropping (or, with O(fail_open), passing) frames
    of unmirrored ports.
  - Heals (not in check mode) by running the installed hook O(hook) exactly as libvirt does on
    C(reconnect begin), with the domain XML built from the facts, so the rules come from one
    place; stale tables and set elements are deleted. Interfaces that cannot be mirrored
    (hostdev, vhostuser, user) stay drift.
  - Fails, changing nothing, when libvirt could not be asked (O(libvirt_error)): an empty
    domain list would otherwise look compliant and stale-clean every mirror.
version_added: "0.2.0"
author: hvguard contributors
options:
  domains:
    description: C(hvguard.libvirt.domains) from C(hvguard_facts) (name, uuid, state, interfaces).
    type: list
    elements: dict
    required: true
  libvirt_error:
    description: C(hvguard.libvirt.error); any value fails the module before it looks or changes.
    type: str
  check:
    description: Which control to reconcile.
    type: str
    choices: [mirror, gate]
    required: true
  monitor:
    description: The monitor port every copy goes to.
    type: str
    required: true
  mark:
    description: The mark bit the ingress rule sets (must match the hook's configuration).
    type: int
    required: true
  table_prefix:
    description: Prefix of the per-port netdev tables.
    type: str
    default: hvgm_
  gate_table:
    description: The gate's bridge table.
    type: str
    default: hvguard_mirror_gate
  gate_set:
    description: The gate's set of mirrored port names.
    type: str
    default: mirrored
  fail_open:
    description: The host is fail-open by choice; the gate then passes unmirrored ports.
    type: bool
    default: false
  hook:
    description: The installed hook, run to heal a domain's ports.
    type: path
    required: true
  hook_conf:
    description: The hook's configuration file (passed as C(HVGUARD_MIRROR_CONF)).
    type: path
    required: true
  nft:
    description: The nft binary.
    type: path
    default: /usr/sbin/nft
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Never calls libvirt; the domain list comes from the facts, gathered right before.
"""

EXAMPLES = r"""
- name: HVG-NET-001 | Every VM port is mirrored
  hvguard_mirror:
    check: mirror
    domains: "{{ hvguard.libvirt.domains }}"
    libvirt_error: "{{ hvguard.libvirt.error | default(omit) }}"
    monitor: hvgmon0
    mark: 1048576
    hook: /etc/libvirt/hooks/qemu.d/50-hvguard-mirror
    hook_conf: /etc/hvguard/mirror.json
"""

RETURN = r"""
drift:
  description: One entry per difference (before healing), with its evidence.
  returned: always
  type: list
  elements: dict
  sample: [{port: vnet3, domain: web1, uuid: 4a5c..., mac: "52:54:00:12:34:56",
            problem: no mirror}]
unhealable:
  description: Drift that healing cannot fix (interfaces with no host device, no monitor).
  returned: always
  type: list
  elements: dict
ports:
  description: The VM ports of running domains that should be mirrored.
  returned: always
  type: list
  elements: str
hvguard_status:
  description: C(drift) when unhealable drift remains (read by the hvguard_report callback).
  returned: when unhealable drift remains
  type: str
evidence:
  description: The drift and unhealable lists, for the report.
  returned: always
  type: dict
"""

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from typing import Any

from ansible.module_utils.basic import AnsibleModule

MIRRORABLE = {"bridge", "network", "ethernet", "direct"}
LIVE_STATES = {"running", "paused"}
TAP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")


def table_name(prefix: str, tap: str) -> str:
    return prefix + "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in tap)


def expected_ports(domains: list[dict[str, Any]], monitor: str) -> tuple[dict, list]:
    """tap -> owner, and interfaces that cannot be mirrored."""
    ports: dict[str, dict[str, Any]] = {}
    unmirrorable = []
    for dom in domains:
        if dom.get("state") not in LIVE_STATES:
            continue
        for iface in dom.get("interfaces") or []:
            owner = {"domain": dom.get("name"), "uuid": dom.get("uuid"), "mac": iface.get("mac")}
            tap = iface.get("target_dev")
            if iface.get("type") not in MIRRORABLE or not tap:
                unmirrorable.append({**owner, "port": tap, "problem": "no host device to mirror "
                                     f"(interface type {iface.get('type')})"})  # fmt: skip
            elif not TAP_RE.match(tap) or tap == monitor:
                unmirrorable.append({**owner, "port": tap, "problem": "port name refused"})
            else:
                ports[tap] = {**owner, "type": iface.get("type"), "bridge": iface.get("bridge")}
    return ports, unmirrorable


class Kernel:
    """The nftables state that matters, read in two nft calls."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        nft = module.params["nft"]
        rc, out, err = module.run_command([nft, "-j", "list", "ruleset"])
        if rc != 0:
            module.fail_json(msg=f"nft -j list ruleset failed: {err.strip()}")
        self.items = [next(iter(i.items())) for i in json.loads(out).get("nftables", [])]
        rc, text, err = module.run_command([nft, "list", "ruleset"])
        if rc != 0:
            module.fail_json(msg=f"nft list ruleset failed: {err.strip()}")
        self.devices = self._devices(text)

    @staticmethod
    def _devices(text: str) -> dict[tuple[str, str], str]:
        """(netdev table, hook) -> device, from the text listing (JSON omits it in 1.0.6)."""
        found: dict[tuple[str, str], str] = {}
        table = None
        for line in text.splitlines():
            head = re.match(r"^table netdev (\S+) \{", line)
            if head:
                table = head.group(1)
            hook = re.search(r'hook (ingress|egress) device "?([^";\s]+)"?', line)
            if hook and table:
                found[(table, hook.group(1))] = hook.group(2)
        return found

    def tables(self, family: str) -> set[str]:
        return {v["name"] for k, v in self.items if k == "table" and v["family"] == family}

    def rules(self, family: str, table: str, chain: str) -> list[list[dict[str, Any]]]:
        return [v["expr"] for k, v in self.items if k == "rule" and v["family"] == family
                and v["table"] == table and v["chain"] == chain]  # fmt: skip

    def chain(self, family: str, table: str, name: str) -> dict[str, Any] | None:
        return next((v for k, v in self.items if k == "chain" and v["family"] == family
                     and v["table"] == table and v["name"] == name), None)  # fmt: skip

    def set_elements(self, table: str, name: str) -> set[str] | None:
        for k, v in self.items:
            if k == "set" and v["family"] == "bridge" and v["table"] == table and v["name"] == name:
                return {e for e in v.get("elem", []) if isinstance(e, str)}
        return None


def mirror_problem(kernel: Kernel, p: dict[str, Any], tap: str) -> str | None:
    table = table_name(p["table_prefix"], tap)
    if table not in kernel.tables("netdev"):
        return "no mirror"
    mark, mon = p["mark"], p["monitor"]
    meta_mark = {"meta": {"key": "mark"}}
    want = {
        "ingress": [[{"mangle": {"key": meta_mark, "value": {"|": [meta_mark, mark]}}},
                     {"dup": {"addr": mon}}]],
        "egress": [[{"match": {"op": "==", "left": {"&": [meta_mark, mark]}, "right": mark}},
                    {"accept": None}], [{"dup": {"addr": mon}}]],
    }  # fmt: skip
    for hook, rules in want.items():
        chain = kernel.chain("netdev", table, hook)
        if chain is None or chain.get("hook") != hook or kernel.devices.get((table, hook)) != tap:
            return f"mirror has no {hook} chain on {tap}"
        if kernel.rules("netdev", table, hook) != rules:
            return f"mirror {hook} rules differ (monitor {mon}, mark {mark:#x})"
    return None


def gate_problems(kernel: Kernel, p: dict[str, Any]) -> list[str]:
    problems = []
    verdict = "accept" if p["fail_open"] else "drop"
    for chain, key in (("prerouting", "iifname"), ("postrouting", "oifname")):
        found = kernel.chain("bridge", p["gate_table"], chain)
        rules = kernel.rules("bridge", p["gate_table"], chain)
        gated = [r for r in rules if {"match": {"op": "!=", "left": {"meta": {"key": key}},
                 "right": "@" + p["gate_set"]}} in r and {verdict: None} in r]  # fmt: skip
        if found is None or found.get("hook") != chain or not gated:
            problems.append(f"gate {chain} chain does not {verdict} unmirrored VM ports")
    return problems


def domain_xml(dom: dict[str, Any]) -> bytes:
    root = ET.Element("domain")
    ET.SubElement(root, "name").text = dom.get("name") or ""
    ET.SubElement(root, "uuid").text = dom.get("uuid") or ""
    devices = ET.SubElement(root, "devices")
    for iface in dom.get("interfaces") or []:
        el = ET.SubElement(devices, "interface", type=str(iface.get("type") or ""))
        if iface.get("mac"):
            ET.SubElement(el, "mac", address=iface["mac"])
        if iface.get("bridge") or iface.get("source"):
            ET.SubElement(el, "source", bridge=iface.get("bridge") or iface.get("source"))
        if iface.get("target_dev"):
            ET.SubElement(el, "target", dev=iface["target_dev"])
    return ET.tostring(root)


def audit(module: AnsibleModule, p: dict[str, Any]) -> dict[str, Any]:
    kernel = Kernel(module)
    ports, unhealable = expected_ports(p["domains"], p["monitor"])
    drift: list[dict[str, Any]] = []
    stale_tables: list[str] = []
    stale_elements: list[str] = []
    if not os.path.exists(f"/sys/class/net/{p['monitor']}"):
        unhealable.append({"port": p["monitor"], "problem": "monitor port missing"})
    if p["check"] == "mirror":
        for tap, owner in sorted(ports.items()):
            problem = mirror_problem(kernel, p, tap)
            if problem:
                drift.append({"port": tap, **owner, "problem": problem})
        wanted = {table_name(p["table_prefix"], t) for t in ports}
        for table in sorted(kernel.tables("netdev")):
            if table.startswith(p["table_prefix"]) and table not in wanted:
                stale_tables.append(table)
                drift.append({"port": None, "table": table, "problem": "stale mirror"})
    else:
        members = kernel.set_elements(p["gate_table"], p["gate_set"]) or set()
        for tap, owner in sorted(ports.items()):
            if tap not in members:
                drift.append({"port": tap, **owner, "problem": "not in the gate set"})
        for name in sorted(members - set(ports)):
            stale_elements.append(name)
            drift.append({"port": name, "problem": "in the gate set, no running domain owns it"})
        for problem in gate_problems(kernel, p):
            unhealable.append({"port": None, "problem": problem})
        if p["fail_open"]:
            unhealable.append({"port": None, "problem": "host is fail-open by choice"})
    return {"drift": drift, "unhealable": unhealable, "ports": ports,
            "stale_tables": stale_tables, "stale_elements": stale_elements,
            "members": sorted(kernel.set_elements(p["gate_table"], p["gate_set"]) or []),
            "mirrored": sorted(t for t in ports if not mirror_problem(kernel, p, t))}  # fmt: skip


def heal(module: AnsibleModule, p: dict[str, Any], found: dict[str, Any]) -> None:
    to_fix = {d["uuid"] for d in found["drift"] if d.get("uuid")}
    env = {"HVGUARD_MIRROR_CONF": p["hook_conf"]}
    for dom in p["domains"]:
        if dom.get("uuid") not in to_fix or dom.get("state") not in LIVE_STATES:
            continue
        argv = [p["hook"], str(dom.get("name") or "-"), "reconnect", "begin", "-"]
        proc = subprocess.run(argv, input=domain_xml(dom), capture_output=True, timeout=30,
                              env={**os.environ, **env}, check=False)  # fmt: skip
        if proc.returncode != 0:
            module.fail_json(msg=f"hook failed for {dom.get('name')!r}: {proc.stderr!r}")
    lines = []
    for table in found["stale_tables"]:
        lines += [f"add table netdev {table}", f"delete table netdev {table}"]
    for name in found["stale_elements"]:
        lines.append(f'delete element bridge {p["gate_table"]} {p["gate_set"]} {{ "{name}" }}')
    if lines:
        rc, _, err = module.run_command([p["nft"], "-f", "-"], data="\n".join(lines) + "\n")
        if rc != 0:
            module.fail_json(msg=f"nft could not remove stale entries: {err.strip()}")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "domains": {"type": "list", "elements": "dict", "required": True},
            "libvirt_error": {"type": "str"},
            "check": {"type": "str", "choices": ["mirror", "gate"], "required": True},
            "monitor": {"type": "str", "required": True},
            "mark": {"type": "int", "required": True},
            "table_prefix": {"type": "str", "default": "hvgm_"},
            "gate_table": {"type": "str", "default": "hvguard_mirror_gate"},
            "gate_set": {"type": "str", "default": "mirrored"},
            "fail_open": {"type": "bool", "default": False},
            "hook": {"type": "path", "required": True},
            "hook_conf": {"type": "path", "required": True},
            "nft": {"type": "path", "default": "/usr/sbin/nft"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["libvirt_error"]:
        module.fail_json(msg=f"libvirt could not be asked ({p['libvirt_error']}): the ports "
                         "cannot be known, nothing checked or changed")  # fmt: skip
    for key in ("table_prefix", "gate_table", "gate_set"):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,30}\Z", p[key]):
            module.fail_json(msg=f"{key} is not a valid nft identifier")
    if not TAP_RE.match(p["monitor"]) or not 0 < p["mark"] < 2**32:
        module.fail_json(msg="monitor must be an interface name and mark a 32-bit value > 0")
    before = audit(module, p)
    key = "mirrored" if p["check"] == "mirror" else "members"
    result: dict[str, Any] = {
        "changed": bool(before["drift"]),
        "drift": before["drift"],
        "unhealable": before["unhealable"],
        "ports": sorted(before["ports"]),
        "evidence": {"drift": before["drift"], "unhealable": before["unhealable"]},
    }
    after = before
    if before["drift"] and not module.check_mode:
        heal(module, p, before)
        after = audit(module, p)
        if after["drift"]:
            module.fail_json(msg="drift remains after healing", **result, remaining=after["drift"])
    if module._diff:
        would = sorted(before["ports"]) if module.check_mode else after[key]
        result["diff"] = {
            "before": "".join(f"{t}\n" for t in before[key]),
            "after": "".join(f"{t}\n" for t in would),
            "before_header": f"{p['check']}: {key} ports",
            "after_header": f"{p['check']}: {key} ports",
        }
    if before["unhealable"]:
        result["hvguard_status"] = "drift"
        result["msg"] = "; ".join(f"{u.get('port')}: {u['problem']}" for u in before["unhealable"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
