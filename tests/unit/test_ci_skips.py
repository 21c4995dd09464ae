# SPDX-License-Identifier: Apache-2.0
"""tests/conftest.py: on CI a skip not allowed by ci_skips.yml fails the run.

Each case runs a real pytest session in a subprocess on a tiny test directory that carries a
copy of the suite's conftest.py and its own ci_skips.yml.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = """
import pytest

def test_passes():
    pass

@pytest.mark.skipif(True, reason="needs a tool")
def test_marked():
    pass

def test_skips_inside():
    pytest.skip("lock busy")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False
"""
ALL_ALLOWED = """
- test: "tests/test_sample.py::test_marked"
  reason: needs a tool CI does not have
- test: "tests/test_sample.py::test_skips_*"
  reason: the lock may be busy
  match: "^lock busy$"
"""


def run(tmp_path: Path, allowed: str | None, env: dict[str, str], tests: str = TESTS):
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir(exist_ok=True)
    shutil.copy(ROOT / "tests" / "conftest.py", tests_dir / "conftest.py")
    (tests_dir / "test_sample.py").write_text(tests)
    if allowed is not None:
        (tests_dir / "ci_skips.yml").write_text(allowed)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    clean = {k: v for k, v in os.environ.items() if k not in {"CI", "HVGUARD_STRICT_SKIPS"}}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def test_unlisted_skips_fail_on_ci_with_the_list(tmp_path):
    proc = run(tmp_path, "[]\n", {"CI": "true"})
    assert proc.returncode == 1, proc.stdout
    assert "skips not allowed on CI" in proc.stdout
    assert "SKIP NOT ALLOWED tests/test_sample.py::test_marked: needs a tool" in proc.stdout
    assert "SKIP NOT ALLOWED tests/test_sample.py::test_skips_inside: lock busy" in proc.stdout
    assert "test_xfail" not in proc.stdout.split("skips not allowed on CI")[1]
    assert "2 required test(s) skipped" in proc.stdout


def test_listed_skips_pass_on_ci(tmp_path):
    proc = run(tmp_path, ALL_ALLOWED, {"CI": "true"})
    assert proc.returncode == 0, proc.stdout
    assert "2 skipped" in proc.stdout and "not allowed" not in proc.stdout


def test_listed_test_skipping_for_another_reason_fails(tmp_path):
    proc = run(tmp_path, ALL_ALLOWED, {"CI": "true"}, TESTS.replace("lock busy", "no network"))
    assert proc.returncode == 1, proc.stdout
    assert "SKIP NOT ALLOWED tests/test_sample.py::test_skips_inside: no network" in proc.stdout
    assert "test_marked:" not in proc.stdout


def test_module_level_skip_is_caught(tmp_path):
    module_skip = "import pytest\npytest.skip('no libvirt', allow_module_level=True)\n"
    proc = run(tmp_path, "[]\n", {"CI": "true"}, module_skip)
    assert proc.returncode == 1, proc.stdout
    assert "SKIP NOT ALLOWED tests/test_sample.py: no libvirt" in proc.stdout


def test_a_failing_run_keeps_its_exit_status(tmp_path):
    proc = run(tmp_path, "[]\n", {"CI": "true"}, TESTS + "\ndef test_fails():\n    assert 0\n")
    assert proc.returncode == 1, proc.stdout
    assert "1 failed" in proc.stdout and "SKIP NOT ALLOWED" in proc.stdout


@pytest.mark.parametrize(
    ("env", "strict"),
    [
        ({}, False),
        ({"CI": "false"}, False),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"HVGUARD_STRICT_SKIPS": "1"}, True),
        ({"CI": "true", "HVGUARD_STRICT_SKIPS": "0"}, False),
    ],
)
def test_when_the_check_applies(tmp_path, env, strict):
    proc = run(tmp_path, "[]\n", env)
    assert proc.returncode == (1 if strict else 0), proc.stdout
    assert ("SKIP NOT ALLOWED" in proc.stdout) is strict


@pytest.mark.parametrize(
    ("allowed", "error"),
    [
        ("- test: x\n", "each entry needs test and reason"),
        ("- {test: x, reason: '  '}\n", "reason must say why"),
        ("- {test: x, reason: r, when: y}\n", "unknown keys ['when']"),
        ("test: x\n", "expected a list"),
    ],
)
def test_malformed_allow_list_is_a_usage_error(tmp_path, allowed, error):
    proc = run(tmp_path, allowed, {"CI": "true"})
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert error in proc.stderr


def test_suite_allow_list_is_well_formed_and_every_entry_names_a_test():
    spec = importlib.util.spec_from_file_location("ci_conftest", ROOT / "tests" / "conftest.py")
    assert spec and spec.loader
    conftest = importlib.util.module_from_spec(spec)
    sys.modules["ci_conftest"] = conftest  # dataclasses resolve annotations through it
    spec.loader.exec_module(conftest)
    entries = conftest.load_allowed(ROOT / "tests" / "ci_skips.yml")
    for entry in entries:
        path = entry.test.split("::", 1)[0]
        assert (ROOT / path).is_file(), f"{entry.test}: no such test file"
        assert len(entry.reason) > 15, f"{entry.test}: say why it may skip on CI"
