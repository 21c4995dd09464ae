#!/usr/bin/env bash
# Run Molecule scenarios for `make molecule`: groups one after the other; the lanes of a group
# ("a>b+c") side by side; the scenarios of a lane ("a>b") one after the other. Each output
# line is prefixed with its scenario. A group boots at most three VMs in all (2-core
# machines; CI's groups keep to two, see mk/lab.mk and docs/testing.md). Each scenario's
# lab is torn down even when Molecule fails or is interrupted. Prints (and appends to
# $HVGUARD_TIMINGS) every scenario's and group's wall time; exits 1 if any scenario failed.
# Usage: mk/molecule.sh GROUP... (the caller holds the VM lock)
set -uo pipefail
py=${LAB_PY:-python3}
results=$(mktemp)
trap 'rm -f "$results"' EXIT

run_one() { # run_one SCENARIO: molecule test, output prefixed, "<scenario> <seconds> <rc>" to $results
  local s=$1 t0=$SECONDS rc=0
  # shellcheck disable=SC2086  # MOLECULE_ARGS is a word list on purpose
  molecule test -s "$s" ${MOLECULE_ARGS:-} 2>&1 | sed -u "s/^/[$s] /" || rc=$?
  "$py" -m lab down --name "molecule-$s" >/dev/null 2>&1 || true
  echo "$s $((SECONDS - t0)) $rc" >>"$results"
}

run_lane() { # run_lane "a>b": the lane's scenarios one after the other
  local s
  for s in ${1//>/ }; do run_one "$s"; done
}

for group in "$@"; do
  t0=$SECONDS
  scenarios=${group//[+>]/ }
  echo "::: molecule: ${group//+/ beside }"
  pids=()
  for lane in ${group//+/ }; do
    run_lane "$lane" &
    pids+=($!)
  done
  trap 'kill "${pids[@]}" 2>/dev/null; wait; for s in $scenarios; do "$py" -m lab down --name "molecule-$s" >/dev/null 2>&1; done; exit 130' INT TERM
  wait "${pids[@]}"
  trap - INT TERM
  [[ $group == *[+\>]* ]] && echo "${group} $((SECONDS - t0)) -" >>"$results"
done

echo "::: molecule wall times:"
rc=0
while read -r name secs status; do
  printf "  %-22s %5ss  %s\n" "$name" "$secs" "$([ "$status" = - ] && echo "(group, side by side)" || echo "rc=$status")"
  [ -z "${HVGUARD_TIMINGS:-}" ] || printf "  %-20s %5ss  %s\n" "molecule $name" "$secs" "$([ "$status" = - ] && echo "(group)" || echo "rc=$status")" >>"$HVGUARD_TIMINGS"
  [ "$status" = - ] || [ "$status" = 0 ] || rc=1
done <"$results"
[ "$rc" = 0 ] || echo "::: molecule FAILED: $(awk '$3 != "-" && $3 != 0 {print $1}' "$results" | xargs)"
exit "$rc"
