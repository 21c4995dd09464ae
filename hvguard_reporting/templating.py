# SPDX-License-Identifier: Apache-2.0
"""Jinja2 environments for the HTML (autoescaped) and Markdown templates in templates/."""

from __future__ import annotations

import functools
import html
import re
from typing import Any

import jinja2

from .evidence import as_text, clean, clip
from .text import STATUS_LABEL, entry_title, failing_first, refs_text, waiver_text

# Public pages of the references the catalogue cites (NIST's own pages; DISA SRG rules on
# the public STIG viewer). NIST SP 800-125A has no per-function page: its document.
_REF_URLS = {
    "nist_800_53": "https://csrc.nist.gov/projects/cprt/catalog#/cprt/framework/version/"
    "SP_800_53_5_1_1/home?element={ref}",
    "disa_vmm_srg": "https://www.stigviewer.com/stig/virtual_machine_manager_security_requirements_guide/",
    "nist_800_125a": "https://csrc.nist.gov/pubs/sp/800/125/a/r1/final",
}


def ref_url(ref: str, kind: str) -> str | None:
    template = _REF_URLS.get(kind)
    return template.format(ref=ref) if template else None


TEMPLATES = __import__("pathlib").Path(__file__).resolve().parent / "templates"


def md_cell(text: Any) -> str:
    # Markdown renderers pass raw HTML through: escape it, and the table's pipes.
    return html.escape(clean(text), quote=False).replace("|", "\\|").replace("\n", " ")


def fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}\n{text}\n{ticks}"


def diff_class(line: str) -> str:
    if line.startswith("+") and not line.startswith("+++"):
        return "add"
    if line.startswith("-") and not line.startswith("---"):
        return "del"
    return ""


def _common(env: jinja2.Environment) -> jinja2.Environment:
    env.filters.update(
        text=as_text, clean=clean, refs=refs_text, title=entry_title, failing_first=failing_first
    )
    env.filters["diff_class"] = diff_class
    env.filters["waiver"] = waiver_text
    env.filters["clip_html"] = lambda text: clip(text, 3000)
    env.filters["ref_url"] = ref_url
    env.globals["label"] = STATUS_LABEL
    return env


@functools.cache
def html_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return _common(env)


@functools.cache
def md_env() -> jinja2.Environment:
    # Markdown is not HTML: escaping is explicit (md_cell), fences keep evidence verbatim.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(md_cell=md_cell, fence=fence)
    return _common(env)
