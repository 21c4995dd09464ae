# SPDX-License-Identifier: Apache-2.0
"""Unit tests of the scrub engine (roles/hvguard_scrub/files/hvguard-scrub) on plain files.

Root-only effects (loop devices, raw-disk scans, SIGKILL + resume) are in
tests/host/test_scrub_host.py; LVM paths are proven in molecule/scrub.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import load_scrub_engine

ENGINE = Path(__file__).resolve().parents[2] / "roles/hvguard_scrub/files/hvguard-scrub"
MARK = b"HVGUARD-SECRET-MARKER-0123456789"


eng = load_scrub_engine("hvguard_scrub_engine")


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
    assert not env["qdir"].exists() or list(env["qdir"].iterdir()) == []  # nothing moved
    assert eng.load_jobs(env["cfg"]) == []


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


def stale_moving_job(env, vol: Path) -> dict:
    """What a crash between the journal write and the rename leaves, an hour ago."""
    cfg = env["cfg"]
    st = vol.stat()
    qdir = eng.quarantine_dir(cfg, str(vol))
    job = {
        "id": "20990101T000000-deadbeef",
        "kind": "file",
        "original": str(vol),
        "quarantine": str(qdir / f"20990101T000000-deadbeef-{vol.name}"),
        "state": "moving",
        "size": st.st_size,
        "done": 0,
        "dev": st.st_dev,
        "ino": st.st_ino,
        "gen": file_gen(vol),
    }
    eng.save_job(cfg, job)
    return job


def file_gen(path: Path) -> int | None:
    """The inode generation (FS_IOC_GETVERSION), None where the filesystem has none."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return struct.unpack("l", fcntl.ioctl(fd, 0x80087601, bytes(8)))[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def age_job(cfg, job: dict, seconds: float = 3600) -> None:
    path = cfg.jobs_dir / f"{job['id']}.json"
    saved = json.loads(path.read_text())
    saved["updated"] -= seconds
    path.write_text(json.dumps(saved))


def test_crash_before_move_is_completed_on_resume(env):
    cfg = env["cfg"]
    vol = env["pool"] / "half.raw"
    write_sparse(vol, 4 << 20, [0])
    job = stale_moving_job(env, vol)
    assert "moving" in run_cli("queue").stdout
    assert eng.run_queue(cfg) == 0
    assert vol.exists()  # a fresh "moving" job may belong to a command still moving it
    age_job(cfg, job)
    assert eng.run_queue(cfg) == 0
    assert not vol.exists()
    assert not Path(job["quarantine"]).exists()
    assert eng.load_jobs(cfg) == []


def test_stale_moving_job_never_takes_a_new_file_of_that_name(env):
    """Issue 8 #3: the journal names a file; a new file (new inode) took the name since."""
    cfg = env["cfg"]
    vol = env["pool"] / "reused.raw"
    write_sparse(vol, 1 << 20, [0])
    job = stale_moving_job(env, vol)
    age_job(cfg, job)
    vol.unlink()
    write_sparse(vol, 1 << 20, [0, 4096])  # the new tenant's disk, same name
    holder = subprocess.Popen(
        [sys.executable, "-c", f"f=open({str(vol)!r},'rb'); import time; time.sleep(60)"]
    )
    try:
        assert eng.run_queue(cfg) == 0
    finally:
        holder.kill()
        holder.wait()
    assert MARK in vol.read_bytes()  # untouched, still at its name
    assert not Path(job["quarantine"]).exists()
    assert eng.load_jobs(cfg) == []  # dropped: its own volume is gone


def test_stale_moving_job_tells_a_reused_inode_number_apart(env):
    """Same (dev, inode) but another generation: the inode was freed and reused by a new
    file, which is not the job's. Needs a filesystem with generations (ext4, XFS)."""
    cfg = env["cfg"]
    vol = env["pool"] / "reused-inode.raw"
    write_sparse(vol, 1 << 20, [0])
    if file_gen(vol) is None:
        pytest.skip("the filesystem of tmp_path has no inode generations")
    job = stale_moving_job(env, vol)
    job["gen"] = file_gen(vol) + 1  # what the deleted file's generation was
    eng.save_job(cfg, job)
    age_job(cfg, job)
    assert eng.run_queue(cfg) == 0
    assert MARK in vol.read_bytes()
    assert eng.load_jobs(cfg) == []


def test_stale_moving_job_refuses_a_file_held_open(env):
    """Issue 8 #3: same inode, but a process has it open now: not moved, not zeroed, kept."""
    cfg = env["cfg"]
    vol = env["pool"] / "busy-now.raw"
    write_sparse(vol, 1 << 20, [0])
    job = stale_moving_job(env, vol)
    age_job(cfg, job)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"f=open({str(vol)!r},'rb'); import time; time.sleep(60)"]
    )
    try:
        for _ in range(50):
            if eng.open_by(eng.identity(str(vol))):
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert eng.run_queue(cfg) == 1
    finally:
        holder.kill()
        holder.wait()
    assert MARK in vol.read_bytes()
    (saved,) = eng.load_jobs(cfg)
    assert "open by python" in saved["error"]
    assert saved["attempts"] == 1 and saved["next_try"] > saved["updated"]
    assert eng.run_queue(cfg) == 0  # backing off: not retried at once
    assert vol.exists()


