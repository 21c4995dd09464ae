# SPDX-License-Identifier: Apache-2.0
"""HVG-STO-002: the diverted lvremove (roles/hvguard_scrub/files/hvguard-scrub, lvremove
wrapper) parses like LVM, lets LVM resolve the target set, and keeps the real tool's prompts
and refusals. A scripted fake `lvm` (state in JSON, every call logged) stands in for LVM on
hosts without device-mapper; the same rules are proven against the real LVM 2.03 in the lab
VM by molecule/scrub/files/lvremove_diff.py.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import load_scrub_engine

ENGINE = Path(__file__).resolve().parents[2] / "roles/hvguard_scrub/files/hvguard-scrub"


eng = load_scrub_engine("hvguard_scrub_lvremove")

FAKE_LVM = r"""#!{py}
import json, os, sys
state_path = {state!r}
st = json.load(open(state_path))
args = sys.argv[1:]
st["calls"].append(args)
VALUE = {{"-o", "-O", "--reportformat", "--units", "--select", "-S", "--devices", "--config",
         "--devicesfile", "--profile", "--commandprofile", "--lockopt", "--driverloaded",
         "-A", "--autobackup"}}

def save():
    json.dump(st, open(state_path, "w"))

def split(argv):
    opts, names, i, dashdash = {{}}, [], 0, False
    while i < len(argv):
        a = argv[i]
        if dashdash or not a.startswith("-"):
            names.append(a)
        elif a == "--":
            dashdash = True
        elif a in VALUE:
            opts.setdefault(a, []).append(argv[i + 1])
            i += 1
        else:
            opts.setdefault(a, []).append(None)
        i += 1
    return opts, names

def matches(lv, name):
    name = name.removeprefix("/dev/")
    if name.startswith("@"):
        return name[1:] in lv["tags"]
    return name in (lv["vg_name"], lv["vg_name"] + "/" + lv["lv_name"])

def selected(lv, expr):
    field, value = expr.split("=", 1)
    return value in lv["tags"] if field == "lv_tags" else lv.get(field) == value

def by_name(name):
    for lv in st["lvs"]:
        if lv["vg_name"] + "/" + lv["lv_name"] == name.removeprefix("/dev/"):
            return lv
    return None

def set_active(lv, on):
    lv["lv_attr"] = lv["lv_attr"][:4] + ("a" if on else "-") + lv["lv_attr"][5:]
    path = st["devdir"] + "/" + lv["vg_name"] + "/" + lv["lv_name"]
    if on:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "ab").close()
    elif os.path.exists(path):
        os.unlink(path)

def row(lv, fields):
    path = st["devdir"] + "/" + lv["vg_name"] + "/" + lv["lv_name"]
    full = dict(lv, lv_path=path, lv_dm_path=path)
    return {{f: full.get(f, "") for f in fields}}

cmd, rest = args[0], args[1:]
opts, names = split(rest)
rc = 0
if cmd == "lvs":
    fields = opts["-o"][0].split(",")
    rows, missing = [], []
    pool = st["lvs"] if not names else []
    for name in names:
        hit = [lv for lv in st["lvs"] if matches(lv, name)]
        if not hit and not name.startswith("@"):
            missing.append(name)
        pool += [lv for lv in hit if lv not in pool]
    for expr in opts.get("--select", [])[-1:]:
        pool = [lv for lv in pool if selected(lv, expr)]
    for name in missing:
        sys.stderr.write('  Failed to find logical volume "%s"\n' % name)
        rc = 5
    print(json.dumps({{"report": [{{"lv": [row(lv, fields) for lv in pool]}}]}}))
elif cmd == "lvrename":
    lv = by_name(rest[0] + "/" + rest[1])
    set_active(lv, False)
    lv["lv_name"] = rest[2]
    set_active(lv, True)
elif cmd == "lvchange":
    set_active(by_name(names[0]), "-ay" in opts)
elif cmd == "lvmconfig":
    print("issue_discards=%d" % st.get("issue_discards", 0))
elif cmd == "lvremove" and "--test" in opts:
    if "maybe" in rest or "-Amaybe" in rest:
        sys.stderr.write("  Invalid argument for --autobackup: maybe\n")
        rc = 3
