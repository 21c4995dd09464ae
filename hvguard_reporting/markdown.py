# SPDX-License-Identifier: Apache-2.0
"""The merge-request comment (templates/report.md.j2), capped at a comment's size."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .evidence import clip
from .model import FAILING, STATUSES
from .templating import md_env
from .text import evidence_text, failing_hosts, guarantee, headline

MD_MAX_CHARS = 60000  # GitHub/GitLab comment limits are 65536 / 1 000 000 characters
MD_MAX_HOSTS_LISTED = 10
MD_MAX_DETAIL_HOSTS = 5
MD_MAX_DETAIL_CHARS = 3000


def render_markdown(report: Mapping[str, Any], max_chars: int = MD_MAX_CHARS) -> str:
    """Merge-request comment: counts, one row per control, collapsible drift evidence."""
    env = md_env()
    controls = {
        cid: {"meta": meta, "bad": failing_hosts(report, cid)}
        for cid, meta in report["controls"].items()
    }
    body = env.get_template("report.md.j2").render(
        report=report,
        run=report["run"],
        summary=report["summary"],
        statuses=STATUSES,
        controls=controls,
        max_hosts=MD_MAX_HOSTS_LISTED,
        verdict=headline(report["summary"]),
        guarantee=guarantee(report["run"]),
        waived=[
            {"cid": cid, "host": host, "status": cell["status"], "waiver": cell["waiver"]}
            for host, h in report["hosts"].items()
            for cid, cell in h["controls"].items()
            if cell.get("waiver")
        ],
    )
    details = list(_md_details(report, controls))
    for i, block in enumerate(details):
        if len(body) + len(block) > max_chars:
            body += (
                f"\n_{len(details) - i} more evidence blocks left out (size cap): "
                "see the HTML or JSON report._\n"
            )
            break
        body += block
    return body


def _md_details(report: Mapping[str, Any], controls: Mapping[str, Any]) -> Iterator[str]:
    template = md_env().get_template("details.md.j2")
    for cid, info in controls.items():
        if not info["bad"]:
            continue
        shown = []
        for host in info["bad"][:MD_MAX_DETAIL_HOSTS]:
            cell = report["hosts"][host]["controls"][cid]
            # A merge-request comment shows what is wrong, not every task that was fine.
            relevant = [e for e in cell["evidence"] if e.get("status") in FAILING]
            text = evidence_text(relevant or cell["evidence"])
            shown.append({"host": host, "cell": cell, "text": clip(text, MD_MAX_DETAIL_CHARS)})
        more = len(info["bad"]) - len(shown)
        yield template.render(cid=cid, meta=info["meta"], bad=info["bad"], shown=shown, more=more)
