# SPDX-License-Identifier: Apache-2.0
"""module_utils/hvguard_virconf: libvirt config grammar, round trips and in-place edits.

Where virtlogd (libvirt's own parser) is installed, syntax verdicts and error line numbers are
cross-checked against it: ``virtlogd -f FILE`` parses FILE with libvirt's virconf code and
exits at once on a syntax error. Valid snippets get ``log_level = "x"`` appended, which
virtlogd parses fine and then rejects as a type error, so it never starts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import ROOT, load_module_utils

virconf = load_module_utils("hvguard_virconf")
FIXTURES = ROOT / "tests" / "fixtures" / "modules" / "virconf"
REAL_FILES = ["libvirtd.conf", "qemu.conf", "virtlogd.conf"]
VIRTLOGD = shutil.which("virtlogd") or (
    "/usr/sbin/virtlogd" if Path("/usr/sbin/virtlogd").exists() else None
)


def libvirt_verdict(tmp_path: Path, text: str, valid_expected: bool) -> tuple[str, int | None]:
    """('ok', None) or ('syntax', line) as libvirt's own parser sees ``text``."""
    conf = tmp_path / "oracle.conf"
    if valid_expected:
        # A type error after the text stops virtlogd right after a successful parse.
        sep = "" if text.endswith("\n") or not text else "\n"
        text = text + sep + 'log_level = "x"\n'
    conf.write_text(text)
    argv = [VIRTLOGD, "-f", str(conf), "-p", str(tmp_path / "virtlogd.pid")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    assert proc.returncode != 0, "virtlogd accepted the oracle file and started"
    found = re.search(r"syntax error: [^:]+:(\d+): ", proc.stderr)
    if found:
        return "syntax", int(found.group(1))
    assert "log_level" in proc.stderr, proc.stderr
    return "ok", None


# -- round trips ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", REAL_FILES)
def test_debian_files_round_trip_byte_identical(name):
    raw = (FIXTURES / name).read_bytes()
    text = raw.decode()
    conf = virconf.VirConf(text, name)
    assert conf.text.encode() == raw
    new, changed = virconf.apply(text, {}, [])
    assert new.encode() == raw
    assert changed == []


@pytest.mark.parametrize("name", REAL_FILES)
def test_live_etc_libvirt_files_parse_and_round_trip(name):
    path = Path("/etc/libvirt") / name
    if not path.exists():
        pytest.skip(f"{path} not installed")
    text = path.read_text()
    assert virconf.apply(text, {}, [])[0] == text


def test_debian_defaults_are_all_commented():
    # Sanity: the fixtures are what the role authors assume (every key commented out).
    for name in REAL_FILES:
        assert virconf.VirConf((FIXTURES / name).read_text()).as_dict() == {}


# -- parsing -------------------------------------------------------------------------------
def test_parses_all_value_forms():
    text = (
        "# header\n"
        "a = 1\n"
        "b = -42 # trailing comment\n"
        "c = +7; d = \"dq 'x'\"\n"
        "e = 'sq \"y\"'\n"
        'f = """multi\nline"""\n'
        "g = [ \"x\",\n    'y',\n]\n"
        "h = []\n"
        'i=[1,["n"]]\n'
        '\tj\t=\t"tab"\r\n'
    )
    conf = virconf.VirConf(text)
    assert conf.as_dict() == {
        "a": 1,
        "b": -42,
        "c": 7,
        "d": "dq 'x'",
        "e": 'sq "y"',
        "f": "multi\nline",
        "g": ["x", "y"],
        "h": [],
        "i": [1, ["n"]],
        "j": "tab",
    }
    assert [e.line for e in conf.entries] == [2, 3, 4, 4, 5, 6, 8, 11, 12, 13]


def test_first_occurrence_wins():
    conf = virconf.VirConf("a = 1\nb = 'x'\na = 2\n")
    assert conf.get("a") == 1
    assert conf.as_dict() == {"a": 1, "b": "x"}
    assert conf.get("missing", "dflt") == "dflt"


BAD = [
    ('a = 1\nb = "open\nc = 2\n', 2, "unterminated string"),
    ('# c\na = [ "x", # no comments in lists\n "y" ]\n', 2, "expecting a value"),
    ("a = 1 b = 2\n", 1, "expecting a separator"),
    ('a = [ "x" "y" ]\n', 1, "expecting a separator in list"),
    ('a = [ "x",\n\n', 3, "expecting a value"),
    ("\n\nlisten_tls 1\n", 3, "expecting an assignment"),
    ("1abc = 2\n", 1, "expecting a name"),
    ("a = yes\n", 1, "expecting a value"),
    ("a = -\n", 1, "unterminated number"),
    ('a = """never closed\nmore\n', 2, "unterminated string"),
    ("\n\n", 3, "expecting a name"),
    ("a =\n", 1, "expecting a value"),
    ("_a = 1\n", 1, "expecting a name"),
    ("a = \u00b2\n", 1, "expecting a value"),
    ("a = -\u0663\n", 1, "unterminated number"),
    ("\u00e9t\u00e9 = 1\n", 1, "expecting a name"),
    ("a = 12\u00b2\n", 1, "expecting a separator"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_syntax_errors_carry_line_numbers(text, line, message):
    with pytest.raises(virconf.VirConfError) as info:
        virconf.validate(text, "/etc/libvirt/x.conf")
    assert info.value.line == line
    assert info.value.message == message
    assert str(info.value) == f"/etc/libvirt/x.conf:{line}: {message}"


GOOD = [
    "",
    "# only a comment",
    "a = 1",
    "a = 1;b = 'x' ;\n",
    'a = [ "x",\n\n "y" ,\n ]\n',
    'a = """x\ny"""\n',
    "a = 1\n\n\n",
    "a = [\n]\n# end",
]


@pytest.mark.skipif(VIRTLOGD is None, reason="virtlogd (libvirt's parser) not installed")
@pytest.mark.parametrize("text", [t for t, _, _ in BAD] + GOOD)
def test_verdicts_match_libvirt(tmp_path, text):
    try:
        virconf.validate(text)
        ours: tuple[str, int | None] = ("ok", None)
    except virconf.VirConfError as exc:
        ours = ("syntax", exc.line)
    assert ours == libvirt_verdict(tmp_path, text, valid_expected=ours[0] == "ok")


# -- serialization -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "1"),
        (False, "0"),
        (5, "5"),
        (-1, "-1"),
        ("plain", '"plain"'),
        ('has "dq"', "'has \"dq\"'"),
        ("two\nlines", '"""two\nlines"""'),
        ("both \" and '", '"""both " and \'"""'),
        (["a", "b"], '[ "a", "b" ]'),
        ([], "[ ]"),
    ],
)
def test_format_value_reads_back(value, text):
    assert virconf.format_value(value) == text
    expected = virconf.normalize(value)
    assert virconf.VirConf(f"k = {text}\n").get("k") == expected


@pytest.mark.parametrize("value", ["ends with quote and ' \"", 'has """ inside\n'])
def test_unrepresentable_strings_are_rejected(value):
    with pytest.raises(ValueError, match="cannot be written"):
        virconf.format_value(value)


@pytest.mark.parametrize("value", [1.5, None, {"a": 1}, ["ok", 3]])
def test_unsupported_types_name_the_key(value):
    with pytest.raises(TypeError, match=r"^listen_tls: "):
        virconf.apply("", {"listen_tls": value})


@pytest.mark.parametrize("key", ["1bad", "with-dash", "has space", "", "_x", "a.b"])
def test_invalid_keys_rejected(key):
    with pytest.raises(ValueError, match="invalid libvirt config key"):
        virconf.apply("", {key: 1})
    with pytest.raises(ValueError, match="invalid libvirt config key"):
        virconf.apply("", {}, [key])


def test_key_in_settings_and_absent_rejected():
    with pytest.raises(ValueError, match="both in settings and absent: a"):
        virconf.apply("", {"a": 1}, ["a"])


# -- editing -------------------------------------------------------------------------------
def test_replace_in_place_keeps_layout_and_trailing_comment():
    text = "# top\nlisten_tls = 0   # was off\nother = 'x'\n"
    new, changed = virconf.apply(text, {"listen_tls": True})
    assert new == "# top\nlisten_tls = 1   # was off\nother = 'x'\n"
    assert changed == ["listen_tls"]


def test_commented_key_is_not_touched_and_missing_key_appended_under_header():
    text = "#listen_tls = 0\n"
    new, changed = virconf.apply(text, {"listen_tls": 1, "tls_port": "16514"})
    assert new == '#listen_tls = 0\n\n# Managed by hvguard\nlisten_tls = 1\ntls_port = "16514"\n'
    assert changed == ["listen_tls", "tls_port"]


def test_header_added_once_and_file_without_final_newline():
    first, _ = virconf.apply("a = 1", {"b": 2})
    assert first == "a = 1\n\n# Managed by hvguard\nb = 2\n"
    second, changed = virconf.apply(first, {"c": [1 == 1 and "x"]})
    assert second == first + 'c = [ "x" ]\n'
    assert second.count("# Managed by hvguard") == 1
    assert changed == ["c"]


def test_empty_file_gets_header_only_block():
    assert virconf.apply("", {"a": 1})[0] == "# Managed by hvguard\na = 1\n"


def test_duplicates_dropped_first_replaced():
    text = "a = 1\nb = 2\na = 3 # dup\nc = 4; a = 5; d = 6\n"
    new, changed = virconf.apply(text, {"a": 9})
    assert new == "a = 9\nb = 2\nc = 4; d = 6\n"
    assert changed == ["a"]
    assert virconf.VirConf(new).as_dict() == {"a": 9, "b": 2, "c": 4, "d": 6}


def test_duplicate_dropped_even_when_first_already_right():
    new, changed = virconf.apply("a = 1\na = 2\n", {"a": True})
    assert new == "a = 1\n"
    assert changed == ["a"]


def test_equal_value_in_other_layout_is_left_alone():
    text = 'tls_allowed_dn_list = [\n  "CN=a",\n  "CN=b",\n]\nlisten_tls=1\n'
    new, changed = virconf.apply(text, {"tls_allowed_dn_list": ["CN=a", "CN=b"], "listen_tls": 1})
    assert new == text
    assert changed == []


def test_type_change_is_a_change():
    new, changed = virconf.apply('listen_tls = "1"\n', {"listen_tls": 1})
    assert new == "listen_tls = 1\n"
    assert changed == ["listen_tls"]


def test_multiline_list_replaced_whole():
    text = 'x = 0\nl = [\n  "a",\n  "b"\n] # keep\ny = 1\n'
    new, _ = virconf.apply(text, {"l": ["c"]})
    assert new == 'x = 0\nl = [ "c" ] # keep\ny = 1\n'


def test_absent_removes_every_occurrence_with_its_line():
    text = "a = 1\nkeep = 2\n  a = [\n 'x' ] # comment of a\nb = 3; a = 4\n#a = 5\n"
    new, changed = virconf.apply(text, {}, ["a", "missing"])
    assert new == "keep = 2\nb = 3\n#a = 5\n"
    assert changed == ["a"]


def test_apply_is_idempotent_on_real_files():
    settings = {
        "listen_tls": True,
        "listen_tcp": False,
        "tls_allowed_dn_list": ["C=GB,CN=hv1", "C=GB,CN=hv2"],
        "tls_priority": "@LIBVIRT,SYSTEM:-VERS-TLS1.1",
    }
    text = (FIXTURES / "libvirtd.conf").read_text()
    first, changed = virconf.apply(text, settings, ["auth_tcp"])
    assert changed == list(settings)
    assert first.startswith(text)
    second, changed2 = virconf.apply(first, settings, ["auth_tcp"])
    assert second == first
    assert changed2 == []


@pytest.mark.skipif(VIRTLOGD is None, reason="virtlogd (libvirt's parser) not installed")
def test_edited_real_files_are_accepted_by_libvirt(tmp_path):
    for name in REAL_FILES:
        text = (FIXTURES / name).read_text()
        edited, _ = virconf.apply(
            text, {"zz_list": ["a", 'q"uote'], "zz_int": -3, "zz_str": "two\nlines"}
        )
        assert libvirt_verdict(tmp_path, edited, valid_expected=True) == ("ok", None)


def test_verify_guards_against_wrong_result():
    with pytest.raises(virconf.VirConfError, match="reads back as 2"):
        virconf.verify("a = 2\n", {"a": 1}, [])
    with pytest.raises(virconf.VirConfError, match="still present"):
        virconf.verify("a = 2\n", {}, ["a"])


def _random_snippet(rng) -> str:
    """Mostly-valid virconf built from tokens, with the edge cases the grammar has."""
    tokens = [
        "a", "key_1", "x9", "_bad", "9bad", " ", "\t", "\n", "\r\n", "=", " = ", ";", ",",
        "[", "]", "# c", "1", "-2", "+3", "-", '"s"', "'q'", '"un', '"""t\n"""', '"""',
        "'", '"', "é", "²",
    ]  # fmt: skip
    parts = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.6:
            value = rng.choice(['"v"', "'w'", "12", "-3", "[ ]", '[ "a",\n "b", ]', '"""m\nl"""'])
            name = rng.choice(["k", "key_2", "z"])
            end = rng.choice(["\n", ";", " # c\n"])
            parts.append(f"{name} = {value}{end}")
        else:
            parts.append("".join(rng.choice(tokens) for _ in range(rng.randint(1, 6))))
    return "".join(parts)


MUTATION_BASE = (
    '# header\nlisten_tls = 1\nauth_tls = "none" # why\n'
    "tls_allowed_dn_list = [ \"O=x,CN=a\",\n    'CN=b', ]\n"
    'n = -5; s = """two\nlines"""\n'
)


def _mutated_snippet(rng) -> str:
    """The base text with one to three random single-character edits."""
    text = MUTATION_BASE
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(text) + 1)
        if rng.random() < 0.5 and pos < len(text):
            text = text[:pos] + text[pos + 1 :]
        else:
            text = text[:pos] + rng.choice("\"'[],;=#\n \t-a1_") + text[pos:]
    return text


@pytest.mark.skipif(VIRTLOGD is None, reason="virtlogd (libvirt's parser) not installed")
@pytest.mark.parametrize("generator", [_random_snippet, _mutated_snippet])
def test_random_snippets_match_libvirt(tmp_path, generator):
    import random

    rng = random.Random(20261126)
    mismatches = []
    for _ in range(150):
        text = generator(rng)
        try:
            virconf.validate(text)
            ours: tuple[str, int | None] = ("ok", None)
        except virconf.VirConfError as exc:
            ours = ("syntax", exc.line)
        theirs = libvirt_verdict(tmp_path, text, valid_expected=ours[0] == "ok")
        if ours != theirs:
            mismatches.append((text, ours, theirs))
    assert mismatches == []
