#!/usr/bin/env bash
# A/B comparison of two commits on the deliver benchmark: builds each in its own git worktree and
# runs bench/deliver/run.sh for one configuration, alternating A and B for ROUNDS rounds, so both
# see the same drift of a shared, noisy machine. One run's figures move by 10-20 % here; a change
# is only worth believing when the ranges of several alternating runs separate.
#
# Usage: bench/deliver/compare.sh <commit A> <commit B>
# Environment (defaults in brackets):
#   ROUNDS [4]        pairs of runs (A then B)
#   INFLIGHT [16]     PM_DELIVER_MAX_IN_FLIGHT
#   VARIANT [id]      event shape (see run.sh)
#   LATENCY_MS [0]    added to every sandbox answer
#   WORKDIR [$TMPDIR/pm-bench-compare]  worktrees and builds (kept between calls: reruns are quick)
#   DELIVER_WRAPPER_A, DELIVER_WRAPPER_B [none]  run.sh's DELIVER_WRAPPER for one side, e.g.
#                     "env GLIBC_TUNABLES=glibc.malloc.tcache_count=256" (same commit twice
#                     compares a runtime setting)
# Prints one line per run and the median of each side. Both worktrees run their own run.sh.
# "CPUs used" is msg/s x the three processes' CPU per message: how much of the machine the
# pipeline kept busy. The machine's speed moves msg/s and CPU per message a lot between runs but
# this figure much less, so a change that removes waiting shows there first (benchmarks.md,
# finding 12). It is approximate: the CPU time covers a slightly longer span than the webhook
# window, so a saturated run can show a little more than the machine's CPU count.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 2 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
rounds=${ROUNDS:-4}
inflight=${INFLIGHT:-16}
variant=${VARIANT:-id}
latency=${LATENCY_MS:-0}
work=${WORKDIR:-${TMPDIR:-/tmp}/pm-bench-compare}
mkdir -p "$work"

declare -A dir
for side in A B; do
  rev=$([ "$side" = A ] && echo "$1" || echo "$2")
  sha=$(git rev-parse --verify "$rev^{commit}")
  d="$work/${sha:0:12}"
  if [ ! -d "$d" ]; then
    git worktree add --detach -f "$d" "$sha" >/dev/null 2>&1
  fi
  echo "$side = $rev (${sha:0:12}): building in $d ..." >&2
  (cd "$d" && cmake -S . -B build-bench-deliver -DCMAKE_BUILD_TYPE=Release -DPM_WERROR=ON \
     >/dev/null && cmake --build build-bench-deliver -j"$(nproc)" --target pm-deliver pm-sandbox \
     pm-devbroker pm-bench-load pm-bench-guide >/dev/null)
  dir[$side]=$d
done

# The latency runs go through INFLIGHT_B, the others through INFLIGHT_A; " " = none.
if [ "$latency" = 0 ]; then a=$inflight; b=" "; else a=" "; b=$inflight; fi
declare -A rates cpus
echo "side | msg/s (webhook window) | CPU us/msg deliver / sandbox / devbroker | CPUs used | handler mean ms"
for r in $(seq 1 "$rounds"); do
  for side in A B; do
    wrapper_var=DELIVER_WRAPPER_$side
    row=$(cd "${dir[$side]}" && DELIVER_WRAPPER="${!wrapper_var:-}" SKIP_BUILD=1 VARIANTS=$variant INFLIGHT_A="$a" INFLIGHT_B="$b" \
      LATENCY_MS=$latency GUIDE=0 CALIB_MESSAGES=20 bench/deliver/run.sh 2>/dev/null |
      awk -F'|' -v v=" $variant " -v n=" $inflight " '$2 == v && $4 == n' | tail -1)
    [ -n "$row" ] || { echo "run $r of $side produced no row" >&2; exit 1; }
    rate=$(awk -F'|' '{gsub(/ /, "", $6); print $6}' <<<"$row")
    rates[$side]="${rates[$side]:-} $rate"
    used=$(awk -F'|' '{n = split($14, us, "/"); t = 0; for (i = 1; i <= n; i++) t += us[i];
      printf "%.2f", $6 * t / 1e6}' <<<"$row")
    cpus[$side]="${cpus[$side]:-} $used"
    awk -F'|' -v s="$side" -v u="$used" '{printf "%s | %s | %s | %s | %s\n", s, $6, $14, u, $13}' <<<"$row"
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {
  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f (%d-%d)", m, v[1], v[NR]}'; }
echo "median msg/s (min-max): A $(median <<<"${rates[A]}"), B $(median <<<"${rates[B]}")"
# the same median, to two decimals, for the CPUs used
median2() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {
  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%.2f (%.2f-%.2f)", m, v[1], v[NR]}'; }
echo "median CPUs used (min-max): A $(median2 <<<"${cpus[A]}"), B $(median2 <<<"${cpus[B]}")"
