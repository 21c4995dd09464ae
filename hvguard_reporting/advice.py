# SPDX-License-Identifier: Apache-2.0
"""What a user does about a drift or error: the command that fixes it, what applying it
costs (disruption, reboot) and which running domains it concerns, from the catalogue and
the host's facts."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

APPLY = "ansible-playbook playbooks/site.yml"
AUDIT = "ansible-playbook playbooks/audit.yml"


def action(
    control: str,
    meta: Mapping[str, Any],
    host: str,
    status: str,
    domains: list[str] | None,
    remedy: str | None = None,
) -> dict[str, Any]:
    """The ``action`` of a failing cell (JSON schema 1.1). ``remedy``: the finding's manual
    fix when applying the pack cannot fix the cell on this host (``manual`` is then true)."""
    limit = f"--tags {control} --limit {shlex.quote(host)}"
    reboot = bool(meta.get("reboot"))
    if remedy:
        return {
            "command": f"by hand: {remedy}",
            "verify": f"{AUDIT} {limit}",
            "first": None,
            "disruption": meta.get("disruption"),
            "reboot": reboot,
            "running_domains": domains,
            "impact": "applying hvguard does not fix this on this host; " + impact(meta, domains),
            "manual": True,
        }
    return {
        "command": f"{APPLY} {limit}",
        "verify": f"{AUDIT} {limit}",
        "first": (
            "fix what made the control fail (evidence), then run the audit again"
            if status == "error"
            else None
        ),
        "disruption": meta.get("disruption"),
        "reboot": reboot,
        "running_domains": domains,
        "impact": impact(meta, domains),
    }


def impact(meta: Mapping[str, Any], domains: list[str] | None) -> str:
    """One sentence on what applying the control does to the workloads."""
    disruption = meta.get("disruption") or "unknown"
    if domains is None:
        running = "running domains unknown (no hvguard facts in this run)"
    elif domains:
        running = f"{len(domains)} running domain(s): {', '.join(domains)}"
    else:
        running = "no running domains"
    if meta.get("reboot"):
        return (
            f"takes effect after a reboot ({running}; hvguard never reboots over running "
            "domains: stop or migrate them first); disruption " + disruption
        )
    if disruption == "low":
        return f"no reboot; disruption low: running domains keep running ({running})"
    if domains == []:
        return f"no reboot; disruption {disruption}: nothing it could affect runs ({running})"
    return f"no reboot; disruption {disruption}: may affect the {running}"


def action_text(act: Mapping[str, Any]) -> str:
    lines = []
    if act.get("first"):
        lines.append(f"first: {act['first']}")
    lines.append(f"fix: {act['command']}")
    lines.append(f"impact: {act['impact']}")
    lines.append(f"verify: {act['verify']}")
    return "\n".join(lines)