save()
sys.exit(rc)
"""


def lv(vg, name, attr="-wi-a-----", pool="", tags=(), uuid=None):
    return {
        "vg_name": vg,
        "lv_name": name,
        "lv_uuid": uuid or f"uuid-{vg}-{name}",
        "lv_attr": attr,
        "pool_lv": pool,
        "lv_size": "4194304",
        "thin_id": "1" if attr.startswith("V") else "",
        "tags": list(tags),
    }


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A managed VG `vmvg` (thick, inactive, tagged, tenant-prefixed, thin pool + thin LV),
    a managed VG `vg2` (two thick LVs) and an unmanaged `sysvg`."""
    state = tmp_path / "lvm-state.json"
    devdir = tmp_path / "dev"
    lvs = [
        lv("vmvg", "vm1", tags=["t1"]),
        lv("vmvg", "vm2", tags=["t1"]),
        lv("vmvg", "off", attr="-wi-------"),
        lv("vmvg", "hvgscrub-tenant"),
        lv("vmvg", "pool", attr="twi-aotz--"),
        lv("vmvg", "thin1", attr="Vwi-a-tz--", pool="pool"),
        lv("vg2", "e1"),
        lv("vg2", "e2"),
        lv("sysvg", "root", attr="-wi-ao----", tags=["t1"]),
    ]
    state.write_text(json.dumps({"lvs": lvs, "calls": [], "devdir": str(devdir)}))
    for x in lvs:
        if x["lv_attr"][4] == "a":
            (devdir / x["vg_name"]).mkdir(parents=True, exist_ok=True)
            (devdir / x["vg_name"] / x["lv_name"]).write_bytes(b"data")
    script = tmp_path / "lvm"
    script.write_text(FAKE_LVM.format(py=sys.executable, state=str(state)))
    script.chmod(0o755)
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(
        json.dumps(
            {
                "state_dir": str(tmp_path / "state"),
                "libvirt_check": False,
                "lvm_command": str(script),
                "pools": [
                    {"name": "vmvg", "type": "logical", "vg": "vmvg"},
                    {"name": "vg2", "type": "logical", "vg": "vg2"},
                ],
            }
        )
    )
    spawned = []
    monkeypatch.setattr(eng, "spawn_worker", spawned.append)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    cfg = eng.load_config(cfg_path)

    class Fake:
        def __init__(self):
            self.cfg, self.cfg_path, self.spawned, self.script = cfg, str(cfg_path), spawned, script

        def calls(self, cmd=None):
            got = json.loads(state.read_text())["calls"]
            return [c for c in got if cmd is None or c[0] == cmd]

        def renamed(self):
            return [f"{c[1]}/{c[2]}" for c in self.calls("lvrename")]

        def real(self):
            return [c[1:] for c in self.calls("lvremove") if "--test" not in c]

        def run(self, *argv, stdin=""):
            sys.stdin = io.StringIO(stdin)
            return eng.cmd_lvremove(self.cfg, list(argv), self.cfg_path)

    return Fake()


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("argv", "opts", "names"),
    [
        (["-ty", "vg/lv"], [("test", None), ("yes", None)], ["vg/lv"]),
        (["-fAn", "vg/lv"], [("force", None), ("autobackup", "n")], ["vg/lv"]),
        (["-Slv_name=a"], [("select", "lv_name=a")], []),
        (["--select=lv_name=a", "vg/b"], [("select", "lv_name=a")], ["vg/b"]),
        (["--select", "lv_name=a", "vg/b"], [("select", "lv_name=a")], ["vg/b"]),
        (["vg/a", "-f", "vg/b"], [("force", None)], ["vg/a", "vg/b"]),  # permutation
        (["--for", "--te", "vg/a"], [("force", None), ("test", None)], ["vg/a"]),  # prefixes
        (["--devices", "/dev/x", "vg/a"], [("devices", "/dev/x")], ["vg/a"]),
        (["-f", "-f", "vg/a"], [("force", None), ("force", None)], ["vg/a"]),
        (["-f", "--", "-x", "-t"], [("force", None)], ["-x", "-t"]),
        (["-?"], [("help", None)], []),
        (["-S", "-f"], [("select", "-f")], []),  # a value may start with '-', as in getopt
    ],
)
def test_parse_like_getopt_long(argv, opts, names):
    args = eng.parse_lvremove_args(argv)
    assert args.opts == opts
    assert args.names == names


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus", "vg/a"], "unrecognized option '--bogus'"),
        (["-x", "vg/a"], "invalid option -- 'x'"),
        (["--de", "vg/a"], "option '--de' is ambiguous"),
        (["--no", "vg/a"], "is ambiguous"),
        (["--yes=1", "vg/a"], "option '--yes' doesn't allow an argument"),
        (["-A"], "option requires an argument -- 'A'"),
        (["vg/a", "--select"], "option '--select' requires an argument"),
        (["-y", "--yes", "vg/a"], "Option -y/--yes may not be repeated."),
        (["--config", "a", "--config=b", "vg/a"], "Option --config may not be repeated."),
    ],
)
def test_parse_errors_are_lvm_parse_errors(argv, message):
    with pytest.raises(eng.LvremoveUsage, match=message.replace("?", r"\?")):
        eng.parse_lvremove_args(argv)


