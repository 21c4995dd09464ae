# SPDX-License-Identifier: Apache-2.0
"""Issue 10: the README leads with the user's quick start (audit a fleet, read the report,
apply) and keeps the maintainer's two commands (`make lab`, `make test`) after it; every
`make` target, playbook, tool and inventory it names exists.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def make_targets() -> set[str]:
    text = "\n".join(p.read_text() for p in [ROOT / "Makefile", *ROOT.glob("mk/*.mk")])
    return set(re.findall(r"^([a-z][\w-]*):", text, re.M))


def section(title_start: str) -> str:
    match = re.search(rf"^## {re.escape(title_start)}.*?(?=^## |\Z)", README, re.M | re.S)
    assert match, f"no section starting {title_start!r}"
    return match.group(0)


def test_user_quick_start_comes_before_the_maintainers() -> None:
    user, maint = README.index("## Quick start"), README.index("## For maintainers")
    assert user < maint
    quick = section("Quick start")
    for step in ("inventories/example", "playbooks/audit.yml", "hvguard-report.html",
                 "playbooks/site.yml"):  # fmt: skip
        assert step in quick, step
    assert quick.index("playbooks/audit.yml") < quick.index("playbooks/site.yml")
    assert "make lab" not in quick, "the lab is the maintainer's, not the user's quick start"


def test_the_two_maintainer_commands_stay() -> None:
    block = re.search(r"```sh\n(.*?)```", section("For maintainers"), re.S)
    assert block
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make lab", "make test"]


def test_everything_the_readme_names_exists() -> None:
    targets = make_targets()
    for target in set(re.findall(r"`make ([a-z][\w-]*)", README)):
        assert target in targets, f"make {target}"
    for path in set(
        re.findall(r"\b((?:playbooks|tools|inventories|docs)/[\w.-]+(?:/[\w.-]+)*)", README)
    ):
        if "<" not in path and "prod" not in path:
            assert (ROOT / path).exists(), path
