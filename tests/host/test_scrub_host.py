# SPDX-License-Identifier: Apache-2.0
"""Host tests of the scrub engine as root: ext4 on loop devices, raw-image scans, SIGKILL.

Each test writes a unique marker into a volume, deletes it by one path and scans the raw
backing image of the filesystem or device for the marker. The control test shows that
the scan finds a marker that a plain delete leaves behind, so the other tests can fail.
LVM is not available on the host (no device-mapper): molecule/scrub proves those paths.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "modules"))
from hvguard_loader import load_scrub_engine

ENGINE = Path(__file__).resolve().parents[2] / "roles/hvguard_scrub/files/hvguard-scrub"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("losetup") or not shutil.which("mkfs.ext4"),
    reason="needs root, losetup and mkfs.ext4",
)


eng = load_scrub_engine("hvguard_scrub_engine_host")


def marker() -> bytes:
    return f"HVG-MARK-{uuid.uuid4().hex}".encode()


def scan(path: Path, needle: bytes) -> list[int]:
    """Offsets of `needle` in a raw image, read in chunks with an overlap."""
    hits, pos, keep = [], 0, b""
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            data = keep + chunk
            base = pos - len(keep)
            i = data.find(needle)
            while i != -1:
                hits.append(base + i)
                i = data.find(needle, i + 1)
            keep = data[-(len(needle) - 1) :]
            pos += len(chunk)
    return sorted(set(hits))


def write_volume(path: Path, mark: bytes, size: int, spread: int = 8) -> None:
    """A volume with the marker at `spread` places, fsync'd so it is on the raw image."""
    with open(path, "wb") as fh:
        for i in range(spread):
            fh.seek(i * (size // spread))
            fh.write(mark * 64)
        fh.truncate(size)
        fh.flush()
        os.fsync(fh.fileno())


class Ext4Pool:
    """An ext4 filesystem on a loop device with a dir pool in it."""

    def __init__(self, base: Path, size_mib: int) -> None:
        self.image = base / "disk.img"
        self.mnt = base / "mnt"
        self.mnt.mkdir()
        with open(self.image, "wb") as fh:
            fh.truncate(size_mib << 20)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0", str(self.image)],
            check=True,
        )
        self.loop = subprocess.run(
            ["losetup", "-f", "--show", str(self.image)], check=True, capture_output=True, text=True
        ).stdout.strip()
        subprocess.run(["mount", "-o", "nodiscard", self.loop, str(self.mnt)], check=True)
        self.mounted = True
        self.pool = self.mnt / "images"
        self.pool.mkdir()
        self.state = base / "state"
        self.config = base / "config.json"
        self.config.write_text(
            json.dumps(
                {
                    "state_dir": str(self.state),
                    "libvirt_check": False,
                    "ioprio_idle": True,
                    "pools": [{"name": "images", "type": "dir", "path": str(self.pool)}],
                }
            )
        )
        self.cfg = eng.load_config(self.config)

    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ENGINE), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            check=False,
            **kw,
        )

    def umount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.mnt)], check=True)
            self.mounted = False

    def close(self) -> None:
        self.umount()
        subprocess.run(["losetup", "-d", self.loop], check=False)


@pytest.fixture
def ext4(tmp_path):
    fs = Ext4Pool(tmp_path, 256)
    yield fs
    fs.close()


@pytest.mark.control("HVG-STO-001")
def test_control_plain_delete_leaves_marker_on_raw_disk(ext4):
    mark = marker()
    write_volume(ext4.pool / "vm.raw", mark, 16 << 20)
    (ext4.pool / "vm.raw").unlink()  # what virsh vol-delete does on a dir pool
    ext4.umount()
    assert scan(ext4.image, mark), "the scan must see what a plain delete leaves behind"


@pytest.mark.control("HVG-STO-001", effect=True)
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_cli_scrub_leaves_no_marker_on_raw_disk(ext4, tmp_path, fmt):
    mark = marker()
    vol = ext4.pool / f"vm.{fmt}"
    if fmt == "qcow2":
        src = tmp_path / "src.raw"
        write_volume(src, mark, 16 << 20)
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(src), str(vol)], check=True)
        src.unlink()
        with open(vol, "rb+") as fh:
            os.fsync(fh.fileno())
    else:
        write_volume(vol, mark, 16 << 20)
    res = ext4.cli("scrub", "--verify", str(vol))
    assert res.returncode == 0, res.stderr
    assert not vol.exists()
    # allocate a new volume over the freed space: it must not read the old bytes
    new = ext4.pool / "new.raw"
    subprocess.run(["fallocate", "-l", "200M", str(new)], check=True)
    assert mark not in new.read_bytes()
    ext4.umount()
    assert scan(ext4.image, mark) == []


