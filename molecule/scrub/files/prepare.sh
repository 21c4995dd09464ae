#!/bin/bash
# Idempotent: creates what is missing and says "created" when it did anything.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
set -euo pipefail
export LVM_SUPPRESS_FD_WARNINGS=1
if ! vgs vmvg >/dev/null 2>&1; then
  pvcreate -q /dev/vdb
  vgcreate -q vmvg /dev/vdb
  lvcreate -q -y -L 384M -T vmvg/tpool
  echo created vg
fi
if ! blkid /dev/vdc >/dev/null 2>&1; then
  mkfs.ext4 -q -E nodiscard /dev/vdc
  echo created fs
fi
mkdir -p /srv/vmfs
if ! mountpoint -q /srv/vmfs; then
  grep -q '^/dev/vdc ' /etc/fstab || echo '/dev/vdc /srv/vmfs ext4 defaults,nodiscard 0 2' >>/etc/fstab
  mount /srv/vmfs
  echo created mount
fi
mkdir -p /srv/vmfs/images /srv/vmfs/control
virsh -q -c qemu:///system list --all >/dev/null  # socket activation
if ! virsh -q pool-info vmdir >/dev/null 2>&1; then
  virsh -q pool-define-as vmdir dir --target /srv/vmfs/images >/dev/null
  virsh -q pool-start vmdir >/dev/null && virsh -q pool-autostart vmdir >/dev/null
  echo created pool vmdir
fi
if ! virsh -q pool-info vmvg >/dev/null 2>&1; then
  virsh -q pool-define-as vmvg logical --source-name vmvg --target /dev/vmvg >/dev/null
  virsh -q pool-start vmvg >/dev/null && virsh -q pool-autostart vmvg >/dev/null
  echo created pool vmvg
fi
