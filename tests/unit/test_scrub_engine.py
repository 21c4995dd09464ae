"""Unit tests of the scrub engine (roles/hvguard_scrub/files/hvguard-scrub) on plain files.

Root-only effects (loop devices, raw-disk scans, SIGKILL + resume) are in
tests/host/test_scrub_host.py; LVM paths are proven in molecule/scrub.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "roles/hvguard_scrub/files/hvguard-scrub"
MARK = b"HVGUARD-SECRET-MARKER-0123456789"


def load_engine():
    loader = importlib.machinery.SourceFileLoader("hvguard_scrub_engine", str(ENGINE))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = mod  # dataclasses look their module up there
    loader.exec_module(mod)
    return mod


eng = load_engine()


@pytest.fixture
def env(tmp_path, monkeypatch):
    pool = tmp_path / "pool"
    pool.mkdir()
    qdir = tmp_path / "quarantine"
    cfg_path = tmp_path / "config.json"
    cfg = {
        "state_dir": str(tmp_path / "state"),
        "libvirt_check": False,
        "ioprio_idle": False,
        "pools": [{"name": "p", "type": "dir", "path": str(pool), "quarantine": str(qdir)}],
    }
    cfg_path.write_text(json.dumps(cfg))
    monkeypatch.setenv("HVGUARD_SCRUB_CONFIG", str(cfg_path))
    return {"pool": pool, "qdir": qdir, "cfg_path": cfg_path, "cfg": eng.load_config(cfg_path)}


def write_sparse(path: Path, size: int, marks: list[int]) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)
        for off in marks:
            fh.seek(off)
            fh.write(MARK * 128)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ENGINE), *args], capture_output=True, text=True, check=False
    )


# --------------------------------------------------------------------------- config / input


def test_unknown_backend_is_rejected(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"pools": [{"name": "x", "type": "rbd"}]}))
    with pytest.raises(eng.ScrubError, match="unknown backend 'rbd'") as exc:
        eng.load_config(p)
    assert exc.value.code == eng.EXIT_BADINPUT


@pytest.mark.parametrize("rate", [0, -5, "fast", True])
def test_rate_must_be_positive(tmp_path, rate):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"rate_mib": rate, "pools": []}))
    with pytest.raises(eng.ScrubError, match="rate_mib must be a number > 0"):
        eng.load_config(p)


def test_cli_rejects_zero_rate_and_deletes_nothing(env):
    vol = env["pool"] / "a.raw"
    write_sparse(vol, 1 << 20, [0])
    res = run_cli("scrub", "--rate", "0", str(vol))
    assert res.returncode == 2
    assert "--rate must be a number > 0" in res.stderr
    assert MARK in vol.read_bytes()


def test_cli_refuses_path_outside_pools(env, tmp_path):
    outside = tmp_path / "outside.raw"
    write_sparse(outside, 1 << 20, [0])
    res = run_cli("scrub", str(outside))
    assert res.returncode == 2
    assert "outside the managed dir pools" in res.stderr
    assert MARK in outside.read_bytes()


def test_cli_missing_volume(env):
    res = run_cli("scrub", str(env["pool"] / "nope.raw"))
    assert res.returncode == 2
    assert "does not exist" in res.stderr


def test_cli_refuses_volume_open_by_a_process(env):
    vol = env["pool"] / "busy.raw"
    write_sparse(vol, 1 << 20, [4096])
    holder = subprocess.Popen(
        [sys.executable, "-c", f"f=open({str(vol)!r},'rb'); import time; time.sleep(60)"]
    )
    try:
        for _ in range(50):  # wait until the holder really has it open
            if eng.open_by(eng.identity(str(vol))):
                break
            subprocess.run(["sleep", "0.1"], check=True)
        res = run_cli("scrub", str(vol))
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 3
    assert "is open by python" in res.stderr
    assert MARK in vol.read_bytes()
    assert not any(env["qdir"].glob("*")) if env["qdir"].exists() else True


# --------------------------------------------------------------------------- zeroing core


def test_data_ranges_finds_allocated_extents(tmp_path):
    f = tmp_path / "s.raw"
    write_sparse(f, 64 << 20, [1 << 20, 40 << 20])
    fd = os.open(f, os.O_RDONLY)
    try:
        ranges = list(eng.data_ranges(fd, 64 << 20))
    finally:
        os.close(fd)
    assert len(ranges) == 2
    assert ranges[0][0] <= 1 << 20 < ranges[0][1]
    assert ranges[1][0] <= 40 << 20 < ranges[1][1]
    assert sum(b - a for a, b in ranges) < 1 << 20  # holes skipped


def test_scrub_sparse_file_zeroes_data_and_keeps_holes(tmp_path):
    f = tmp_path / "s.raw"
    write_sparse(f, 64 << 20, [1 << 20, 40 << 20])
    blocks = f.stat().st_blocks
    res = eng.scrub_target(str(f), verify=True)
    data = f.read_bytes()
    assert MARK not in data
    assert not any(data)
    assert f.stat().st_size == 64 << 20
    assert f.stat().st_blocks == blocks  # no hole was filled
    assert res.zeroed < 1 << 20


def test_scrub_unaligned_file_tail(tmp_path):
    f = tmp_path / "t.raw"
    f.write_bytes(MARK * 313)  # 10016 bytes: not a multiple of 4096
    eng.scrub_target(str(f), verify=True)
    assert f.read_bytes() == bytes(10016)


def test_scrub_start_offset_resumes_without_redoing(tmp_path):
    f = tmp_path / "r.raw"
    f.write_bytes(MARK * (1 << 16))  # 2 MiB
    eng.scrub_target(str(f), start=1 << 20)
    data = f.read_bytes()
    assert MARK in data[: 1 << 20]
    assert not any(data[1 << 20 :])


def test_checkpoints_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(eng, "CHECKPOINT_S", 0.0)
    f = tmp_path / "c.raw"
    f.write_bytes(MARK * (1 << 17))  # 4 MiB
    seen = []
    eng.scrub_target(str(f), rate_mib=64, checkpoint=seen.append)
    assert seen
    assert seen == sorted(seen)
    assert seen[-1] == 4 << 20


def test_verify_detects_non_zero(tmp_path):
    f = tmp_path / "v.raw"
    f.write_bytes(bytes(8192) + MARK)
    buf = eng.ZeroBuffer()
    fd = os.open(f, os.O_RDONLY)
    try:
        with pytest.raises(eng.ScrubError, match="non-zero data at offset 8192"):
            eng.verify_zero(fd, [(0, f.stat().st_size)], buf)
    finally:
        os.close(fd)
        buf.close()


def test_throttle_paces_to_the_rate(monkeypatch):
    clock = [100.0]
    slept = []
    monkeypatch.setattr(eng.time, "monotonic", lambda: clock[0])

    def fake_sleep(s):
        slept.append(s)
        clock[0] += s

    monkeypatch.setattr(eng.time, "sleep", fake_sleep)
    th = eng.Throttle(10 * eng.MIB)
    assert th.chunk(32 * eng.MIB) == 10 * eng.MIB // 8 // 4096 * 4096
    for _ in range(16):
        th.account(eng.MIB)  # instant I/O: all time is throttle sleep
    assert clock[0] - 100.0 == pytest.approx(1.6)
    unlimited = eng.Throttle(None)
    unlimited.account(1 << 40)
    assert unlimited.chunk(123) == 123
    assert len(slept) == 16


# --------------------------------------------------------------------------- queue / crash


def test_scrub_cli_quarantines_zeroes_and_removes(env):
    vol = env["pool"] / "vm1.qcow2"
    write_sparse(vol, 8 << 20, [0, 5 << 20])
    res = run_cli("scrub", "--verify", str(vol))
    assert res.returncode == 0, res.stderr
    assert not vol.exists()
    assert list(env["qdir"].iterdir()) == []
    hist = (env["cfg"].state_dir / "history.log").read_text().splitlines()
    assert json.loads(hist[-1])["original"] == str(vol)
    assert run_cli("queue").stdout.strip() == "queue empty"


def test_crash_before_move_is_completed_on_resume(env):
    cfg = env["cfg"]
    vol = env["pool"] / "half.raw"
    write_sparse(vol, 4 << 20, [0])
    qdir = eng.quarantine_dir(cfg, str(vol))
    job = {
        "id": "20990101T000000-deadbeef",
        "kind": "file",
        "original": str(vol),
        "quarantine": str(qdir / "20990101T000000-deadbeef-half.raw"),
        "state": "moving",
        "size": 4 << 20,
        "done": 0,
    }
    eng.save_job(cfg, job)  # what a crash between the journal write and rename leaves
    assert "moving" in run_cli("queue").stdout
    assert eng.run_queue(cfg) == 0
    assert vol.exists()  # a fresh "moving" job may belong to a command still moving it
    path = cfg.jobs_dir / f"{job['id']}.json"
    stale = json.loads(path.read_text())
    stale["updated"] -= 3600  # the crash was a while ago
    path.write_text(json.dumps(stale))
    assert eng.run_queue(cfg) == 0
    assert not vol.exists()
    assert not Path(job["quarantine"]).exists()
    assert eng.load_jobs(cfg) == []


def test_failed_job_stays_quarantined(env, monkeypatch):
    cfg = env["cfg"]
    vol = env["pool"] / "f.raw"
    write_sparse(vol, 1 << 20, [0])
    job = eng.enqueue_file(cfg, str(vol), None, False)

    def boom(*_a, **_k):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(eng, "scrub_target", boom)
    assert eng.run_queue(cfg) == 1
    assert Path(job["quarantine"]).exists()  # blocks still held, not returned for reuse
    (saved,) = eng.load_jobs(cfg)
    assert "I/O error" in saved["error"]


def test_shadow_keeps_deleted_pool_file_until_scrubbed(env):
    cfg = env["cfg"]
    vol = env["pool"] / "libvirt-made.raw"
    write_sparse(vol, 2 << 20, [0, 1 << 20])
    assert eng.shadow_sync(cfg) == []
    shadow = env["qdir"] / eng.shadow_name(vol.stat())
    assert shadow.stat().st_nlink == 2
    vol.unlink()  # what virsh vol-delete / undefine --remove-all-storage / rm do
    fd = os.open(shadow, os.O_RDONLY)  # keep the inode to look at it after the scrub
    try:
        assert MARK in os.pread(fd, 4096, 0)
        (job,) = eng.shadow_sync(cfg)
        assert job["quarantine"] == str(shadow)
        assert eng.run_queue(cfg) == 0
        assert not shadow.exists()
        assert not any(os.pread(fd, 2 << 20, 0))
    finally:
        os.close(fd)


def test_cli_scrub_drops_the_shadow(env):
    cfg = env["cfg"]
    vol = env["pool"] / "x.raw"
    write_sparse(vol, 1 << 20, [0])
    eng.shadow_sync(cfg)
    assert run_cli("scrub", str(vol)).returncode == 0
    assert list(env["qdir"].iterdir()) == []


# --------------------------------------------------------------------------- LVM helpers


def test_parse_thin_dump_ranges():
    xml = textwrap.dedent(
        """\
        <superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="100">
          <device dev_id="1" mapped_blocks="5" transaction="0" creation_time="0" snap_time="1">
            <range_mapping origin_begin="0" data_begin="10" length="3" time="0"/>
            <single_mapping origin_block="3" data_block="40" time="1"/>
            <single_mapping origin_block="9" data_block="41" time="1"/>
          </device>
        </superblock>
        """
    )
    blk = 128 * 512
    assert eng.parse_thin_dump(xml) == [(0, 4 * blk), (9 * blk, 10 * blk)]


# The lvremove wrapper (parsing, target set, prompts, pass-through) is tested in
# tests/unit/test_lvremove_wrapper.py.
