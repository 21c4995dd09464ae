# SPDX-License-Identifier: Apache-2.0
"""A minimal MBR partition table: one bootable Linux partition (no sfdisk on the host)."""

import struct

SECTOR = 512
FIRST_SECTOR = 2048  # 1 MiB: room for GRUB's core.img in the post-MBR gap
LINUX = 0x83
_CHS_MAX = b"\xfe\xff\xff"  # "use LBA" marker for addresses beyond CHS range


def partition_entry(start: int, sectors: int, bootable: bool = True, ptype: int = LINUX) -> bytes:
    """One 16-byte partition entry with LBA start/length."""
    if start <= 0 or sectors <= 0:
        raise ValueError("partition start and size must be positive")
    if start + sectors > 0xFFFFFFFF:
        raise ValueError("MBR cannot address beyond 2 TiB")
    status = 0x80 if bootable else 0x00
    return struct.pack("<B3sB3sII", status, _CHS_MAX, ptype, _CHS_MAX, start, sectors)


def mbr(disk_bytes: int, disk_id: int = 0x48564731) -> bytes:
    """The first sector of a disk holding one partition from 1 MiB to the end."""
    if disk_bytes % SECTOR:
        raise ValueError("disk size must be a multiple of 512")
    total = disk_bytes // SECTOR
    if total <= FIRST_SECTOR:
        raise ValueError("disk too small for a partition at 1 MiB")
    table = partition_entry(FIRST_SECTOR, total - FIRST_SECTOR) + bytes(16 * 3)
    sector = bytes(440) + struct.pack("<IH", disk_id, 0) + table + b"\x55\xaa"
    assert len(sector) == SECTOR
    return sector


# GRUB's boot.img (include/grub/i386/pc/boot.h): where grub-bios-setup patches it.
BOOT_CODE_END = 0x1B8  # boot code ends where the disk signature starts (440 bytes)
KERNEL_SECTOR = 0x5C  # u64 LBA of core.img's first sector
DRIVE_CHECK = 0x66  # a jump that grub-bios-setup replaces with two NOPs for hard disks
CORE_SECTOR = 1  # core.img goes right after the MBR, in the gap before the partition


def with_boot_code(sector: bytes, boot_img: bytes, core_sector: int = CORE_SECTOR) -> bytes:
    """The MBR with GRUB's boot.img code, pointing at core.img; table and signature kept.

    This is what grub-bios-setup does for a disk whose core.img sits in the post-MBR gap
    (done here because the host's loop driver does not expose partitions to grub-install).
    """
    if len(sector) != SECTOR or len(boot_img) != SECTOR:
        raise ValueError("MBR and boot.img must be 512 bytes")
    code = bytearray(boot_img[:BOOT_CODE_END])
    code[KERNEL_SECTOR : KERNEL_SECTOR + 8] = struct.pack("<Q", core_sector)
    code[DRIVE_CHECK : DRIVE_CHECK + 2] = b"\x90\x90"
    return bytes(code) + sector[BOOT_CODE_END:]


def core_fits(core_size: int) -> bool:
    """core.img must fit between the MBR and the first partition."""
    return core_size <= (FIRST_SECTOR - CORE_SECTOR) * SECTOR