def test_move_failure_rolls_back_the_intent(env, monkeypatch):
    """Issue 8 #3: ENOSPC/EXDEV on the rename leaves no job for the worker to carry out."""
    cfg = env["cfg"]
    vol = env["pool"] / "nospace.raw"
    write_sparse(vol, 1 << 20, [0])
    real_rename = os.rename

    def failing_rename(src, dst, *a, **k):
        if "nospace" in str(src):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst, *a, **k)

    monkeypatch.setattr(eng.os, "rename", failing_rename)
    with pytest.raises(OSError, match="No space"):
        eng.enqueue_file(cfg, str(vol), None, False)
    monkeypatch.setattr(eng.os, "rename", real_rename)
    assert eng.load_jobs(cfg) == []
    assert eng.run_queue(cfg) == 0
    assert MARK in vol.read_bytes()


def test_resume_never_follows_a_symlink_swapped_in(env, tmp_path):
    """Issue 8 #4: the pool entry of a stale job is replaced by a symlink to a file outside
    every pool; resume must not move or zero what it points to."""
    cfg = env["cfg"]
    outside = tmp_path / "outside-secret.raw"
    write_sparse(outside, 1 << 20, [0])
    vol = env["pool"] / "swapped.raw"
    write_sparse(vol, 1 << 20, [0])
    job = stale_moving_job(env, vol)
    age_job(cfg, job)
    vol.unlink()
    vol.symlink_to(outside)
    eng.run_queue(cfg)
    assert MARK in outside.read_bytes()
    assert vol.is_symlink()


def test_queued_job_refuses_a_symlink_in_quarantine(env, tmp_path):
    """Issue 8 #4: whatever sits at the quarantine name, only the job's inode is zeroed."""
    cfg = env["cfg"]
    outside = tmp_path / "outside.raw"
    write_sparse(outside, 1 << 20, [0])
    vol = env["pool"] / "q.raw"
    write_sparse(vol, 1 << 20, [0])
    job = eng.enqueue_file(cfg, str(vol), None, False)
    q = Path(job["quarantine"])
    q.unlink()
    q.symlink_to(outside)
    assert eng.run_queue(cfg) == 1
    assert MARK in outside.read_bytes()
    (saved,) = eng.load_jobs(cfg)
    assert "symlink" in saved["error"] or "not the job's file" in saved["error"]


def test_shadow_link_race_never_links_an_outside_file(env, tmp_path, monkeypatch):
    """Issue 8 #4: the entry is swapped for a symlink between the scan and the link."""
    cfg = env["cfg"]
    outside = tmp_path / "outside.raw"
    write_sparse(outside, 1 << 20, [0])
    vol = env["pool"] / "racy.raw"
    write_sparse(vol, 1 << 20, [0])
    real_link = os.link

    def racing_link(src, dst, *a, **k):
        entry = env["pool"] / os.path.basename(str(src))
        entry.unlink()
        entry.symlink_to(outside)
        return real_link(src, dst, *a, **k)

    monkeypatch.setattr(eng.os, "link", racing_link)
    eng.shadow_sync(cfg)
    monkeypatch.setattr(eng.os, "link", real_link)
    assert outside.stat().st_nlink == 1  # no shadow of the outside file
    assert not any(
        p.stat(follow_symlinks=False).st_ino == outside.stat().st_ino for p in env["qdir"].iterdir()
    )
    (env["pool"] / "racy.raw").unlink()
    eng.shadow_sync(cfg)
    eng.run_queue(cfg)
    assert MARK in outside.read_bytes()


def test_hard_link_outside_the_pools_is_refused(env, tmp_path):
    """Issue 8 #5: ln golden/base.img pool/base.img; scrub pool/base.img -> refused."""
    golden = tmp_path / "golden"
    golden.mkdir()
    base = golden / "base.img"
    write_sparse(base, 1 << 20, [0])
    os.link(base, env["pool"] / "base.img")
    for shadowed in (False, True):  # with the daemon's shadow link too
        if shadowed:
            eng.shadow_sync(env["cfg"])
        res = run_cli("scrub", str(env["pool"] / "base.img"))
        assert res.returncode == 3, res.stderr
        assert "other hard link" in res.stderr
        assert MARK in base.read_bytes()
        assert (env["pool"] / "base.img").exists()
    assert eng.load_jobs(env["cfg"]) == []


