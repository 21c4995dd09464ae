#!/bin/bash
# SIGKILL in the middle of a large scrub: the quarantined LV keeps its extents (a new LV
# that takes all free space reads no marker), and once hvguard-scrub.service starts again
# (as after a reboot) the scrub resumes from its checkpoint and completes; the raw disk then
# holds no marker.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
set -uo pipefail
export LVM_SUPPRESS_FD_WARNINGS=1
M="HVGKILL-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fail() { echo "FAIL $*"; systemctl start hvguard-scrub.service; exit 1; }
# count MARKER FILE: sets N to the NUL-separated records holding MARKER (see matrix.sh:
# scan). Called directly, never inside $(...): there `fail` would only end the subshell.
count() {
  local rc=0
  N=$(LC_ALL=C grep -a -z -c -F "$1" "$2") || rc=$?
  [ "$rc" -le 1 ] || fail "scan of $2 failed (grep rc=$rc)"
}
queue_field() { # queue_field EXPR: evaluate EXPR on the first job (jobs[0]), "" when none
  hvguard-scrub queue --json | python3 -c "import json,sys; j=json.load(sys.stdin)['jobs']; print($1 if j else '')"
}

systemctl stop hvguard-scrub.service  # nothing may resume the job behind the test's back
lvcreate -q -y -L 512M -n big vmvg >/dev/null
yes "$M" | head -c 512M | dd of=/dev/vmvg/big bs=4M oflag=direct conv=fsync status=none
hvguard-scrub scrub --rate 20 --no-offload vmvg/big >/tmp/hvguard-sigkill.log 2>&1 &
pid=$!
done_bytes=""
for _ in $(seq 120); do
  done_bytes=$(queue_field 'j[0]["done"]')
  [ -n "$done_bytes" ] && [ "$done_bytes" -gt 0 ] && break
  sleep 0.5
done
[ -n "$done_bytes" ] && [ "$done_bytes" -gt 0 ] || fail "no checkpoint within 60 s"
kill -KILL "$pid"; wait "$pid" 2>/dev/null
echo "killed at checkpoint done=$done_bytes of $((512 << 20))"
state=$(queue_field 'j[0]["state"]')
quarantine=$(queue_field 'j[0]["quarantine"]')
[ "$state" = scrubbing ] || fail "job state after SIGKILL is '$state', not scrubbing"
lvs "$quarantine" >/dev/null 2>&1 || fail "quarantined LV $quarantine is gone before its scrub finished"
echo "quarantined $quarantine still holds its extents"

# reuse attempt: a new LV over all free space, not wiped or zeroed, must not see the marker
lvcreate -q -y -W n -Z n -l 100%FREE -n grab vmvg >/dev/null
count "$M" /dev/vmvg/grab; hits=$N
lvm lvremove -q -f vmvg/grab >/dev/null
[ "$hits" = 0 ] || fail "a new LV read the killed scrub's data ($hits lines)"
echo "new LV over all free space: no marker"
dd if="/dev/$quarantine" of=/tmp/hvguard-tail bs=1M skip=500 count=12 status=none
count "$M" /tmp/hvguard-tail; tail_hits=$N; rm -f /tmp/hvguard-tail
[ "$tail_hits" -gt 0 ] || fail "the unscrubbed tail should still hold old data (scan sanity)"

systemctl start hvguard-scrub.service  # the restart after the crash
for _ in $(seq 240); do
  [ -z "$(queue_field 'j[0]["id"]')" ] && break
  sleep 1
done
[ -z "$(queue_field 'j[0]["id"]')" ] || fail "the scrub did not complete after the restart: $(hvguard-scrub queue)"
lvs "$quarantine" >/dev/null 2>&1 && fail "$quarantine still exists after the scrub"
sync; echo 3 >/proc/sys/vm/drop_caches
count "$M" /dev/vdb; raw_hits=$N
[ "$raw_hits" = 0 ] || fail "marker still on the raw disk ($raw_hits lines)"
journalctl -q -u 'hvguard-scrub*' --since '-10 min' | grep -E 'scrubbed|resum' | tail -3
echo "RESULT PASS"
