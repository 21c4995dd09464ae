# SPDX-License-Identifier: Apache-2.0
"""library/hvguard_files_info and the hvguard_files_as_slurp filter.

The module replaces `stat` and `slurp` loops (issue 15: one round trip instead of one per
file), so the differential test runs the real `stat` and `slurp` on the same files in one
playbook and asserts the same checksums and contents; what it deliberately changes (a
private key's content is never returned) is tested on its own.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import ROOT, ansible_doc, load_library, run_module

sys.path.insert(0, str(ROOT / "filter_plugins"))
from hvguard import hvguard_files_as_slurp, hvguard_files_checksums

mod = load_library("hvguard_files_info")

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n"


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A regular certificate, a link to it, a dangling link, a directory, a missing path."""
    cert = tmp_path / "cert.pem"
    cert.write_text(CERT)
    link = tmp_path / "link.pem"
    link.symlink_to(cert)
    dangling = tmp_path / "dangling.pem"
    dangling.symlink_to(tmp_path / "nowhere")
    directory = tmp_path / "dir"
    directory.mkdir()
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    return {
        "cert": cert,
        "link": link,
        "dangling": dangling,
        "dir": directory,
        "empty": empty,
        "missing": tmp_path / "missing.pem",
    }


def test_checksum_and_content_of_a_certificate(tree: dict[str, Path], capsys) -> None:
    cert = str(tree["cert"])
    result = run_module(mod, capsys, {"checksum": [cert], "content": [cert]}, check=True)
    assert result["changed"] is False
    entry = result["files"][cert]
    assert entry["exists"] is True and entry["islnk"] is False
    assert base64.b64decode(entry["content"]).decode() == CERT
    assert len(entry["checksum"]) == 40


def test_a_private_key_is_compared_but_never_returned(tmp_path: Path, capsys) -> None:
    key = tmp_path / "key.pem"
    key.write_text(KEY)
    result = run_module(mod, capsys, {"checksum": [str(key)], "content": [str(key)]})
    entry = result["files"][str(key)]
    assert "content" not in entry
    assert entry["error"] == "holds a private key: content not returned"
    assert entry["checksum"]  # a comparison needs no content
    assert "MHcC" not in json.dumps(result)


def test_an_oversized_file_is_not_returned(tmp_path: Path, monkeypatch) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    monkeypatch.setattr(mod, "MAX_CONTENT", 10)
    entry = mod.files_info([], [str(big)])[str(big)]
    assert "content" not in entry and "larger than 10 bytes" in entry["error"]


def test_every_path_is_listed_once_in_order(tree: dict[str, Path]) -> None:
    a, b = str(tree["cert"]), str(tree["missing"])
    assert list(mod.files_info([a, b], [b, a])) == [a, b]


DIFF_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.stat:
        {path: "{{ item }}", get_checksum: true, get_mime: false, get_attributes: false}
      loop: "{{ paths }}"
      register: stat_loop
    - ansible.builtin.slurp: {src: "{{ item }}"}
      loop: "{{ paths }}"
      register: slurp_loop
      failed_when: false
    - hvguard_files_info: {checksum: "{{ paths }}", content: "{{ paths }}"}
      register: one_call
    - ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'stat': stat_loop.results, 'slurp': slurp_loop.results,
                     'files': one_call.files,
                     'as_slurp': one_call.files | hvguard_files_as_slurp(paths)} | to_json }}"
"""


def real_tools_and_module(tmp_path: Path, paths: list[str]) -> dict[str, Any]:
    tmp_path.mkdir()
    play = tmp_path / "play.yml"
    play.write_text(DIFF_PLAY)
    out = tmp_path / "out.json"
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        HVGUARD_REPORT_DIR=str(tmp_path / "reports"),
    )
    extra = json.dumps(
        {"paths": paths, "out": str(out), "ansible_python_interpreter": sys.executable}
    )
    argv = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local"]
    proc = subprocess.run(
        [*argv, "-e", extra, str(play)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_differential_against_stat_and_slurp(tree: dict[str, Path], tmp_path: Path) -> None:
    """Same checksum as `stat` (follow=false: none for a link or a directory), same content
    as `slurp` (links followed; a missing file, a dangling link or a directory: none)."""
    paths = [str(p) for p in tree.values()]
    got = real_tools_and_module(tmp_path / "run", paths)
    rows = zip(paths, got["stat"], got["slurp"], got["as_slurp"], strict=True)
    for path, st, sl, as_slurp in rows:
        entry = got["files"][path]
        assert entry.get("checksum") == st["stat"].get("checksum"), path
        assert entry.get("content") == sl.get("content"), path
        assert as_slurp.get("content") == sl.get("content"), path
        assert bool(as_slurp["failed"]) == bool(sl.get("failed") or "content" not in sl), path
        # What stat says exists (the link itself, follow=false) is what the module says,
        # except a dangling link, whose content the module was asked for and cannot read.
        if path != str(tree["dangling"]):
            assert entry["exists"] == st["stat"]["exists"], path


def test_as_slurp_keeps_loop_items_and_fails_on_missing() -> None:
    files = {"/a": {"exists": True, "content": "eA=="}, "/b": {"exists": False}}
    items = [{"cert": "/a", "ca": "fleet"}, {"cert": "/b", "ca": "qemu"}, {"cert": "/c"}]
    out = hvguard_files_as_slurp(files, items, "cert")
    assert [r["item"] for r in out] == items
    assert out[0] == {"item": items[0], "source": "/a", "content": "eA==", "encoding": "base64",
                      "failed": False}  # fmt: skip
    assert out[1]["failed"] and "content" not in out[1]
    assert out[2]["msg"] == "file not found: /c"


def test_ansible_doc_renders() -> None:
    text = ansible_doc("hvguard_files_info")
    assert "One call instead of a" in text
    assert "EXAMPLES" in text and "RETURN VALUES" in text


def test_checksums_name_every_path_asked_for() -> None:
    """A missing key has no checksum: '' (as `stat.checksum | default('')`), never a KeyError
    (a fresh host has no keys yet)."""
    files = {"/k1": {"exists": True, "checksum": "ab"}, "/k2": {"exists": False}}
    assert hvguard_files_checksums(files, ["/k1", "/k2", "/k3"]) == {
        "/k1": "ab",
        "/k2": "",
        "/k3": "",
    }
