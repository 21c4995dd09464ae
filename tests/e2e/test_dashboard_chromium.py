# SPDX-License-Identifier: Apache-2.0
"""Issue 10: the HTML dashboard stays usable for a fleet (500 hosts x every control), checked
in headless Chromium: the grid fits the window (it scrolls inside its own box), the host
column and the control headers stay in view while it scrolls, the status filter hides
compliant hosts, the severity and area filters hide columns, the search finds one host; the
page's size and Chromium's load time are printed (-s) for the record."""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

import hvguard_reporting as hr

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium installed")
HOSTS = 500
WINDOW = (1366, 800)
MAX_BYTES = 2 * 1024 * 1024  # 500 hosts: a page a browser opens in well under a second

# Run after the page's own script: scroll, filter, search, and report what the layout did.
PROBE = """
<script>
window.addEventListener('load', function(){
  var out = {}, wrap = document.getElementById('wrap'), grid = document.getElementById('grid');
  var nav = performance.getEntriesByType('navigation')[0];
  out.load_ms = nav ? nav.loadEventStart : -1;
  out.viewport = [innerWidth, innerHeight];
  var box = wrap.getBoundingClientRect();
  out.wrap = [box.left, box.top, box.right, box.bottom];
  out.page_width = document.documentElement.scrollWidth;
  out.grid_width = grid.scrollWidth;
  out.clipped_ids = Array.prototype.filter.call(grid.querySelectorAll('thead th.ch'),
    function(th){ var a = th.querySelector('a');
      return a.getBoundingClientRect().right > th.getBoundingClientRect().right + 0.5; }
  ).map(function(th){ return th.textContent.slice(0, 11); });
  function at(x, y){ var e = document.elementFromPoint(x, y);
    while (e && e.tagName !== 'TH' && e.tagName !== 'TD') { e = e.parentElement; }
    return e ? {tag: e.tagName, head: !!e.closest('thead'), text: e.textContent.slice(0, 40)}
             : null; }
  wrap.scrollLeft = 100000; wrap.scrollTop = 100000;
  out.scrolled = [wrap.scrollLeft, wrap.scrollTop];
  var bottom = Math.min(box.bottom, innerHeight);
  out.corner_left = at(box.left + 8, bottom - 30);       // host column, bottom rows
  out.corner_top = at(box.right - 30, box.top + 8);      // header row, last columns
  wrap.scrollLeft = 0; wrap.scrollTop = 0;
  var rows = Array.prototype.slice.call(grid.querySelectorAll('tbody tr.host'));
  function visible(){ return rows.filter(function(r){ return r.style.display !== 'none'; }); }
  function set(name, values){ document.querySelectorAll("input[name='" + name + "']").forEach(
    function(i){ i.checked = values.indexOf(i.value) >= 0; });
    document.getElementById('filters').dispatchEvent(new Event('change')); }
  out.rows = rows.length;
  set('status', ['drift', 'error']);
  var bad = visible();
  out.failing_rows = bad.length;
  out.failing_rows_ok = bad.every(function(r){ return r.querySelector('td.s-drift,td.s-error'); });
  out.failing_class = rows.filter(function(r){ return r.classList.contains('failing'); }).length;
  set('status', ['error','drift','waived','remediated','compliant','disabled','not_applicable']);
  set('severity', ['high', 'medium']);
  out.low_headers = grid.querySelectorAll("thead th[data-sev='low']").length;
  out.low_visible = Array.prototype.filter.call(grid.querySelectorAll("thead th[data-sev='low']"),
    function(th){ return th.offsetParent !== null; }).length;
  set('severity', ['high', 'medium', 'low']);
  var s = document.getElementById('search'); s.value = 'hv0042.';
  s.dispatchEvent(new Event('input'));
  out.search = visible().map(function(r){ return r.cells[0].textContent; });
  out.shown_label = document.getElementById('shown').textContent;
  var pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>
"""


