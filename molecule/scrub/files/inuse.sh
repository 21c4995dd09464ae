#!/bin/bash
# HVG-STO-001 safety contract on real LVM: an LV that the kernel or a process uses is REFUSED
# by `hvguard-scrub scrub` (exit 3) and keeps its name and data; an idle LV is scrubbed (the
# positive control, so a refusal of everything cannot pass). Cases: ext4 mounted on the LV,
# a device-mapper linear target on top of it, an active swap on it, a process holding it
# open. Output: "INUSE <case> PASS|FAIL <detail>" per case, then "RESULT PASS|FAIL".
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(...) stops the script too
export LVM_SUPPRESS_FD_WARNINGS=1
VG=vmvg
RUN=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
W=$(mktemp -d)
MNT=$W/mnt
DM=hvg-inuse-top-$RUN
HOLDER=""
fail=0

cleanup() {
  set +e
  [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null && wait "$HOLDER" 2>/dev/null
  mountpoint -q "$MNT" && umount "$MNT"
  dmsetup info "$DM" >/dev/null 2>&1 && dmsetup remove "$DM"
  for lv in mnt dm swap open idle; do
    swapoff "/dev/$VG/inuse-$lv-$RUN" 2>/dev/null
    lvs "$VG/inuse-$lv-$RUN" >/dev/null 2>&1 && lvm lvremove -q -f "$VG/inuse-$lv-$RUN" >/dev/null
  done
  rm -rf "$W"
}
trap cleanup EXIT

result() { # result CASE PASS|FAIL DETAIL
  echo "INUSE $1 $2 ${3:-}"
  [ "$2" = PASS ] || fail=1
}

marker_file() { # marker_file CASE MIB: $W/CASE.mark, MIB MiB of the case's marker
  # no `yes | head` pipeline: yes dies of SIGPIPE, which pipefail turns into a failure
  head -c "$2M" < <(yes "HVGINUSE-$RUN-$1") >"$W/$1.mark"
}

mk_lv() { # mk_lv CASE: a 16 MiB LV with the case's marker at the start; prints its path
  local lv=inuse-$1-$RUN
  lvcreate -q -y -L 16M -n "$lv" "$VG" >/dev/null
  marker_file "$1" 4
  dd if="$W/$1.mark" of="/dev/$VG/$lv" bs=1M oflag=direct conv=fsync status=none
  echo "/dev/$VG/$lv"
}

marker_count() { # marker_count DEV CASE: lines of the case's marker in the first 4 MiB
  dd if="$1" of="$W/$2.back" bs=1M count=4 iflag=direct status=none
  LC_ALL=C grep -a -c -F "HVGINUSE-$RUN-$2" "$W/$2.back" || true  # grep -c prints 0, exits 1
}

expect_refused() { # expect_refused CASE CHECK-DEVICE: scrub must exit 3, LV and data intact
  local case=$1 dev=$2 rc=0 before after
  before=$(marker_count "$dev" "$case")
  hvguard-scrub scrub "$VG/inuse-$case-$RUN" >"$W/$case.log" 2>&1 || rc=$?
  after=$(marker_count "$dev" "$case")
  if [ "$rc" != 3 ]; then
    result "$case" FAIL "exit $rc, not 3: $(tr '\n' ' ' <"$W/$case.log")"
  elif ! lvs "$VG/inuse-$case-$RUN" >/dev/null 2>&1; then
    result "$case" FAIL "refused, but the LV lost its name"
  elif [ "$before" = 0 ] || [ "$after" != "$before" ]; then
    result "$case" FAIL "marker lines before=$before after=$after"
  else
    result "$case" PASS "exit 3, data intact ($after marker lines): $(tail -1 "$W/$case.log")"
  fi
}

# ext4 mounted on the LV: the marker lives in a file of that filesystem
dev=$(mk_lv mnt)
mkfs.ext4 -q -F "$dev"
mkdir -p "$MNT"
mount "$dev" "$MNT"
cp "$W/mnt.mark" "$MNT/data"
sync
rc=0
hvguard-scrub scrub "$VG/inuse-mnt-$RUN" >"$W/mnt.log" 2>&1 || rc=$?
if [ "$rc" = 3 ] && lvs "$VG/inuse-mnt-$RUN" >/dev/null 2>&1 && grep -q -F "HVGINUSE-$RUN-mnt" "$MNT/data"; then
  result mnt PASS "exit 3, mounted data intact: $(tail -1 "$W/mnt.log")"
else
  result mnt FAIL "exit $rc: $(tr '\n' ' ' <"$W/mnt.log")"
fi
umount "$MNT"

# a device-mapper target stacked on the LV (holders/ and the exclusive claim)
dev=$(mk_lv dm)
dmsetup create "$DM" --table "0 $(blockdev --getsz "$dev") linear $dev 0"
expect_refused dm "$dev"
dmsetup remove "$DM"

# an active swap on the LV
dev=$(mk_lv swap)
mkswap -q "$dev" >/dev/null 2>&1 || mkswap "$dev" >/dev/null
dd if="$W/swap.mark" of="$dev" bs=1M count=1 seek=8 oflag=direct conv=fsync status=none
swapon "$dev"
rc=0
hvguard-scrub scrub "$VG/inuse-swap-$RUN" >"$W/swap.log" 2>&1 || rc=$?
dd if="$dev" of="$W/swap.back" bs=1M skip=8 count=1 iflag=direct status=none
active=$(swapon --show=NAME --noheadings | grep -c -x -F "$(readlink -f "$dev")" || true)
if [ "$rc" = 3 ] && [ "$active" -gt 0 ] && lvs "$VG/inuse-swap-$RUN" >/dev/null 2>&1 \
   && LC_ALL=C grep -a -q -F "HVGINUSE-$RUN-swap" "$W/swap.back"; then
  result swap PASS "exit 3, swap still active, data intact: $(tail -1 "$W/swap.log")"
else
  result swap FAIL "exit $rc: $(tr '\n' ' ' <"$W/swap.log")"
fi
swapoff "$dev"

# a process holding the LV open (a plain, non-exclusive open, as qemu does)
dev=$(mk_lv open)
sleep 600 3<"$dev" &
HOLDER=$!
for _ in $(seq 50); do [ -e "/proc/$HOLDER/fd/3" ] && break; sleep 0.1; done
expect_refused open "$dev"
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null || true
HOLDER=""

# positive control: an idle LV of the managed VG IS scrubbed and removed (by this command's
# worker or by the daemon's, whichever takes the job: the history records it either way)
mk_lv idle >/dev/null
rc=0
hvguard-scrub scrub --verify "$VG/inuse-idle-$RUN" >"$W/idle.log" 2>&1 || rc=$?
left=$(lvs --noheadings -o lv_name "$VG" | grep -c -F "inuse-idle-$RUN" || true)
state=$(python3 -c 'import json; print(json.load(open("/etc/hvguard-scrub.json")).get("state_dir", "/var/lib/hvguard-scrub"))')
done_=$(grep -c -F "\"original\": \"$VG/inuse-idle-$RUN\"" "$state/history.log" || true)
if [ "$rc" = 0 ] && [ "$left" = 0 ] && [ "$done_" = 1 ]; then
  result idle-control PASS "scrubbed and removed: $(grep -F "inuse-idle-$RUN" "$state/history.log")"
else
  result idle-control FAIL "exit $rc, LVs left=$left: $(tr '\n' ' ' <"$W/idle.log")"
fi

if [ "$fail" = 0 ]; then echo "RESULT PASS"; else echo "RESULT FAIL"; exit 1; fi
