# SPDX-License-Identifier: Apache-2.0
"""Build the Debian 12 hypervisor image: debootstrap -> ext4 (mke2fs -d) -> MBR disk with GRUB.

The VM boots through GRUB reading the guest's own /etc/default/grub(.d), so a role that adds a
kernel argument with a GRUB drop-in + update-grub sees it in /proc/cmdline after a reboot.
"""

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from lab import paths
from lab.errors import LabError
from lab.host import BUILD_COMMANDS, REQUIRED_COMMANDS, log, require, require_root, run
from lab.mbr import CORE_SECTOR, FIRST_SECTOR, SECTOR, core_fits, mbr, with_boot_code
from lab.recipe import GUEST_FILES, Recipe, default_recipe, host_mirror

GIB = 1024**3

# grub-pc is installed to the disk later (grub-install on the loop device), not by its postinst.
DEBCONF = (
    "grub-pc grub-pc/install_devices_empty boolean true\n"
    "grub-pc grub-pc/install_devices multiselect\n"
)

# update-grub in the build chroot: GRUB's 10_linux skips a root on /dev/loopN (live media
# logic), so for this one run grub-probe reports the loop device as /dev/vda1, which is
# what the root filesystem is in every lab VM. The real grub-probe is always put back.
GRUB_PROBE_SHIM = """\
real=/usr/sbin/grub-probe
mv "$real" "$real.hvguard-real"
trap 'mv -f "$real.hvguard-real" "$real"' EXIT
cat > "$real" <<SHIM
#!/bin/sh
out=\\$(/usr/sbin/grub-probe.hvguard-real "\\$@") || exit \\$?
printf '%s\\n' "\\$out" | sed 's#^$LOOPDEV\\$#/dev/vda1#'
SHIM
chmod 0755 "$real"
update-grub
"""

# Runs inside the rootfs (chroot) after the guest files are copied in.
CONFIGURE_SCRIPT = """\
set -eu
systemctl enable systemd-networkd.service hvguard-lab-init.service ssh.service
# wait-online never finishes with a static-only NIC; apt timers would race the roles' dpkg.
systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -f /etc/resolv.conf
echo "nameserver 10.0.2.3" > /etc/resolv.conf
echo lab > /etc/hostname
printf 'UUID=%s / ext4 errors=remount-ro,discard 0 1\\n' "$ROOT_UUID" > /etc/fstab
apt-get clean
rm -rf /var/lib/apt/lists/*_Packages /var/log/*.log /tmp/* /var/tmp/*
"""


def image_path(cache: Path, recipe: Recipe) -> Path:
    return paths.images_dir(cache) / f"hv-{recipe.digest()}.qcow2"


def ensure_image(cache: Path, recipe: Recipe | None = None) -> Path:
    """The cached image for the recipe, built first when it is not there yet."""
    recipe = recipe or default_recipe()
    target = image_path(cache, recipe)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two scenarios starting at once must not both build (or use a half-built image).
    with _locked(target.parent / ".build.lock"):
        if target.exists():
            return target
        require(REQUIRED_COMMANDS | BUILD_COMMANDS)
        require_root("building the lab image")
        t0 = time.monotonic()
        log(f"building image {target.name} (cache miss; a few minutes)")
        build(cache, recipe, target)
        log(f"image built in {time.monotonic() - t0:.0f}s: {target}")
    return target


@contextlib.contextmanager
def _locked(lockfile: Path) -> Iterator[None]:
    with lockfile.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(cache: Path, recipe: Recipe, target: Path) -> None:
    """Base rootfs (cached by its own hash) -> raw disk with guest files and GRUB -> qcow2."""
    logfile = target.with_suffix(".build.log")
    logfile.write_text("")
    rootfs = ensure_rootfs(cache, recipe, logfile)
    work = target.with_suffix(".build")
    _cleanup_stale(work)
    work.mkdir(parents=True)
    raw = work / "disk.raw"
    _assemble(rootfs, raw, recipe.disk_size_gib * GIB, str(uuid.uuid4()), logfile)
    tmp = target.with_suffix(".tmp")
    t0 = time.monotonic()
    run(["qemu-img", "convert", "-O", "qcow2", raw, tmp], logfile)
    log(f"  qcow2 convert {time.monotonic() - t0:.0f}s")
    tmp.rename(target)
    _cleanup_stale(work)


def ensure_rootfs(cache: Path, recipe: Recipe, logfile: Path) -> Path:
    """The base system with every package installed, reused by image builds that only
    change the guest files or the disk/boot steps."""
    base = paths.images_dir(cache) / f"rootfs-{recipe.rootfs_digest()}"
    rootfs, done = base / "rootfs", base / "done"
    if done.exists():
        log(f"  reusing base rootfs {base.name}")
        return rootfs
    _cleanup_stale(base)
    base.mkdir(parents=True)
    _debootstrap(cache, recipe, rootfs, logfile)
    _install_packages(cache, recipe, rootfs, logfile)
    done.write_text("")
    return rootfs


