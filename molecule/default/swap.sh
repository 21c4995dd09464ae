#!/bin/sh
# HVG-MEM-004 cases on the lab VM (the image has no swap at all).
#   plain:     a swap file on the VM's unencrypted root disk -> the audit must report drift.
#   protected: that file off and gone; a zram device and a dm-crypt mapping set up as
#              cryptsetup's plain mode (and crypttab's `swap`) does it, with a random key and
#              the dm UUID CRYPT-PLAIN-<name>, over a loop device -> compliant.
# Idempotent: a second call leaves things as they are.
set -eu
dir=/var/lib/hvguard-swaptest
plain=$dir/plain.swap
crypt=hvguard-swapcrypt
active() { grep -q "^$1 " /proc/swaps; }

case "$1" in
plain)
  mkdir -p "$dir"
  if [ ! -f "$plain" ]; then
    dd if=/dev/zero of="$plain" bs=1M count=16 status=none
    chmod 600 "$plain"
    mkswap -q "$plain"
  fi
  active "$plain" || swapon "$plain"
  ;;
protected)
  if active "$plain"; then swapoff "$plain"; fi
  rm -f "$plain"
  modprobe zram
  if ! grep -q '^/dev/zram' /proc/swaps; then
    zram=$(zramctl --find --size 32M)
    mkswap -q "$zram"
    swapon "$zram"
  fi
  if [ ! -e "/dev/mapper/$crypt" ]; then
    dd if=/dev/zero of="$dir/crypt.img" bs=1M count=16 status=none
    loop=$(losetup --find --show "$dir/crypt.img")
    key=$(od -An -tx1 -N64 /dev/urandom | tr -d ' \n')
    dmsetup create "$crypt" --uuid "CRYPT-PLAIN-$crypt" \
      --table "0 $(blockdev --getsz "$loop") crypt aes-xts-plain64 $key 0 $loop 0"
    mkswap -q "/dev/mapper/$crypt"
  fi
  active "$(readlink -f "/dev/mapper/$crypt")" || swapon "/dev/mapper/$crypt"
  ;;
*)
  echo "usage: $0 plain|protected" >&2
  exit 2
  ;;
esac
cat /proc/swaps