def test_posixly_correct_stops_at_first_name_like_glibc(monkeypatch):
    monkeypatch.setenv("POSIXLY_CORRECT", "1")
    args = eng.parse_lvremove_args(["vg/a", "-f"])
    assert args.opts == [] and args.names == ["vg/a", "-f"]


def test_option_table_is_lvremove_longhelp():
    """LVM 2.03.16's `lvremove --longhelp`: every option, no other."""
    longs = {o.key for o in eng.LVREMOVE_OPTS}
    assert longs == {
        "autobackup", "force", "select", "nohistory", "noudevsync", "reportformat", "debug",
        "help", "quiet", "verbose", "yes", "test", "commandprofile", "config", "driverloaded",
        "nolocking", "lockopt", "longhelp", "profile", "version", "devicesfile", "devices",
        "nohints", "journal",
    }  # fmt: skip
    shorts = {o.short: o.key for o in eng.LVREMOVE_OPTS if o.short}
    assert shorts == {
        "A": "autobackup", "f": "force", "S": "select", "d": "debug", "h": "help",
        "q": "quiet", "v": "verbose", "y": "yes", "t": "test",
    }  # fmt: skip


# --------------------------------------------------------------------------- pass-through


@pytest.mark.parametrize(
    "argv",
    [["-ty", "vmvg/vm1"], ["vmvg/vm1", "--te"], ["--help", "vmvg/vm1"], ["--version"], ["-f"]],
)
def test_test_mode_help_and_syntax_errors_go_to_the_real_tool_unchanged(fake, argv):
    """-ty (test mode, bundled) used to rename, zero and remove the LV."""
    assert fake.run(*argv) == 0
    assert fake.real() == [argv]
    assert fake.renamed() == []


def test_parse_error_removes_nothing(fake, capsys):
    assert fake.run("-f", "--bogus", "vmvg/vm1") == 3
    assert "Error during parsing of command line." in capsys.readouterr().err
    assert fake.calls() == []


def test_repeated_yes_is_refused_as_lvm_does(fake):
    assert fake.run("-f", "-y", "-y", "vmvg/vm1") == 3
    assert fake.renamed() == [] and fake.real() == []


def test_value_errors_found_by_lvm_itself_remove_nothing(fake, capsys):
    assert fake.run("-f", "-Amaybe", "vmvg/vm1") == 3
    assert "Invalid argument for --autobackup" in capsys.readouterr().err
    assert fake.renamed() == [] and fake.real() == []


def test_unmanaged_lv_gets_the_original_arguments(fake):
    assert fake.run("-f", "--autobackup=n", "sysvg/root") == 0
    assert fake.real() == [["-f", "--autobackup=n", "sysvg/root"]]
    assert fake.renamed() == []


def test_nonexistent_lv_goes_to_the_real_tool(fake):
    fake.run("-f", "vmvg/nope")
    assert fake.real() == [["-f", "vmvg/nope"]]
    assert fake.renamed() == []


# --------------------------------------------------------------------------- target set


def test_select_filters_named_lvs(fake):
    """--select=lv_name=vm1 vmvg/vm2 used to ignore the filter and destroy vm2."""
    fake.run("-f", "--select=lv_name=vm1", "vmvg/vm2")
    assert fake.renamed() == []
    assert fake.real() == [["-f", "--select=lv_name=vm1", "vmvg/vm2"]]  # removes nothing


