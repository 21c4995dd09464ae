# SPDX-License-Identifier: Apache-2.0
"""library/hvguard_sysfs: compare/write semantics on fake attribute files, errors, real runs."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import ansible_adhoc, ansible_doc, load_library, run_module

mod = load_library("hvguard_sysfs")


@pytest.fixture
def thp(tmp_path: Path) -> Path:
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    return path


@pytest.fixture
def ksm_run(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.write_text("1\n")
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("always [madvise] never\n", "madvise"),
        ("[always] madvise never", "always"),
        ("  1\n", "1"),
        ("0-3\n", "0-3"),
        ("", ""),
    ],
)
def test_effective_value(raw, expected):
    assert mod.effective(raw) == expected


def test_check_mode_reports_drift_without_writing(ksm_run, capsys):
    result = run_module(mod, capsys, {"path": str(ksm_run), "value": "0"}, check=True, diff=True)
    assert ksm_run.read_text() == "1\n"
    assert result["changed"] is True
    assert result["previous"] == "1"
    assert result["current"] == "1"
    assert result["diff"] == {
        "before": "1\n",
        "after": "0\n",
        "before_header": str(ksm_run),
        "after_header": str(ksm_run),
    }


def test_write_then_idempotent(ksm_run, capsys):
    result = run_module(mod, capsys, {"path": str(ksm_run), "value": "0"})
    assert result["changed"] is True
    assert ksm_run.read_text() == "0"  # written as given, like printf
    assert result["current"] == "0"
    again = run_module(mod, capsys, {"path": str(ksm_run), "value": "0"}, check=True, diff=True)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"]


def test_bracketed_choice_compared_on_selected_word(thp, capsys, monkeypatch):
    same = run_module(mod, capsys, {"path": str(thp), "value": "madvise"})
    assert same["changed"] is False
    assert thp.read_text() == "always [madvise] never\n"

    def kernel_write(path: str, value: str) -> None:
        # What the kernel shows after a write: the choice list with the new selection.
        words = ["always", "madvise", "never"]
        Path(path).write_text(" ".join(f"[{w}]" if w == value else w for w in words) + "\n")

    monkeypatch.setattr(mod, "write_attr", kernel_write)
    result = run_module(mod, capsys, {"path": str(thp), "value": "never"})
    assert result["changed"] is True
    assert (result["previous"], result["current"]) == ("madvise", "never")
    assert thp.read_text() == "always madvise [never]\n"
    assert run_module(mod, capsys, {"path": str(thp), "value": "never"})["changed"] is False


def test_match_allows_several_compliant_values(ksm_run, capsys):
    ksm_run.write_text("2\n")
    result = run_module(mod, capsys, {"path": str(ksm_run), "value": "0", "match": "^[02]$"})
    assert result["changed"] is False
    assert ksm_run.read_text() == "2\n"
    ksm_run.write_text("1\n")
    fixed = run_module(mod, capsys, {"path": str(ksm_run), "value": "0", "match": "^[02]$"})
    assert fixed["changed"] is True
    assert ksm_run.read_text() == "0"


def test_match_uses_selected_word(thp, capsys):
    args = {"path": str(thp), "value": "never", "match": "^(madvise|never)$"}
    assert run_module(mod, capsys, args, check=True)["changed"] is False


def test_never_matching_match_forces_a_write_that_still_verifies(ksm_run, capsys):
    # The memory role forces run=2 (unmerge) while pages are still shared with '^(?!)'.
    ksm_run.write_text("2\n")
    args = {"path": str(ksm_run), "value": "2", "match": "^(?!)"}
    result = run_module(mod, capsys, args)
    assert result["changed"] is True
    assert ksm_run.read_text() == "2"


def test_invalid_regex_fails(ksm_run, capsys):
    result = run_module(mod, capsys, {"path": str(ksm_run), "value": "0", "match": "("})
    assert result["failed"] is True
    assert "match is not a valid regular expression" in result["msg"]
    assert ksm_run.read_text() == "1\n"


def test_missing_path_fails_clearly(tmp_path, capsys):
    missing = tmp_path / "nope"
    result = run_module(mod, capsys, {"path": str(missing), "value": "0"}, check=True)
    assert result["failed"] is True
    assert result["msg"] == f"{missing} does not exist on this host"
    assert not missing.exists()


def test_value_not_taken_by_kernel_fails(tmp_path, monkeypatch):
    attr = tmp_path / "run"
    attr.write_text("1\n")
    monkeypatch.setattr(mod, "write_attr", lambda path, value: None)  # kernel ignored it
    with pytest.raises(mod.SysfsError, match=r"wrote '0' to .* but it reads back as '1'"):
        mod.ensure(str(attr), "0", None, check_mode=False)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (errno.EROFS, "is read-only here"),
        (errno.EPERM, "is read-only here"),
        (errno.EACCES, "is read-only here"),
        (errno.EINVAL, "the kernel rejected '0'"),
        (errno.EBUSY, "cannot write '0'"),
    ],
)
def test_write_errors_are_explained(ksm_run, monkeypatch, code, message):
    real_open = open

    def fake_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(code, __import__("os").strerror(code))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(mod.SysfsError, match=message):
        mod.ensure(str(ksm_run), "0", None, check_mode=False)
    monkeypatch.undo()
    assert ksm_run.read_text() == "1\n"


def test_really_read_only_procfs_attribute(capsys):
    # Root cannot write a 0444 sysctl: the kernel answers EACCES.
    attr = Path("/proc/sys/kernel/osrelease")
    if not attr.exists():
        pytest.skip("no procfs")
    release = attr.read_text()
    result = run_module(mod, capsys, {"path": str(attr), "value": "hvguard-test"})
    assert result["failed"] is True
    assert "is read-only here" in result["msg"]
    assert attr.read_text() == release


def test_real_attribute_in_check_mode_never_writes(capsys):
    attr = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not attr.exists():
        pytest.skip("no THP on this kernel")
    raw = attr.read_text()
    current = mod.effective(raw)
    other = next(word.strip("[]") for word in raw.split() if word.strip("[]") != current)
    result = run_module(mod, capsys, {"path": str(attr), "value": other}, check=True)
    assert result["changed"] is True
    assert result["previous"] == current
    assert attr.read_text() == raw


def test_ansible_doc_renders():
    text = ansible_doc("hvguard_sysfs")
    for word in ("path", "value", "match", "previous", "EXAMPLES"):
        assert word in text


def test_real_ansible_run_check_then_apply(ksm_run, tmp_path):
    args = {"path": str(ksm_run), "value": "0"}
    checked = ansible_adhoc("hvguard_sysfs", args, tmp_path / "r", check=True, diff=True)
    assert checked["changed"] is True, checked
    assert ksm_run.read_text() == "1\n"
    applied = ansible_adhoc("hvguard_sysfs", args, tmp_path / "r")
    assert applied["changed"] is True, applied
    assert ksm_run.read_text() == "0"
    again = ansible_adhoc("hvguard_sysfs", args, tmp_path / "r")
    assert again["changed"] is False, again


def test_value_compared_without_surrounding_whitespace(ksm_run, capsys):
    # A YAML block scalar (`value: |`) ends in a newline; the kernel's text does too.
    ksm_run.write_text("0\n")
    result = run_module(mod, capsys, {"path": str(ksm_run), "value": "0\n"}, check=True)
    assert result["changed"] is False
    ksm_run.write_text("1\n")
    assert run_module(mod, capsys, {"path": str(ksm_run), "value": " 0 "}, check=True)["changed"]


def test_compliant_by_match_diff_shows_no_change(ksm_run, capsys):
    ksm_run.write_text("2\n")
    args = {"path": str(ksm_run), "value": "0", "match": "^[02]$"}
    result = run_module(mod, capsys, args, check=True, diff=True)
    assert result["changed"] is False
    assert result["diff"]["before"] == result["diff"]["after"] == "2\n"
