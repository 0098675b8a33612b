#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each for a while.
# Usage: scripts/fuzz.sh [seconds-per-target (default 60)] [target ...]
# A crash leaves its input in build-fuzz/crashes/<target>/; copy it into
# tests/fuzz/corpus/<target>/ once fixed, so it stays a regression input (the corpus is replayed
# on every run, and CI replays it too).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh clang libclang-rt-14-dev

secs=${1:-60}
shift || true
build=${BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$build" -DPM_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >/dev/null

status=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  crashes="$build/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  # The committed corpus seeds the run and is replayed first: old crashes stay fixed.
  cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "== $t (${secs}s)"
  if ! "$build/bin/$t" -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=1024 \
       -artifact_prefix="$crashes/" -print_final_stats=1 "$corpus" 2>"$build/$t.log"; then
    echo "   FAILED: see $build/$t.log and $crashes/"
    tail -40 "$build/$t.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$build/$t.log" | tail -2 | sed 's/^/   /'
  fi
done
exit $status