def test_shadow_of_a_file_linked_elsewhere_is_not_zeroed(env, tmp_path):
    """Issue 8 #5, shadow path: a queued shadow that gained another name is skipped."""
    cfg = env["cfg"]
    vol = env["pool"] / "linked.raw"
    write_sparse(vol, 1 << 20, [0])
    eng.shadow_sync(cfg)
    shadow = env["qdir"] / eng.shadow_name(vol.stat())
    vol.unlink()
    assert len(eng.shadow_sync(cfg)) == 1
    keep = tmp_path / "kept-elsewhere.raw"
    os.link(shadow, keep)  # reachable again before the worker ran
    assert eng.run_queue(cfg) == 1
    assert MARK in keep.read_bytes()
    (saved,) = eng.load_jobs(cfg)
    assert "other hard link" in saved["error"]


def test_dangling_shadow_does_not_fail_sync(env):
    """Issue 8 #7: a dangling shadow-* entry must not make every sync/watch pass fail."""
    env["qdir"].mkdir(mode=0o700, exist_ok=True)
    (env["qdir"] / "shadow-1-2").symlink_to("/nonexistent")
    vol = env["pool"] / "ok.raw"
    write_sparse(vol, 1 << 20, [0])
    res = run_cli("sync")
    assert res.returncode == 0, res.stderr
    assert (env["qdir"] / eng.shadow_name(vol.stat())).exists()  # the others still shadowed
    assert run_cli("watch", "--once").returncode == 0


def test_save_failure_in_the_error_path_keeps_job_and_error(env, monkeypatch):
    """Issue 8 #7: save_job raising ENOSPC while recording a failure must not mask it."""
    cfg = env["cfg"]
    vol = env["pool"] / "enospc.raw"
    write_sparse(vol, 1 << 20, [0])
    job = eng.enqueue_file(cfg, str(vol), None, False)

    def boom(*_a, **_k):
        raise OSError(5, "I/O error")

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(eng, "scrub_target", boom)
    monkeypatch.setattr(eng, "write_json_atomic", full)
    assert eng.run_queue(cfg) == 1  # returns, does not raise
    monkeypatch.undo()
    (saved,) = eng.load_jobs(cfg)
    assert saved["id"] == job["id"]
    assert Path(job["quarantine"]).exists()


def test_removing_job_that_keeps_failing_backs_off(env, monkeypatch):
    """Issue 8 #7: a job failing in "removing" records attempts, backs off, keeps the data."""
    cfg = env["cfg"]
    vol = env["pool"] / "stuck.raw"
    write_sparse(vol, 1 << 20, [0])
    job = eng.enqueue_file(cfg, str(vol), None, False)
    real_unlink = os.unlink

    def eperm(path, *a, **k):
        if str(path).endswith("stuck.raw"):
            raise PermissionError(1, "Operation not permitted")
        return real_unlink(path, *a, **k)

    monkeypatch.setattr(eng.os, "unlink", eperm)
    assert eng.run_queue(cfg) == 1
    (saved,) = eng.load_jobs(cfg)
    assert saved["state"] == "removing" and saved["attempts"] == 1
    assert eng.run_queue(cfg) == 0  # not hammered
    for n in (2, 3):
        age_job(cfg, saved, 0)
        path = cfg.jobs_dir / f"{job['id']}.json"
        data = json.loads(path.read_text())
        data["next_try"] = 0
        path.write_text(json.dumps(data))
        assert eng.run_queue(cfg) == 1
        (saved,) = eng.load_jobs(cfg)
        assert saved["attempts"] == n
    assert saved["next_try"] - saved["updated"] >= 39  # 10, 20, 40 s ...
    assert Path(job["quarantine"]).exists()
    out = run_cli("queue").stdout
    assert "attempt 3" in out and "Operation not permitted" in out
    monkeypatch.setattr(eng.os, "unlink", real_unlink)


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


def spy_removal(monkeypatch) -> list[bytes]:
    """The bytes of every file the engine unlinks, read just before the unlink."""
    seen: list[bytes] = []
    real_unlink = os.unlink

    def unlink(path, *a, dir_fd=None, **k):
        if str(path).endswith(".json"):  # the job file, not a volume
            return real_unlink(path, *a, dir_fd=dir_fd, **k)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            seen.append(os.pread(fd, 1 << 30, 0))
        finally:
            os.close(fd)
        return real_unlink(path, *a, dir_fd=dir_fd, **k)

    monkeypatch.setattr(eng.os, "unlink", unlink)
    return seen


def test_shadow_keeps_deleted_pool_file_until_scrubbed(env, monkeypatch):
    cfg = env["cfg"]
    vol = env["pool"] / "libvirt-made.raw"
    write_sparse(vol, 2 << 20, [0, 1 << 20])
    assert eng.shadow_sync(cfg) == []
    shadow = env["qdir"] / eng.shadow_name(vol.stat())
    assert shadow.stat().st_nlink == 2
    vol.unlink()  # what virsh vol-delete / undefine --remove-all-storage / rm do
    assert MARK in shadow.read_bytes()
    (job,) = eng.shadow_sync(cfg)
    assert job["quarantine"] == str(shadow)
    seen = spy_removal(monkeypatch)
    assert eng.run_queue(cfg) == 0
    assert not shadow.exists()
    assert len(seen) == 1 and len(seen[0]) == 2 << 20 and not any(seen[0])