@pytest.mark.control("HVG-STO-001", effect=True)
def test_shadow_covers_delete_behind_our_back(ext4):
    mark = marker()
    vol = ext4.pool / "libvirt.raw"
    write_volume(vol, mark, 16 << 20)
    assert ext4.cli("sync", "--no-run").returncode == 0  # the daemon links it on creation
    vol.unlink()  # virsh vol-delete / undefine --remove-all-storage / rm
    res = ext4.cli("sync")
    assert res.returncode == 0, res.stderr
    assert "queued" in res.stderr
    assert list((ext4.mnt / ".hvguard-scrub").iterdir()) == []
    ext4.umount()
    assert scan(ext4.image, mark) == []


@pytest.mark.control("HVG-STO-001", effect=True)
@pytest.mark.parametrize("offload", [True, False])
def test_block_device_zeroed(tmp_path, offload):
    mark = marker()
    backing = tmp_path / "lv.img"
    write_volume(backing, mark, 64 << 20)
    loop = subprocess.run(
        ["losetup", "-f", "--show", "--direct-io=on", str(backing)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        res = eng.scrub_target(loop, offload=offload, verify=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    assert res.method == ("zeroout" if offload else "write")
    assert res.zeroed == 64 << 20
    assert scan(backing, mark) == []


@pytest.mark.control("HVG-STO-001", effect=True)
def test_sigkill_mid_scrub_then_resume(tmp_path):
    fs = Ext4Pool(tmp_path, 1024)
    try:
        mark = marker()
        vol = fs.pool / "big.raw"
        write_volume(vol, mark, 512 << 20, spread=64)
        with open(vol, "r+b") as fh:  # fully allocated, like a used VM disk
            fh.seek(0)
            for _ in range(512):
                fh.write(mark * ((1 << 20) // len(mark)) + bytes((1 << 20) % len(mark)))
            os.fsync(fh.fileno())
        proc = subprocess.Popen(
            [sys.executable, str(ENGINE), "--config", str(fs.config), "scrub", "--rate", "40",
             str(vol)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        job = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs = eng.load_jobs(fs.cfg)
            if jobs and jobs[0].get("done", 0) > 0:
                job = jobs[0]
                break
            time.sleep(0.2)
        assert job is not None, "no checkpoint within 30 s"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (job,) = eng.load_jobs(fs.cfg)
        assert job["state"] == "scrubbing"
        assert 0 < job["done"] < 512 << 20
        quarantined = Path(job["quarantine"])
        held = quarantined.stat().st_blocks
        assert held * 512 >= 512 << 20  # still holds every block: nothing returned for reuse
        # fill all free space with a new volume: it cannot get the quarantined blocks
        filler = fs.pool / "filler.raw"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4M", "status=none"], check=False)
        assert quarantined.stat().st_blocks == held
        with open(quarantined, "rb") as fh:
            fh.seek(500 << 20)
            assert mark in fh.read(1 << 20), "the unscrubbed tail is still the old data"
        assert "scrubbing" in fs.cli("queue").stdout
        filler.unlink()
        res = fs.cli("resume")
        assert res.returncode == 0, res.stderr
        assert not quarantined.exists()
        assert eng.load_jobs(fs.cfg) == []
        fs.umount()
        assert scan(fs.image, mark) == []
    finally:
        fs.close()


# ------------------------------------------------------------------ kernel users (issue 8 #1)


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def make_fs_image(path: Path, mib: int, mark: bytes, mnt: Path) -> str:
    """A filesystem image with a marked file in it, mounted at `mnt` through a loop device."""
    with open(path, "wb") as fh:
        fh.truncate(mib << 20)
    run("mkfs.ext4", "-q", "-F", str(path))
    loop = run("losetup", "-f", "--show", str(path))
    mnt.mkdir()
    run("mount", loop, str(mnt))
    (mnt / "tenant-data").write_bytes(mark * 1024)
    os.sync()
    return loop


def test_mounted_loop_over_a_pool_file_is_refused(ext4, tmp_path):
    """The issue's repro: mkfs + mount a loop device over pool/disk.img, scrub it."""
    mark = marker()
    img = ext4.pool / "disk.img"
    mnt = tmp_path / "tenant"
    loop = make_fs_image(img, 32, mark, mnt)
    try:
        res = ext4.cli("scrub", str(img))
        assert res.returncode == eng.EXIT_INUSE, res.stderr
        assert f"the backing file of {loop}" in res.stderr
        assert img.exists()
        assert (mnt / "tenant-data").read_bytes() == mark * 1024
        subprocess.run(["umount", str(mnt)], check=True)
        # a loop device alone (not mounted) still holds the file: refused as well
        res = ext4.cli("scrub", str(img))
        assert res.returncode == eng.EXIT_INUSE, res.stderr
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", loop], check=False)
    assert scan(img, mark), "the tenant's data is still in the image"
    assert eng.load_jobs(ext4.cfg) == []


def test_loop_backing_file_is_found_after_a_rename(ext4, tmp_path):
    """backing_file goes stale on rename: the loop device is matched by dev/inode."""
    mark = marker()
    img = ext4.pool / "before.img"
    mnt = tmp_path / "tenant"
    loop = make_fs_image(img, 32, mark, mnt)
    try:
        renamed = ext4.pool / "after.img"
        img.rename(renamed)
        st = os.stat(renamed)
        assert any("backing file" in r for r in eng.loop_users(st, set()))
        assert ext4.cli("scrub", str(renamed)).returncode == eng.EXIT_INUSE
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)


def test_mounted_loop_device_is_refused_by_o_excl(tmp_path):
    """A block device with a mounted filesystem: the exclusive open gets EBUSY."""
    mark = marker()
    img = tmp_path / "blk.img"
    mnt = tmp_path / "mnt"
    loop = make_fs_image(img, 32, mark, mnt)
    try:
        with pytest.raises(eng.InUseError, match="in use by the kernel"):
            eng.scrub_target(loop, verify=True)
        st = os.stat(loop)
        assert any(r.startswith("mounted at") for r in eng.mount_users(st, eng.blk_devs(st)))
        assert (mnt / "tenant-data").read_bytes() == mark * 1024
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)
    assert scan(img, mark)


def test_active_swap_on_a_block_device_is_refused(tmp_path):
    img = tmp_path / "swap.img"
    with open(img, "wb") as fh:
        fh.truncate(32 << 20)
    loop = run("losetup", "-f", "--show", str(img))
    swapped = False
    try:
        run("mkswap", loop)
        run("swapon", loop)
        swapped = True
        with pytest.raises(eng.InUseError):
            eng.scrub_target(loop)
        st = os.stat(loop)
        assert eng.swap_users(st, eng.blk_devs(st))
        assert b"SWAPSPACE2" in img.read_bytes()[:8192]
    finally:
        if swapped:
            subprocess.run(["swapoff", loop], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)


def test_active_swap_file_in_a_pool_is_refused(ext4):
    swap = ext4.pool / "swap.img"
    subprocess.run(["dd", "if=/dev/zero", f"of={swap}", "bs=1M", "count=32", "status=none"],
                   check=True)  # fmt: skip
    swap.chmod(0o600)
    run("mkswap", str(swap))
    run("swapon", str(swap))
    try:
        res = ext4.cli("scrub", str(swap))
        assert res.returncode == eng.EXIT_INUSE, res.stderr
        assert "swap" in res.stderr
        assert swap.exists()
    finally:
        subprocess.run(["swapoff", str(swap)], check=False)
    assert b"SWAPSPACE2" in swap.read_bytes()[:8192]


def test_bind_mounted_pool_file_is_refused(ext4, tmp_path):
    mark = marker()
    vol = ext4.pool / "bound.raw"
    write_volume(vol, mark, 1 << 20)
    target = tmp_path / "bound-here"
    target.write_bytes(b"")
    run("mount", "--bind", str(vol), str(target))
    try:
        res = ext4.cli("scrub", str(vol))
        assert res.returncode == eng.EXIT_INUSE, res.stderr
        assert "bind-mounted at" in res.stderr
        assert scan(vol, mark)
    finally:
        subprocess.run(["umount", str(target)], check=False)


# ------------------------------------------------------------ the LV job flow on a loop device

FAKE_LVM = """\
#!{py}
import json, sys
path = {state!r}
st = json.load(open(path))
args = sys.argv[1:]
st["calls"].append(args)
json.dump(st, open(path, "w"))
if args[0] == "lvs":
    spec = args[-1].removeprefix("/dev/")
    rows = [lv for lv in st["lvs"] if spec in (lv["vg_name"], lv["vg_name"] + "/" + lv["lv_name"])]
    if not rows:
        sys.exit("  Failed to find logical volume " + spec)
    print(json.dumps({{"report": [{{"lv": rows}}]}}))
elif args[0] == "lvrename":
    for lv in st["lvs"]:
        if lv["vg_name"] == args[1] and lv["lv_name"] == args[2]:
            lv["lv_name"] = args[3]
elif args[0] == "lvremove":
    vg, name = args[-1].split("/")
    st["lvs"] = [lv for lv in st["lvs"] if (lv["vg_name"], lv["lv_name"]) != (vg, name)]
json.dump(st, open(path, "w"))
"""


def inspectable(pid_dir: Path) -> bool:
    try:
        os.readlink(pid_dir / "ns/mnt")
    except PermissionError:
        return False
    except OSError:
        pass
    return True


@pytest.fixture
def loop_lv(tmp_path, monkeypatch):
    """A managed "LV" that is a loop device, behind a scripted lvm (no device-mapper here)."""
    backing = tmp_path / "lv.img"
    mark = marker()
    write_volume(backing, mark, 32 << 20)
    loop = run("losetup", "-f", "--show", str(backing))
    try:
        yield from loop_lv_setup(tmp_path, monkeypatch, backing, mark, loop)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def loop_lv_setup(tmp_path, monkeypatch, backing, mark, loop):
    rdev = os.stat(loop).st_rdev
    state = tmp_path / "lvm.json"
    row = {"lv_name": "vm1", "vg_name": "vmvg", "lv_attr": "-wi-a-----", "pool_lv": "",
           "lv_size": str(32 << 20), "thin_id": "", "lv_path": loop, "lv_dm_path": loop,
           "lv_uuid": "UUID-vm1", "lv_device_open": "", "lv_kernel_major": str(os.major(rdev)),
           "lv_kernel_minor": str(os.minor(rdev))}  # fmt: skip
    state.write_text(json.dumps({"lvs": [row], "calls": []}))
    script = tmp_path / "lvm"
    script.write_text(FAKE_LVM.format(py=sys.executable, state=str(state)))
    script.chmod(0o755)
    cfg = eng.Config(
        state_dir=tmp_path / "state",
        pools=[eng.Pool(name="vmvg", type="logical", vg="vmvg")],
        lvm_command=str(script),
        libvirt_check=False,
        ioprio_idle=False,
    )
    # this sandbox's PID 1 has capabilities we lack, so /proc/1/fd is unreadable; a real
    # hypervisor's root can inspect every process (loop devices have no open count to ask)
    real = eng.proc_dirs
    monkeypatch.setattr(eng, "proc_dirs", lambda: [p for p in real() if inspectable(p)])
    yield {"cfg": cfg, "loop": loop, "backing": backing, "mark": mark,
           "calls": lambda: json.loads(state.read_text())["calls"]}  # fmt: skip


def test_lv_job_flow_renames_zeroes_and_removes(loop_lv):
    cfg = loop_lv["cfg"]
    args = eng.build_parser().parse_args(["scrub", "--verify", "vmvg/vm1"])
    assert eng.cmd_scrub(cfg, args) == 0
    calls = loop_lv["calls"]()
    (rename,) = [c for c in calls if c[0] == "lvrename"]
    assert rename[1:3] == ["vmvg", "vm1"] and rename[3].startswith("hvgscrub-")
    assert ["lvremove", "-f", f"vmvg/{rename[3]}"] in calls
    assert eng.load_jobs(cfg) == []
    assert scan(loop_lv["backing"], loop_lv["mark"]) == []


def test_lv_job_refuses_a_mounted_lv_at_zero_time(loop_lv, tmp_path):
    """Queued while idle, mounted before the worker ran: the exclusive open refuses."""
    cfg = loop_lv["cfg"]
    lv = eng.lvs(cfg, "vmvg/vm1")[0]
    job = eng.enqueue_lv(cfg, lv, None, False)
    run("mkfs.ext4", "-q", "-F", loop_lv["loop"])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run("mount", loop_lv["loop"], str(mnt))
    (mnt / "data").write_bytes(loop_lv["mark"] * 64)
    try:
        assert eng.run_queue(cfg) == 1
        assert (mnt / "data").read_bytes() == loop_lv["mark"] * 64
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    (saved,) = eng.load_jobs(cfg)
    assert saved["id"] == job["id"] and "refusing" in saved["error"]
    assert not any(c[0] == "lvremove" for c in loop_lv["calls"]())


def test_lv_scrub_refuses_a_mounted_lv_before_moving_it(loop_lv, tmp_path):
    cfg = loop_lv["cfg"]
    run("mkfs.ext4", "-q", "-F", loop_lv["loop"])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run("mount", loop_lv["loop"], str(mnt))
    try:
        args = eng.build_parser().parse_args(["scrub", "vmvg/vm1"])
        with pytest.raises(eng.InUseError, match="mounted at"):
            eng.cmd_scrub(cfg, args)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert not any(c[0] == "lvrename" for c in loop_lv["calls"]())
    assert eng.load_jobs(cfg) == []
