# SPDX-License-Identifier: Apache-2.0
"""HVG-NET-001 (issue 11): hostile domain names and XML fed to the real hook.

A name is data: it reaches the MAC map (JSON) and the log, never nft, a shell or a path.
A port name outside [A-Za-z0-9_.-]{1,15}, a DTD or entity declaration (billion laughs),
input over the size bound and XML that does not parse are refused before nft runs: the
ruleset is unchanged and, fail-closed, the start is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from mirror_netns import VMS, Lab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, nft and ip (network namespaces)",
)

HOSTILE_NAMES = [
    'a"; flush ruleset; "',
    "x\ny\n} table netdev evil {",
    "$(touch /tmp/hvgm-pwned)`id`",
    "../../../../etc/passwd",
    "vm ' ; delete table bridge hvguard_mirror_gate",
    "é-ünïcødé-☃",
]

LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE domain [<!ENTITY a "vnetA">'
    + "".join(
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10 if i else "ha"}">' for i in range(10)
    )
    + "]><domain><name>&l9;</name><uuid>0efb7cea-cc0f-5b85-9dcd-45750a331257</uuid>"
    "<devices><interface type='bridge'><target dev='&a;'/></interface></devices></domain>"
)
SMALL_ENTITY = (
    '<!DOCTYPE domain [<!ENTITY t "vnetA">]><domain><name>e</name>'
    "<uuid>0efb7cea-cc0f-5b85-9dcd-45750a331257</uuid><devices><interface type='bridge'>"
    "<mac address='52:54:00:77:00:01'/><target dev='&t;'/></interface></devices></domain>"
)
EXTERNAL = (
    '<!DOCTYPE domain SYSTEM "file:///etc/shadow"><domain><name>e</name>'
    "<uuid>0efb7cea-cc0f-5b85-9dcd-45750a331257</uuid></domain>"
)


def last_log(lab: Lab) -> dict:
    return json.loads((lab.tmp / "hook.log").read_text().splitlines()[-1])


@pytest.mark.control("HVG-NET-001", effect=True)
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_domain_names_are_only_data(lab: Lab, name: str) -> None:
    """HVG-NET-001: a domain named to inject nft or shell is mirrored like any other and is
    recorded verbatim in the map; nothing else in the ruleset changes."""
    assert lab.start_domain("a", name=name).returncode == 0
    rules = lab.ruleset()
    assert "evil" not in rules and "hvguard_mirror_gate" in rules and "hvgm_vnetA" in rules
    state = json.loads((lab.tmp / "state" / "ports.json").read_text())
    assert state["ports"]["vnetA"]["domain"] == name
    assert last_log(lab)["domain"] == name
    assert not Path("/tmp/hvgm-pwned").exists()
    assert sorted(p.name for p in (lab.tmp / "state").iterdir()) == [".lock", "ports.json"]
    assert lab.hook(name, "release", "end", lab.domain_xml("a", name=name)).returncode == 0
    assert "hvgm_vnetA" not in lab.ruleset()


@pytest.mark.control("HVG-NET-001")
@pytest.mark.parametrize(
    ("tap", "why"),
    [
        ('vnet0"; flush ruleset; "', "refused"),
        ("vnet0\n}", "refused"),
        ("a" * 16, "refused"),
        ("hvgmon0", "refused"),  # the monitor port itself: never mirrored (mirror loop)
    ],
)
def test_hostile_port_names_are_refused_before_nft(lab: Lab, tap: str, why: str) -> None:
    lab.load_gate()
    before = lab.ruleset()
    proc = lab.start_domain("a", tap=tap)
    assert proc.returncode == 1 and why.encode() in proc.stderr
    assert lab.ruleset() == before


@pytest.mark.control("HVG-NET-001")
@pytest.mark.parametrize(
    ("xml", "why"),
    [
        (LAUGHS, "DTD or entity declaration refused"),
        (SMALL_ENTITY, "DTD or entity declaration refused"),
        (EXTERNAL, "DTD or entity declaration refused"),
        ("<domain><name>x</name><uuid>0efb7cea", "does not parse"),
        ("<domain><name>x</name><uuid>not-a-uuid</uuid></domain>", "without a valid <uuid>"),
    ],
    ids=["billion-laughs", "small-entity", "external-dtd", "truncated", "bad-uuid"],
)
def test_hostile_xml_is_refused_before_nft(lab: Lab, xml: str, why: str) -> None:
    before = lab.ruleset()
    proc = lab.hook("vm-a", "start", "begin", xml)
    assert proc.returncode == 1 and why.encode() in proc.stderr, proc.stderr
    assert lab.ruleset() == before
    assert last_log(lab)["result"] == "refused"


@pytest.mark.control("HVG-NET-001")
def test_huge_input_is_drained_and_refused(lab: Lab) -> None:
    """Over max_xml_bytes: refused, stdin read to the end (libvirt sees no broken pipe)."""
    lab.write_conf({"max_xml_bytes": 65536})
    xml = lab.domain_xml("a").replace("</devices>", "<!--" + "x" * 8_000_000 + "--></devices>")
    proc = lab.hook("vm-a", "start", "begin", xml)
    assert proc.returncode == 1 and b"larger than 65536 bytes" in proc.stderr
    assert "hvgm_vnetA" not in lab.ruleset()


@pytest.mark.control("HVG-NET-001")
def test_hostile_teardown_input_never_blocks_or_touches_others(lab: Lab) -> None:
    """A release with bad XML exits 0 (libvirt ignores it anyway) and removes nothing."""
    assert lab.start_domain("b").returncode == 0
    before = lab.ruleset()
    assert lab.hook("vm-b", "release", "end", LAUGHS).returncode == 0
    assert lab.ruleset() == before
    assert len(lab.traffic("out", VMS["b"], "TB-", 5)["captured"]["seen"]) == 5