def test_select_without_names_is_scrubbed(fake):
    """-S expr without a name used to bypass scrubbing (real lvremove, unscrubbed)."""
    assert fake.run("-f", "-Slv_name=vm2") == 0
    assert fake.renamed() == ["vmvg/vm2"]
    assert fake.real() == []
    (job,) = eng.load_jobs(fake.cfg)
    assert job["original"] == "vmvg/vm2"
    assert fake.spawned == [fake.cfg_path]


def test_tag_quarantines_every_managed_lv_and_passes_the_rest(fake):
    """@tag used to be judged by its first row only."""
    assert fake.run("-f", "@t1") == 0
    assert fake.renamed() == ["vmvg/vm1", "vmvg/vm2"]
    assert fake.real() == [["--force", "--", "sysvg/root"]]


def test_whole_managed_vg_is_quarantined(fake):
    """`lvremove vg` of a managed VG used to be refused."""
    assert fake.run("-f", "vg2") == 0
    assert fake.renamed() == ["vg2/e1", "vg2/e2"]
    assert fake.real() == []


def test_thin_pool_with_thin_volumes_is_refused_before_any_change(fake, capsys):
    with pytest.raises(eng.ScrubError, match="still has thin volumes") as exc:
        fake.run("-f", "vmvg")
    assert exc.value.code == 5
    assert fake.renamed() == [] and fake.real() == []


def test_thin_lv_is_queued_as_thin_and_a_busy_pool_refused(fake):
    assert fake.run("-f", "vmvg/thin1") == 0
    (job,) = eng.load_jobs(fake.cfg)
    assert job["kind"] == "thin"
    with pytest.raises(eng.ScrubError, match="still has thin volumes"):
        fake.run("-f", "vmvg/pool")  # the quarantined thin LV is still in it
    assert fake.renamed() == ["vmvg/thin1"] and fake.real() == []


def test_view_options_reach_the_resolution(fake):
    assert fake.run("-f", "--devices", "/dev/vdb", "--nolocking", "vmvg/vm1") == 0
    (resolve,) = [c for c in fake.calls("lvs") if "-O" in c]
    assert resolve[resolve.index("--devices") + 1] == "/dev/vdb"
    assert "--nolocking" in resolve
    assert resolve[-2:] == ["--", "vmvg/vm1"]
    assert fake.renamed() == ["vmvg/vm1"]


def test_lv_seen_differently_with_view_options_is_refused(fake, tmp_path):
    """Another LV answers to the name without --devices (e.g. a duplicate VG): the worker
    would not find the one the command meant."""
    st = json.loads((tmp_path / "lvm-state.json").read_text())
    fake.script.write_text(
        fake.script.read_text().replace(
            'if cmd == "lvs":',
            'if cmd == "lvs" and "--devices" not in opts:\n'
            '    for x in st["lvs"]:\n'
            '        x["lv_uuid"] = "other-" + x["lv_uuid"]\n'
            'if cmd == "lvs":',
        )
    )
    assert st["lvs"]
    with pytest.raises(eng.ScrubError, match="not the same LV"):
        fake.run("-f", "--devices", "/dev/vdb", "vmvg/vm1")
    assert fake.renamed() == []


def test_mixed_set_and_missing_name(fake, capsys):
    """vm1 is quarantined, sysvg/root goes to the real tool by name, the missing name is
    reported in LVM's words, and the exit code is LVM's ECMD_FAILED, as the real tool does."""
    assert fake.run("-f", "vmvg/vm1", "sysvg/root", "vmvg/nope") == 5
    assert fake.renamed() == ["vmvg/vm1"]
    assert fake.real() == [["--force", "--", "sysvg/root"]]
    assert 'Failed to find logical volume "vmvg/nope"' in capsys.readouterr().err


# --------------------------------------------------------------------------- prompts


QUESTION = "Do you really want to remove active logical volume vmvg/vm1? [y/n]: "


@pytest.mark.parametrize(
    ("stdin", "removed"),
    [("y\n", True), ("yes\n", True), ("Y\n", True), ("n\n", False), ("", False),
     ("maybe\nn\n", False), ("maybe\ny\n", True)],
)  # fmt: skip
def test_active_lv_without_force_asks_like_lvm(fake, capsys, stdin, removed):
    rc = fake.run("vmvg/vm1", stdin=stdin)
    err = capsys.readouterr().err
    assert err.startswith(QUESTION)
    assert fake.renamed() == (["vmvg/vm1"] if removed else [])
    assert rc == (0 if removed else 5)
    if not removed:
        assert "  Logical volume vmvg/vm1 not removed." in err
    if stdin.startswith("maybe"):
        assert "  WARNING: Invalid input 'maybe'." in err
    if stdin == "":
        assert QUESTION + "[n]\n" in err