def test_shadow_held_open_is_not_queued_or_zeroed(env):
    cfg = env["cfg"]
    vol = env["pool"] / "running-vm.raw"
    write_sparse(vol, 1 << 20, [0])
    eng.shadow_sync(cfg)
    shadow = env["qdir"] / eng.shadow_name(vol.stat())
    holder = subprocess.Popen(
        [sys.executable, "-c", f"f=open({str(shadow)!r},'rb'); import time; time.sleep(60)"]
    )
    try:
        for _ in range(50):
            if eng.open_by(eng.identity(str(shadow))):
                break
            subprocess.run(["sleep", "0.1"], check=True)
        vol.unlink()  # deleted under a running qemu
        assert eng.shadow_sync(cfg) == []
    finally:
        holder.kill()
        holder.wait()
    assert MARK in shadow.read_bytes()


def test_lease_catches_an_open_the_process_scan_cannot_see(env):
    """An fd of the engine's own process (the scan skips itself, as it must skip any process
    it may not inspect): the kernel's write lease still refuses the zeroing."""
    cfg = env["cfg"]
    vol = env["pool"] / "own-fd.raw"
    write_sparse(vol, 1 << 20, [0])
    job = eng.enqueue_file(cfg, str(vol), None, False)
    fd = os.open(job["quarantine"], os.O_RDONLY)
    try:
        assert eng.run_queue(cfg) == 1
        assert MARK in os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)
    (saved,) = eng.load_jobs(cfg)
    assert "write lease refused" in saved["error"]


def test_scrubbing_job_resumes_from_its_checkpoint(env, monkeypatch):
    """Issue 14: a saved `scrubbing` job with done=N is resumed from N and finished."""
    cfg = env["cfg"]
    vol = env["pool"] / "resume.raw"
    vol.write_bytes(MARK * (1 << 17))  # 4 MiB, fully allocated
    job = eng.enqueue_file(cfg, str(vol), None, False)
    job.update(state="scrubbing", done=1 << 20)
    eng.save_job(cfg, job)  # what SIGKILL after a checkpoint at 1 MiB leaves
    seen = spy_removal(monkeypatch)
    assert eng.run_queue(cfg) == 0
    assert eng.load_jobs(cfg) == []
    (data,) = seen
    assert len(data) == 4 << 20
    assert data[: 1 << 20] == MARK * (1 << 15)  # before the checkpoint: done already
    assert not any(data[1 << 20 :])
    hist = (cfg.state_dir / "history.log").read_text().splitlines()
    assert json.loads(hist[-1])["id"] == job["id"]