def _debootstrap(cache: Path, recipe: Recipe, rootfs: Path, logfile: Path) -> None:
    """A minbase system; the packages come next from apt (ordering and configure are apt's)."""
    mirror = os.environ.get("HVGUARD_LAB_MIRROR") or host_mirror(recipe.suite)
    debs = paths.debs_dir(cache)
    debs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    log(f"  debootstrap --variant={recipe.variant} {recipe.suite}")
    try:
        run(
            ["debootstrap", f"--variant={recipe.variant}", f"--cache-dir={debs}",
             recipe.suite, rootfs, mirror],
            logfile,
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )  # fmt: skip
    except LabError:
        _append_log(rootfs / "debootstrap/debootstrap.log", logfile)
        raise
    log(f"  debootstrap {time.monotonic() - t0:.0f}s")


def _append_log(src: Path, logfile: Path) -> None:
    with contextlib.suppress(OSError), logfile.open("a") as fh:
        fh.write(f"--- {src}\n{src.read_text(errors='replace')}")


def _install_packages(cache: Path, recipe: Recipe, rootfs: Path, logfile: Path) -> None:
    """apt-get install the recipe's packages in the chroot, with the shared .deb cache."""
    t0 = time.monotonic()
    log(f"  apt-get install {len(recipe.packages)} packages (no recommends)")
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# no daemon starts inside the build chroot\nexit 101\n")
    policy.chmod(0o755)
    env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    try:
        with _bind_mounts(rootfs, logfile, {"var/cache/apt/archives": paths.debs_dir(cache)}):
            run(["chroot", rootfs, "debconf-set-selections"], logfile, input_text=DEBCONF)
            run(["chroot", rootfs, "apt-get", "-q", "update"], logfile, env=env)
            run(
                ["chroot", rootfs, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                 "-o", "Dpkg::Options::=--force-confold", *sorted(set(recipe.packages))],
                logfile,
                env=env,
            )  # fmt: skip
    finally:
        policy.unlink(missing_ok=True)
    log(f"  apt-get install {time.monotonic() - t0:.0f}s")


@contextlib.contextmanager
def _bind_mounts(
    root: Path, logfile: Path, extra: dict[str, Path], skip_dev: bool = False
) -> Iterator[Path]:
    """/dev, /proc, /sys (and extra host dirs) bind-mounted into a chroot, always undone."""
    mounted: list[Path] = []
    try:
        for sub in ("proc", "sys") if skip_dev else ("dev", "dev/pts", "proc", "sys"):
            run(["mount", "--bind", f"/{sub}", root / sub], logfile)
            mounted.append(root / sub)
        for sub, src in extra.items():
            (root / sub).mkdir(parents=True, exist_ok=True)
            run(["mount", "--bind", src, root / sub], logfile)
            mounted.append(root / sub)
        yield root
    finally:
        for point in reversed(mounted):
            run(["umount", point], logfile)


def _configure(root: Path, root_uuid: str, logfile: Path) -> None:
    """Lab specifics on top of the base rootfs: guest files, units, fstab, no host keys."""
    shutil.copytree(GUEST_FILES, root, dirs_exist_ok=True, symlinks=True)
    run(["chroot", root, "/bin/sh", "-c", CONFIGURE_SCRIPT], logfile, env={"ROOT_UUID": root_uuid})


def _assemble(rootfs: Path, raw: Path, size: int, root_uuid: str, logfile: Path) -> None:
    """MBR disk: ext4 root from the rootfs at 1 MiB, GRUB's boot.img + core.img before it."""
    t0 = time.monotonic()
    raw.unlink(missing_ok=True)
    with raw.open("wb") as fh:
        fh.truncate(size)
        fh.write(mbr(size))
    offset = FIRST_SECTOR * SECTOR
    with _loop(raw, offset, size - offset, logfile) as part:
        run(
            [
                "mke2fs", "-q", "-F", "-t", "ext4", "-L", "hvguard-root", "-U", root_uuid,
                "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", rootfs, part,
            ],
            logfile,
        )  # fmt: skip
        log(f"  mke2fs -d {time.monotonic() - t0:.0f}s")
        with _chroot_mounts(part, raw.parent / "mnt", logfile, private_dev=True) as mnt:
            _udev_like_links(mnt, part, root_uuid)
            _configure(mnt, root_uuid, logfile)
            boot_img, core_img = _grub_images(mnt, part, root_uuid, logfile)
    if not core_fits(len(core_img)):
        raise LabError(f"GRUB core.img is {len(core_img)} bytes: too big for the 1 MiB gap")
    with raw.open("r+b") as fh:
        fh.seek(CORE_SECTOR * SECTOR)
        fh.write(core_img)
        fh.seek(0)
        fh.write(with_boot_code(mbr(size), boot_img))
    log(f"  disk + GRUB {time.monotonic() - t0:.0f}s")