def fleet_report(hosts: int = HOSTS) -> dict:
    catalogue = hr.load_catalogue(hr.default_catalogue_path())["controls"]
    rng = random.Random(500)
    agg = hr.Aggregator(catalogue)
    agg.start_play("audit", set(catalogue))
    diff = {"before": "dump_guest_core = 1\n", "after": "dump_guest_core = 0\n",
            "before_header": "/etc/libvirt/qemu.conf"}  # fmt: skip
    for i in range(hosts):
        host = f"hv{i:04d}.dc{i % 4}.example.net"
        for cid, meta in catalogue.items():
            draw = rng.random()
            if draw < 0.08:
                agg.record(
                    host, f"{cid} | task", [cid], "ok", {"changed": True, "diff": diff}, True
                )
            elif draw < 0.10:
                agg.record(host, f"{cid} | task", [cid], "failed", {"msg": "timeout"}, True)
            elif draw < 0.15:
                cond = {"false_condition": meta["variable"]}
                agg.record(host, f"{cid} | task", [cid], "skipped", cond, True)
            else:
                agg.record(host, f"{cid} | task", [cid], "ok", {}, True)
    meta = {"check_mode": True, "playbooks": ["playbooks/audit.yml"], "catalogue": {},
            "warnings": [], "id": "fleet"}  # fmt: skip
    return hr.build_report(agg, meta)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def chromium(*args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM
    window = f"--window-size={WINDOW[0]},{WINDOW[1]}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           window, "--virtual-time-budget=20000", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_fleet_dashboard_in_headless_chromium(tmp_path: Path) -> None:
    report = fleet_report()
    started = time.perf_counter()
    page = hr.render_html(report)
    render_s = time.perf_counter() - started
    size = len(page.encode())
    assert size < MAX_BYTES, f"{size} bytes for {HOSTS} hosts"
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    proc = chromium("--dump-dom", probe.as_uri())
    match = re.search(r"<pre id=\"probe\">(.*?)</pre>", proc.stdout, re.S)
    assert match, proc.stderr[-2000:]
    out = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    failing = sum(1 for h in report["hosts"].values() if any(
        c["status"] in hr.FAILING for c in h["controls"].values()))  # fmt: skip

    # every column's control ID is readable in full
    assert out["clipped_ids"] == []
    # the grid fits: it scrolls inside its box, the page itself does not get wider
    assert out["wrap"][2] <= out["viewport"][0]
    assert out["page_width"] <= out["viewport"][0]
    assert out["grid_width"] > out["wrap"][2] - out["wrap"][0], "fixture too small to scroll"
    assert out["scrolled"][0] > 0 and out["scrolled"][1] > 0
    # sticky: scrolled to the far bottom right, the host column and the header are in view
    assert out["corner_left"]["tag"] == "TH" and not out["corner_left"]["head"]
    assert out["corner_left"]["text"].startswith("hv0")
    assert out["corner_top"]["tag"] == "TH" and out["corner_top"]["head"]
    assert out["corner_top"]["text"].startswith("HVG-")
    # filters and search
    assert out["rows"] == HOSTS
    assert out["failing_rows"] == failing == out["failing_class"] < HOSTS
    assert out["failing_rows_ok"] is True
    lows = sum(1 for c in report["controls"].values() if c["severity"] == "low")
    assert out["low_headers"] == lows and out["low_visible"] == 0
    assert out["search"] == ["hv0042.dc2.example.net"] and out["shown_label"] == "1"

    shot = tmp_path / "dashboard.png"
    (tmp_path / "page.html").write_text(page)
    proc = chromium(f"--screenshot={shot}", (tmp_path / "page.html").as_uri())
    assert shot.exists(), proc.stderr[-2000:]
    assert png_size(shot) == WINDOW
    print(
        f"\n{HOSTS} hosts x {len(report['controls'])} controls: HTML {size} bytes, "
        f"rendered in {render_s:.2f} s, Chromium load {out['load_ms']:.0f} ms, "
        f"screenshot {shot.stat().st_size} bytes"
    )