def test_quiet_twice_answers_no(fake, capsys):
    assert fake.run("-qq", "vmvg/vm1", stdin="y\n") == 5
    assert QUESTION + "[n]" in capsys.readouterr().err
    assert fake.renamed() == []


@pytest.mark.parametrize("flag", ["-f", "-y", "--yes", "--for", "-ff"])
def test_force_or_yes_asks_nothing(fake, capsys, flag):
    assert fake.run(flag, "vmvg/vm1") == 0
    assert "Do you really" not in capsys.readouterr().err
    assert fake.renamed() == ["vmvg/vm1"]


def test_prompts_follow_lvm_order_and_each_answer(fake):
    assert fake.run("vmvg/vm1", "vmvg/vm2", stdin="n\ny\n") == 5
    assert fake.renamed() == ["vmvg/vm2"]


# --------------------------------------------------------------------------- issue 8 item 7


def test_inactive_lv_is_checked_and_quarantined(fake, capsys):
    """Inactive LVs used to be refused as 'does not exist' (libvirt deactivates and
    retries); like the real tool, no question is asked for an inactive LV."""
    assert fake.run("vmvg/off") == 0
    assert "Do you really" not in capsys.readouterr().err
    assert fake.renamed() == ["vmvg/off"]


@pytest.mark.parametrize(
    ("name", "question"),
    [("vmvg/off", "Do you really want to remove and DISCARD logical volume vmvg/off? [y/n]: "),
     ("vmvg/vm1",
      "Do you really want to remove and DISCARD active logical volume vmvg/vm1? [y/n]: ")],
)  # fmt: skip
def test_issue_discards_makes_lvm_ask_for_every_lv(fake, capsys, tmp_path, name, question):
    """With devices/issue_discards=1 (HVG-STO-004 sets it) LVM asks before removing any LV,
    inactive ones included ("remove and DISCARD"); the scrub VM's differential test found the
    wrapper removing an inactive LV the real tool kept."""
    state = tmp_path / "lvm-state.json"
    st = json.loads(state.read_text())
    st["issue_discards"] = 1
    state.write_text(json.dumps(st))
    assert fake.run(name, stdin="n\n") == 5
    err = capsys.readouterr().err
    assert err.startswith(question), err
    assert fake.renamed() == []
    assert fake.run("-f", name) == 0  # -f: no question, as with LVM
    assert fake.renamed() == [name]


def test_tenant_lv_with_reserved_prefix_is_removable(fake):
    """A tenant LV named hvgscrub-* used to be undeletable ("already queued")."""
    assert fake.run("-f", "vmvg/hvgscrub-tenant") == 0
    assert fake.renamed() == ["vmvg/hvgscrub-tenant"]


def test_quarantined_lv_of_the_journal_is_not_removed_again(fake, capsys):
    assert fake.run("-f", "vmvg/vm1") == 0
    (job,) = eng.load_jobs(fake.cfg)
    assert fake.run("-f", job["quarantine"]) == 0
    assert "queued for scrubbing" in capsys.readouterr().err
    assert fake.renamed() == ["vmvg/vm1"]
    assert fake.real() == []


def test_a_scrub_that_finishes_while_lvm_lists_the_vg_is_no_refusal(fake, monkeypatch, capsys):
    """Seen in the lab (VECTOR 18, `lvremove -f dvg2`): the previous vector's scrub finished
    between LVM's listing and the journal read; its quarantine LV, listed but gone, was taken
    for a tenant LV and the whole removal refused ("does not exist; nothing removed")."""
    assert fake.run("-f", "vg2/e1") == 0
    (job,) = eng.load_jobs(fake.cfg)
    resolve = eng.resolve_lvremove_set

    def listed_then_the_worker_finishes(cfg, args):
        got = resolve(cfg, args)
        eng.drop_job(cfg, job)  # the worker: zeroed, LV removed, job done
        state = fake.script.parent / "lvm-state.json"
        st = json.loads(state.read_text())
        st["lvs"] = [x for x in st["lvs"] if f"{x['vg_name']}/{x['lv_name']}" != job["quarantine"]]
        state.write_text(json.dumps(st))
        (fake.script.parent / "dev" / job["quarantine"]).unlink(missing_ok=True)
        return got

    monkeypatch.setattr(eng, "resolve_lvremove_set", listed_then_the_worker_finishes)
    capsys.readouterr()
    assert fake.run("-f", "vg2") == 0, capsys.readouterr().err
    assert fake.renamed() == ["vg2/e1", "vg2/e2"]