def test_fully_allocated_40mib_file_is_zeroed_everywhere(tmp_path):
    """Issue 14: extents over 4 MiB; a write loop that stops after 4 MiB of each 32 MiB
    chunk must fail here, checked independently of the engine's own --verify."""
    f = tmp_path / "big.raw"
    with open(f, "wb") as fh:
        for _ in range(40):
            fh.write(MARK * ((1 << 20) // len(MARK)))
    assert f.stat().st_blocks * 512 >= 40 << 20
    try:
        res = eng.scrub_target(str(f), verify=True)
    finally:
        data = f.read_bytes()
        assert len(data) == 40 << 20
        bad = next((i for i in range(0, len(data), 1 << 20) if any(data[i : i + (1 << 20)])), None)
        assert bad is None, f"non-zero MiB at offset {bad}"
    assert res.zeroed == 40 << 20


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


FAKE_LVM = """\
#!{py}
import json, sys
state_path = {state!r}
st = json.load(open(state_path))
args = sys.argv[1:]
st["calls"].append(args)
def dump():
    json.dump(st, open(state_path, "w"))
if args[0] == "lvs":
    spec = args[-1].removeprefix("/dev/")
    rows = [lv for lv in st["lvs"] if spec in (lv["vg_name"], lv["vg_name"] + "/" + lv["lv_name"])]
    dump()
    if not rows:
        sys.exit("  Failed to find logical volume " + spec)
    print(json.dumps({{"report": [{{"lv": rows}}]}}))
elif args[0] == "lvrename":
    for lv in st["lvs"]:
        if lv["vg_name"] == args[1] and lv["lv_name"] == args[2]:
            lv["lv_name"] = args[3]
    dump()
else:
    dump()
"""


@pytest.fixture
def fake_lvm(tmp_path, monkeypatch):
    state = tmp_path / "lvm-state.json"
    lvs = [
        {"lv_name": "vm1", "vg_name": "vmvg", "lv_attr": "-wi-a-----", "pool_lv": "",
         "lv_size": "1048576", "thin_id": "", "lv_path": str(tmp_path / "dev-vm1"),
         "lv_uuid": "uuid-vm1", "lv_device_open": "", "lv_kernel_major": "253",
         "lv_kernel_minor": "1"},
        {"lv_name": "pool", "vg_name": "vmvg", "lv_attr": "twi-aotz--", "pool_lv": "",
         "lv_size": "1048576", "thin_id": "", "lv_path": ""},
        {"lv_name": "t1", "vg_name": "vmvg", "lv_attr": "Vwi-a-tz--", "pool_lv": "pool",
         "lv_size": "1048576", "thin_id": "1", "lv_path": str(tmp_path / "dev-t1"),
         "lv_uuid": "uuid-t1", "lv_device_open": "", "lv_kernel_major": "253",
         "lv_kernel_minor": "2"},
        {"lv_name": "root", "vg_name": "sysvg", "lv_attr": "-wi-ao----", "pool_lv": "",
         "lv_size": "1048576", "thin_id": "", "lv_path": "/dev/sysvg/root"},
    ]  # fmt: skip
    state.write_text(json.dumps({"lvs": lvs, "calls": []}))
    script = tmp_path / "lvm"
    script.write_text(FAKE_LVM.format(py=sys.executable, state=str(state)))
    script.chmod(0o755)
    (tmp_path / "dev-vm1").write_bytes(MARK)
    (tmp_path / "dev-t1").write_bytes(MARK)
    cfg = {
        "state_dir": str(tmp_path / "state"),
        "libvirt_check": False,
        "lvm_command": str(script),
        "pools": [{"name": "vmvg", "type": "logical", "vg": "vmvg"}],
    }
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(cfg))
    spawned = []
    monkeypatch.setattr(eng, "spawn_worker", spawned.append)
    return {
        "cfg": eng.load_config(cfg_path),
        "calls": lambda: json.loads(state.read_text())["calls"],
        "spawned": spawned,
        "cfg_path": str(cfg_path),
    }


# The lvremove wrapper itself (parsing, target set, prompts, pass-through) is tested in
# tests/unit/test_lvremove_wrapper.py.


# --------------------------------------------------------------------------- libvirt (fake virsh)

FAKE_VIRSH = """\
#!{py}
import json, sys
state_path = {state!r}
st = json.load(open(state_path))
args = sys.argv[1:]
while args and args[0] in ("-q", "-c"):
    args = args[2:] if args[0] == "-c" else args[1:]
st["calls"].append(args)
json.dump(st, open(state_path, "w"))
if st.get("fail"):
    sys.exit("error: failed to connect to the hypervisor")
doms = st["domains"]
def find(key):
    for d in doms:
        if key in (d["uuid"], d["name"]):
            return d
    sys.exit("error: failed to get domain " + repr(key))
cmd = args[0]
if cmd == "list":
    for d in doms:
        if "--all" in args or d["state"] == "running":
            print(d["name"] if "--name" in args else d["uuid"])
elif cmd == "domblklist":  # what the real one prints (-q --details): the top of each disk
    import xml.etree.ElementTree as ET
    for disk in ET.fromstring(find(args[1])["xml"]).iter("disk"):
        src = disk.find("source")
        val = "-" if src is None else (src.get("file") or src.get("dev") or src.get("volume"))
        print(disk.get("type"), disk.get("device"), "vda", val)
elif cmd == "dumpxml":
    d = find(args[-1])
    print(d.get("inactive_xml", d["xml"]) if "--inactive" in args else d["xml"])
elif cmd == "domstate":
    d = find(args[1])
    states = d.get("states")
    if states:  # a scripted sequence: the domain changes between two calls
        d["state"] = states.pop(0)
        json.dump(st, open(state_path, "w"))
    print(d["state"])
elif cmd == "domuuid":
    print(find(args[1])["uuid"])
elif cmd == "vol-path":
    key = args[args.index("--pool") + 1] + "/" + args[-1]
    if key not in st["vols"]:
        sys.exit("error: failed to get vol " + key)
    print(st["vols"][key])
elif cmd == "undefine":
    d = find(args[1])
    doms.remove(d)
    json.dump(st, open(state_path, "w"))
elif cmd == "pool-refresh":
    pass
else:
    sys.exit("fake virsh: unsupported " + cmd)
"""


def disk_xml(kind: str, source: str, extra: str = "") -> str:
    attr = {"file": "file", "block": "dev"}.get(kind, "")
    src = f"<source {attr}='{source}'/>" if attr else source
    return f"<disk type='{kind}' device='disk'>{src}<target dev='vda'/>{extra}</disk>"


def dom_xml(name: str, uuid: str, *disks: str, running: bool = False) -> str:
    ident = " id='7'" if running else ""
    return (
        f"<domain type='kvm'{ident}><name>{name}</name><uuid>{uuid}</uuid>"
        f"<devices>{''.join(disks)}</devices></domain>"
    )


U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"


@pytest.fixture
def virt(env, tmp_path, monkeypatch):
    """env with libvirt_check on and a scripted virsh first on PATH."""
    state = tmp_path / "virsh-state.json"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "virsh"
    script.write_text(FAKE_VIRSH.format(py=sys.executable, state=str(state)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    raw = json.loads(env["cfg_path"].read_text())
    raw["libvirt_check"] = True
    env["cfg_path"].write_text(json.dumps(raw))
    env["cfg"] = eng.load_config(env["cfg_path"])

    def setup(domains: list[dict], vols: dict | None = None, fail: bool = False) -> None:
        state.write_text(
            json.dumps({"domains": domains, "vols": vols or {}, "fail": fail, "calls": []})
        )

    env["virsh"] = setup
    env["calls"] = lambda: json.loads(state.read_text())["calls"]
    setup([])
    return env


def test_libvirt_unreachable_refuses_and_keeps_the_file(virt):
    """Issue 14 surviving mutant: domains_using failing open when virsh fails."""
    vol = virt["pool"] / "a.raw"
    write_sparse(vol, 1 << 20, [0])
    virt["virsh"]([], fail=True)
    res = run_cli("scrub", str(vol))
    assert res.returncode == 3, res.stderr
    assert "cannot ask libvirt" in res.stderr
    assert MARK in vol.read_bytes()
    assert eng.load_jobs(virt["cfg"]) == []


def test_libvirt_reachable_and_unused_scrubs(virt):
    """The control: with libvirt answering and no domain using it, the scrub happens."""
    vol = virt["pool"] / "free.raw"
    write_sparse(vol, 1 << 20, [0])
    other = virt["pool"] / "other.raw"
    write_sparse(other, 4096, [0])
    virt["virsh"]([{"uuid": U1, "name": "vm1", "state": "shut off",
                    "xml": dom_xml("vm1", U1, disk_xml("file", str(other)))}])  # fmt: skip
    res = run_cli("scrub", str(vol))
    assert res.returncode == 0, res.stderr
    assert not vol.exists()
    assert ["dumpxml", U1] in virt["calls"]()


@pytest.mark.parametrize("pool", ["p", "elsewhere"])
def test_volume_type_disk_is_refused(virt, pool):
    """type='volume': resolved locally for a managed pool, with vol-path for the others."""
    vol = virt["pool"] / "v.raw"
    write_sparse(vol, 1 << 20, [0])
    src = f"<source pool='{pool}' volume='v.raw'/>"
    virt["virsh"](
        [{"uuid": U1, "name": "vm1", "state": "shut off",
          "xml": dom_xml("vm1", U1, disk_xml("volume", src))}],
        vols={"elsewhere/v.raw": str(vol)},
    )  # fmt: skip
    res = run_cli("scrub", str(vol))
    assert res.returncode == 3, res.stderr
    assert "a disk of domain(s) vm1" in res.stderr
    assert MARK in vol.read_bytes()
    if pool == "elsewhere":
        assert ["vol-path", "--pool", "elsewhere", "v.raw"] in virt["calls"]()


def test_disk_only_in_a_backing_chain_is_refused(virt):
    base = virt["pool"] / "base.raw"
    write_sparse(base, 1 << 20, [0])
    overlay = virt["pool"] / "top.qcow2"
    write_sparse(overlay, 4096, [])
    chain = f"<backingStore type='file'><source file='{base}'/><backingStore/></backingStore>"
    virt["virsh"]([{"uuid": U1, "name": "vm1", "state": "shut off",
                    "xml": dom_xml("vm1", U1, disk_xml("file", str(overlay), chain))}])  # fmt: skip
    res = run_cli("scrub", str(base))
    assert res.returncode == 3, res.stderr
    assert MARK in base.read_bytes()


def test_qcow2_backing_file_of_an_inactive_domain_is_refused(virt):
    """libvirt keeps no backing chain in inactive XML: the qcow2 header names it."""
    base = virt["pool"] / "golden.raw"
    write_sparse(base, 1 << 20, [0])
    overlay = virt["pool"] / "vm.qcow2"
    name = b"golden.raw"  # relative to the overlay's directory, as qemu-img writes it
    header = b"QFI\xfb" + (3).to_bytes(4, "big") + (512).to_bytes(8, "big")
    header += len(name).to_bytes(4, "big")
    overlay.write_bytes(header.ljust(512, b"\0") + name.ljust(512, b"\0"))
    virt["virsh"]([{"uuid": U1, "name": "vm1", "state": "shut off",
                    "xml": dom_xml("vm1", U1, disk_xml("file", str(overlay)))}])  # fmt: skip
    res = run_cli("scrub", str(base))
    assert res.returncode == 3, res.stderr
    assert MARK in base.read_bytes()


def test_domain_name_with_spaces(virt):
    vol = virt["pool"] / "spaced.raw"
    write_sparse(vol, 1 << 20, [0])
    virt["virsh"]([{"uuid": U1, "name": "web 01 (prod)", "state": "shut off",
                    "xml": dom_xml("web 01 (prod)", U1, disk_xml("file", str(vol)))}])  # fmt: skip
    res = run_cli("scrub", str(vol))
    assert res.returncode == 3, res.stderr
    assert "web 01 (prod)" in res.stderr
    assert MARK in vol.read_bytes()


def test_disk_only_in_the_persistent_config_of_a_running_domain(virt):
    """attach-disk --config: the live XML does not have it, the inactive one does."""
    vol = virt["pool"] / "next-boot.raw"
    write_sparse(vol, 1 << 20, [0])
    virt["virsh"]([{"uuid": U1, "name": "vm1", "state": "running",
                    "xml": dom_xml("vm1", U1, running=True),
                    "inactive_xml": dom_xml("vm1", U1, disk_xml("file", str(vol)))}])  # fmt: skip
    res = run_cli("scrub", str(vol))
    assert res.returncode == 3, res.stderr
    assert MARK in vol.read_bytes()


def test_unparsable_domain_xml_refuses(virt):
    vol = virt["pool"] / "x.raw"
    write_sparse(vol, 1 << 20, [0])
    virt["virsh"]([{"uuid": U1, "name": "vm1", "state": "shut off", "xml": "<domain><oops"}])
    res = run_cli("scrub", str(vol))
    assert res.returncode == 3, res.stderr
    assert MARK in vol.read_bytes()


def test_resume_rechecks_libvirt_before_zeroing(virt):
    """A domain defined on the quarantined volume after it was queued: not zeroed."""
    cfg = virt["cfg"]
    vol = virt["pool"] / "late.raw"
    write_sparse(vol, 1 << 20, [0])
    job = eng.enqueue_file(cfg, str(vol), None, False)
    q = job["quarantine"]
    virt["virsh"]([{"uuid": U1, "name": "vm1", "state": "shut off",
                    "xml": dom_xml("vm1", U1, disk_xml("file", q))}])  # fmt: skip
    assert eng.run_queue(cfg) == 1
    assert MARK in Path(q).read_bytes()
    virt["virsh"]([], fail=True)
    (saved,) = eng.load_jobs(cfg)
    saved["next_try"] = 0
    eng.save_job(cfg, saved)
    assert eng.run_queue(cfg) == 1  # libvirt down: still not zeroed
    assert MARK in Path(q).read_bytes()


def test_delete_domain_refuses_a_running_domain(virt):
    vol = virt["pool"] / "run.raw"
    write_sparse(vol, 1 << 20, [0])
    xml = dom_xml("vm1", U1, disk_xml("file", str(vol)))
    virt["virsh"]([{"uuid": U1, "name": "vm1", "state": "running", "xml": xml}])
    res = run_cli("delete-domain", "vm1")
    assert res.returncode == 3, res.stderr
    assert not any(c[0] == "undefine" for c in virt["calls"]())
    assert MARK in vol.read_bytes()


def test_delete_domain_refuses_a_disk_shared_with_another_domain(virt):
    vol = virt["pool"] / "shared.raw"
    write_sparse(vol, 1 << 20, [0])
    virt["virsh"]([
        {"uuid": U1, "name": "vm1", "state": "shut off",
         "xml": dom_xml("vm1", U1, disk_xml("file", str(vol)))},
        {"uuid": U2, "name": "vm 2", "state": "shut off",
         "xml": dom_xml("vm 2", U2, disk_xml("file", str(vol)))},
    ])  # fmt: skip
    res = run_cli("delete-domain", "vm1")
    assert res.returncode == 3, res.stderr
    assert "vm 2" in res.stderr
    assert not any(c[0] == "undefine" for c in virt["calls"]())
    assert MARK in vol.read_bytes()


def test_delete_domain_checks_other_domains_even_with_libvirt_check_off(virt):
    vol = virt["pool"] / "shared2.raw"
    write_sparse(vol, 1 << 20, [0])
    raw = json.loads(virt["cfg_path"].read_text())
    raw["libvirt_check"] = False
    virt["cfg_path"].write_text(json.dumps(raw))
    virt["virsh"]([
        {"uuid": U1, "name": "vm1", "state": "shut off",
         "xml": dom_xml("vm1", U1, disk_xml("file", str(vol)))},
        {"uuid": U2, "name": "vm2", "state": "shut off",
         "xml": dom_xml("vm2", U2, disk_xml("file", str(vol)))},
    ])  # fmt: skip
    res = run_cli("delete-domain", "vm1")
    assert res.returncode == 3, res.stderr
    assert not any(c[0] == "undefine" for c in virt["calls"]())
    assert MARK in vol.read_bytes()


def test_delete_domain_refuses_when_started_during_the_checks(virt):
    vol = virt["pool"] / "race.raw"
    write_sparse(vol, 1 << 20, [0])
    virt["virsh"]([{"uuid": U1, "name": "vm1", "state": "shut off",
                    "states": ["shut off", "running"],
                    "xml": dom_xml("vm1", U1, disk_xml("file", str(vol)))}])  # fmt: skip
    res = run_cli("delete-domain", "vm1")
    assert res.returncode == 3, res.stderr
    assert "changed while it was checked" in res.stderr
    assert not any(c[0] == "undefine" for c in virt["calls"]())
    assert MARK in vol.read_bytes()


def test_delete_domain_undefines_by_uuid_and_scrubs(virt):
    vol = virt["pool"] / "gone.raw"
    write_sparse(vol, 1 << 20, [0])
    src = "<source pool='p' volume='gone.raw'/>"
    virt["virsh"]([{"uuid": U1, "name": "vm 1", "state": "shut off",
                    "xml": dom_xml("vm 1", U1, disk_xml("volume", src))}])  # fmt: skip
    res = run_cli("delete-domain", "vm 1")
    assert res.returncode == 0, res.stderr
    (undef,) = [c for c in virt["calls"]() if c[0] == "undefine"]
    assert undef[1] == U1
    assert not vol.exists()
    assert eng.load_jobs(virt["cfg"]) == []


# --------------------------------------------------------------------------- identity


def test_open_target_never_follows_a_symlink(tmp_path):
    outside = tmp_path / "outside.raw"
    write_sparse(outside, 1 << 20, [0])
    link = tmp_path / "link.raw"
    link.symlink_to(outside)
    with pytest.raises(eng.ScrubError, match="symlink"):
        eng.scrub_target(str(link))
    assert MARK in outside.read_bytes()


def test_queued_job_refuses_another_file_in_quarantine(env):
    """Only the job's (dev, inode) is zeroed, whatever regular file sits at its name."""
    cfg = env["cfg"]
    vol = env["pool"] / "mine.raw"
    write_sparse(vol, 1 << 20, [0])
    job = eng.enqueue_file(cfg, str(vol), None, False)
    q = Path(job["quarantine"])
    q.unlink()
    write_sparse(q, 1 << 20, [0, 8192])  # not the inode the job recorded
    assert eng.run_queue(cfg) == 1
    assert MARK in q.read_bytes()
    (saved,) = eng.load_jobs(cfg)
    assert "not the job's file" in saved["error"]


def test_lv_job_refuses_an_lv_with_another_uuid(fake_lvm):
    """A queued LV job zeroes only the LV whose UUID it recorded."""
    cfg = fake_lvm["cfg"]
    assert eng.cmd_lvremove(cfg, ["-f", "vmvg/vm1"], fake_lvm["cfg_path"]) == 0
    (job,) = eng.load_jobs(cfg)
    assert job["lv_uuid"] == "uuid-vm1"
    job["lv_uuid"] = "uuid-of-a-previous-lv"
    eng.save_job(cfg, job)
    assert eng.run_queue(cfg) == 1
    (saved,) = eng.load_jobs(cfg)
    assert "is not LV uuid-of-a-previous-lv" in saved["error"]
    calls = [c for c in fake_lvm["calls"]() if "--test" not in c]  # the wrapper's dry run
    assert not any(c[0] in ("lvremove", "lvchange") for c in calls)


def test_stale_moving_lv_job_leaves_a_new_lv_of_that_name_alone(fake_lvm):
    cfg = fake_lvm["cfg"]
    job = {
        "id": "20990101T000000-cafecafe",
        "kind": "lv",
        "original": "vmvg/vm1",
        "quarantine": "vmvg/hvgscrub-cafecafe-vm1",
        "state": "moving",
        "size": 1048576,
        "done": 0,
        "lv_uuid": "uuid-of-the-deleted-vm1",  # vm1 now is another LV (uuid-vm1)
    }
    eng.save_job(cfg, job)
    path = cfg.jobs_dir / f"{job['id']}.json"
    data = json.loads(path.read_text())
    data["updated"] -= 3600
    path.write_text(json.dumps(data))
    assert eng.run_queue(cfg) == 0
    assert eng.load_jobs(cfg) == []
    assert not any(c[0] in ("lvrename", "lvremove") for c in fake_lvm["calls"]())


def test_a_malformed_job_does_not_stop_the_queue(env):
    """Issue 8 #7 sibling: a job file without its keys is left alone, a job that raises an
    unexpected error fails alone; the other jobs are still done."""
    cfg = env["cfg"]
    cfg.jobs_dir.mkdir(parents=True, exist_ok=True)
    (cfg.jobs_dir / "00000000T000000-broken00.json").write_text('{"id": "x"}')
    bad_vol = env["pool"] / "bad.raw"
    write_sparse(bad_vol, 1 << 20, [0])
    bad = eng.enqueue_file(cfg, str(bad_vol), None, False)
    bad["done"] = "not a number"
    eng.save_job(cfg, bad)
    good_vol = env["pool"] / "good.raw"
    write_sparse(good_vol, 1 << 20, [0])
    good = eng.enqueue_file(cfg, str(good_vol), None, False)
    assert eng.run_queue(cfg) == 1
    assert not Path(good["quarantine"]).exists()
    assert MARK in Path(bad["quarantine"]).read_bytes()
    assert [j["id"] for j in eng.load_jobs(cfg)] == [bad["id"]]