def _grub_images(mnt: Path, part: str, root_uuid: str, logfile: Path) -> tuple[bytes, bytes]:
    """Inside the mounted root: GRUB modules + grub.cfg in /boot/grub, and a core.img.

    What grub-install would do, without probing a partitioned disk: core.img finds the root
    filesystem by UUID and loads the guest's own /boot/grub/grub.cfg, which `update-grub`
    in the VM regenerates (so GRUB drop-ins reach the kernel command line after a reboot).
    """
    early = mnt / "tmp/hvguard-early.cfg"
    # serial first, so even a failing search shows up in the lab's console log
    early.write_text(
        "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n"
        f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
        "set prefix=($root)/boot/grub\n"
    )
    script = (
        "set -eu\n"
        "mkdir -p /boot/grub/i386-pc\n"
        "cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst /boot/grub/i386-pc/\n"
        "grub-editenv /boot/grub/grubenv create\n"
        "grub-mkimage -O i386-pc -o /tmp/hvguard-core.img -c /tmp/hvguard-early.cfg"
        " -p /boot/grub biosdisk part_msdos ext2 search search_fs_uuid serial terminal\n"
        + GRUB_PROBE_SHIM
    )
    run(["chroot", mnt, "/bin/sh", "-c", script], logfile, env={"LOOPDEV": part})
    grub_cfg = (mnt / "boot/grub/grub.cfg").read_text()
    if "root=/dev/vda1 " not in grub_cfg and f"root=UUID={root_uuid}" not in grub_cfg:
        raise LabError(f"grub.cfg has no kernel entry for the root filesystem; see {logfile}")
    core = (mnt / "tmp/hvguard-core.img").read_bytes()
    boot = (mnt / "usr/lib/grub/i386-pc/boot.img").read_bytes()
    for leftover in ("tmp/hvguard-core.img", "tmp/hvguard-early.cfg"):
        (mnt / leftover).unlink()
    return boot, core


@contextlib.contextmanager
def _loop(raw: Path, offset: int, size: int, logfile: Path) -> Iterator[str]:
    """The partition as its own loop device (this host's loop driver does no partitions)."""
    argv = ["losetup", "--show", "-f", "-o", str(offset), "--sizelimit", str(size), raw]
    dev = run(argv, logfile).strip()
    try:
        yield dev
    finally:
        run(["losetup", "-d", dev], logfile)


@contextlib.contextmanager
def _chroot_mounts(part: str, mnt: Path, logfile: Path, private_dev: bool) -> Iterator[Path]:
    """The root filesystem mounted for a chroot; private_dev: a tmpfs /dev of our own."""
    mnt.mkdir(exist_ok=True)
    run(["mount", part, mnt], logfile)
    try:
        if private_dev:
            run(
                ["mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "hvguard-dev", mnt / "dev"],
                logfile,
            )
        try:
            with _bind_mounts(mnt, logfile, {}, skip_dev=private_dev):
                yield mnt
        finally:
            if private_dev:
                run(["umount", mnt / "dev"], logfile)
    finally:
        run(["umount", mnt], logfile)


def _udev_like_links(mnt: Path, part: str, root_uuid: str) -> None:
    """What udev would provide: the device nodes and /dev/disk/by-uuid link grub-mkconfig needs.

    GRUB's 10_linux writes root=UUID=... only when /dev/disk/by-uuid/<uuid> exists; a private
    /dev keeps these links off the host's /dev.
    """
    dev = mnt / "dev"
    for node in ("null", "zero", "random", "urandom", "full", "tty"):
        run(["cp", "-a", f"/dev/{node}", dev / node])
    run(["cp", "-a", part, dev / Path(part).name])
    run(["cp", "-a", part, dev / "vda1"])
    (dev / "pts").mkdir(exist_ok=True)
    by_uuid = dev / "disk" / "by-uuid"
    by_uuid.mkdir(parents=True)
    (by_uuid / root_uuid).symlink_to("../../vda1")


def mounts_under(root: Path, mounts_text: str) -> list[Path]:
    """Mount points at or below `root`, deepest first (the order to unmount them)."""
    prefix = str(root.resolve())
    points = []
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        point = fields[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(Path(point))
    return sorted(set(points), key=lambda p: len(p.parts), reverse=True)


def _unmount_all(work: Path) -> None:
    for point in mounts_under(work, Path("/proc/self/mounts").read_text()):
        with contextlib.suppress(LabError):
            run(["umount", "-l", point])
    left = mounts_under(work, Path("/proc/self/mounts").read_text())
    if left:
        raise LabError(f"cannot clean {work}: still mounted: {', '.join(map(str, left))}")


def _cleanup_stale(work: Path) -> None:
    """Undo a build interrupted half-way: unmount, detach loops, delete the work dir.

    debootstrap and the GRUB step mount /proc, /sys and /dev inside the work dir; deleting
    the tree before they are gone would delete the host's device nodes.
    """
    _unmount_all(work)
    raw = work / "disk.raw"
    if raw.exists():
        with contextlib.suppress(LabError):
            for line in run(["losetup", "-j", raw]).splitlines():
                run(["losetup", "-d", line.split(":", 1)[0]])
    shutil.rmtree(work, ignore_errors=True)