def test_in_use_lv_is_refused_like_lvm_and_nothing_changes(fake, monkeypatch, capsys):
    def busy(cfg, lv):
        if lv["lv_name"] == "vm2":
            raise eng.InUseError(f"refusing: {lv['lv_path']} is open by qemu[42]")

    monkeypatch.setattr(eng, "refuse_lv_if_in_use", busy)
    with pytest.raises(eng.ScrubError, match="open by qemu") as exc:
        fake.run("-f", "vmvg/vm1", "vmvg/vm2", "vmvg/off")
    assert exc.value.code == 5
    assert "  Logical volume vmvg/vm2 in use." in capsys.readouterr().err
    assert fake.renamed() == []


def run_main(fake, tmp_path, argv, config, monkeypatch, virsh=None):
    default = eng.Config(state_dir=tmp_path / "default-state", pools=[])
    default.lvm_command = str(fake.script)
    if virsh is not None:
        bindir = tmp_path / "bin"
        bindir.mkdir()
        (bindir / "virsh").write_text("#!/bin/sh\n" + virsh)
        (bindir / "virsh").chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    else:
        monkeypatch.setattr(eng.shutil, "which", lambda name: None)
    return eng.lvremove_main(str(config), argv, default)


VIRSH_POOLS = """case "$*" in
  *pool-list*) echo vmvg ;;
  *pool-dumpxml*) echo "<pool type='logical'><source><name>vmvg</name></source></pool>" ;;
esac
"""


def test_missing_config_unmanaged_vg_falls_through(fake, tmp_path, monkeypatch):
    """A missing /etc/hvguard-scrub.json used to break every lvremove."""
    rc = run_main(fake, tmp_path, ["-f", "sysvg/root"], tmp_path / "nope.json", monkeypatch,
                  virsh=VIRSH_POOLS)  # fmt: skip
    assert rc == 0
    assert fake.real() == [["-f", "sysvg/root"]]


def test_missing_config_libvirt_pool_vg_fails_closed(fake, tmp_path, monkeypatch):
    with pytest.raises(eng.ScrubError, match="is missing") as exc:
        run_main(fake, tmp_path, ["-f", "vmvg/vm1"], tmp_path / "nope.json", monkeypatch,
                 virsh=VIRSH_POOLS)  # fmt: skip
    assert exc.value.code == 5
    assert fake.real() == [] and fake.renamed() == []


def test_missing_config_libvirt_unreachable_fails_closed(fake, tmp_path, monkeypatch):
    with pytest.raises(eng.ScrubError, match="libvirt could not be asked"):
        run_main(fake, tmp_path, ["-f", "sysvg/root"], tmp_path / "nope.json", monkeypatch,
                 virsh="exit 1\n")  # fmt: skip
    assert fake.real() == []


def test_missing_config_without_libvirt_falls_through(fake, tmp_path, monkeypatch):
    rc = run_main(fake, tmp_path, ["-f", "vmvg/vm1"], tmp_path / "nope.json", monkeypatch)
    assert rc == 0
    assert fake.real() == [["-f", "vmvg/vm1"]]


def test_unreadable_config_refuses_removal_but_not_help(fake, tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(eng.ScrubError, match="invalid JSON"):
        run_main(fake, tmp_path, ["-f", "sysvg/root"], bad, monkeypatch)
    assert run_main(fake, tmp_path, ["--help"], bad, monkeypatch) == 0
    assert fake.real() == [["--help"]]


def test_installed_as_lvremove_dispatches_to_the_wrapper(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(Path("/sbin/lvremove"))])
    monkeypatch.setenv("HVGUARD_SCRUB_CONFIG", fake.cfg_path)
    assert eng.main(["-f", "-Slv_name=vm2"]) == 0
    assert fake.renamed() == ["vmvg/vm2"]
