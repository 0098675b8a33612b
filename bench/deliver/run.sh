#!/usr/bin/env bash
# Deliver benchmark: 10,000 staff messages for 1,000 patients pre-loaded in Kafka, pm-deliver
# (webhook channel) against pm-sandbox, without and with added latency; then the same events
# handled the way Canvas's guide protocol does it (pm-bench-guide). Every run gets fresh
# processes (pm-devbroker, pm-sandbox, pm-deliver). Prints the machine, one markdown table row
# per run, the checks and the ratios.
#
# Usage: bench/deliver/run.sh
# Environment (defaults in brackets):
#   BUILD_DIR [build-bench-deliver]  where to build (Release, -Werror)
#   VARIANTS ["id embedded"]  event shapes: id = data names the Communication (a FHIR read per
#                             message); embedded = data carries it (pm-ingest shape (b))
#   INFLIGHT_A ["16 64 256"]  PM_DELIVER_MAX_IN_FLIGHT values without added latency
#   CALIB_MESSAGES [500]      messages (one per patient) of the in-flight 1 calibration run
#   INFLIGHT_B ["256"]        values with LATENCY_MS added to every sandbox answer
#   LATENCY_MS [50]
#   PATIENTS [1000] MESSAGES [10000]
#   GUIDE [1]                 1: also run the guide-protocol baseline
#   GUIDE_LIMIT [0]           events the baseline handles without latency (0 = all)
#   GUIDE_LIMIT_LAT [500]     events it handles with LATENCY_MS (extrapolated as a rate)
#   RUN_TIMEOUT_S [600]       give up on a run after this long
#   SKIP_BUILD [0]
#   PERF [unset]              a directory: perf record (dwarf call graphs, PERF_HZ [499] Hz)
#                             of pm-deliver and pm-sandbox from the group join to the last result
#   KEEP [0]                  1: keep the state directory (logs, webhook records, metrics)
#   DELIVER_WRAPPER [unset]   words put before pm-deliver, e.g. "valgrind --tool=callgrind
#                             --callgrind-out-file=/tmp/cg.%p" to count instructions per message
#                             (deterministic, unlike the rates on a shared machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

build=${BUILD_DIR:-build-bench-deliver}
variants=${VARIANTS:-"id embedded"}
inflight_a=${INFLIGHT_A:-"16 64 256"}
calib_messages=${CALIB_MESSAGES:-500}
inflight_b=${INFLIGHT_B:-"256"}
latency=${LATENCY_MS:-50}
patients=${PATIENTS:-1000}
messages=${MESSAGES:-10000}
run_guide=${GUIDE:-1}
guide_limit=${GUIDE_LIMIT:-0}
guide_limit_lat=${GUIDE_LIMIT_LAT:-500}
run_timeout=${RUN_TIMEOUT_S:-600}

for tool in curl jq kcat; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "Building (Release) in $build/ ..." >&2
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPM_WERROR=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target pm-deliver pm-sandbox pm-devbroker \
    pm-bench-load pm-bench-guide >/dev/null
fi
bin="$root/$build/bin"

state=$(mktemp -d "${TMPDIR:-/tmp}/pm-bench-deliver.XXXXXX")
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; [ "${KEEP:-0}" = 1 ] && echo "state kept in $state" >&2 || rm -rf "$state"' EXIT
trap 'exit 130' INT TERM

# Bench-only webhook key, generated per run; handed over in the environment, never argv.
secret="whsec_$(head -c 32 /dev/urandom | base64)"
client_id=sandbox-client
client_secret=sandbox-secret

now() { date +%s.%N; }
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# How the machine's CPU time went between stat0 and stat1 (the "cpu" lines of /proc/stat): busy,
# idle and steal, the time the hypervisor gave to other guests. On a shared VM a run's rate
# moves with steal and with what the neighbours do to the caches; this says which runs were hit.
machine_split() {
  local i d total=0 idle steal
  for i in 1 2 3 4 5 6 7 8; do
    d[i]=$((stat1[i] - stat0[i]))
    total=$((total + d[i]))
  done
  idle=$((d[4] + d[5]))
  steal=${d[8]}
  [ "$total" -gt 0 ] || total=1
  printf 'machine busy %d %%, idle %d %%, steal %d %%' $(((total - idle - steal) * 100 / total)) \
    $((idle * 100 / total)) $((steal * 100 / total))
}

cpu_s() { # cpu_s <pid>: utime+stime in seconds
  awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null ||
    echo 0
}
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }
wait_for() { # wait_for <what> <command...>
  local what=$1; shift
  for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "$what did not come up; logs in $state/" >&2; exit 1
}
topic_records() { # topic_records <topic>: sum of the partitions' high watermarks
  local parts q="" p
  parts=$(kcat -b "$brokers" -L -t "$1" 2>/dev/null |
    awk '/partition [0-9]+,/ {sub(",", "", $2); print $2}')
  for p in $parts; do q="$q -t $1:$p:-1"; done
  # shellcheck disable=SC2086
  kcat -b "$brokers" -Q $q 2>/dev/null | awk '{s += $4} END {print s + 0}'
}

# Fresh pm-devbroker and pm-sandbox; sets $brokers, $sb, $db_pid, $sb_pid.
start_stack() {
  rm -f "$state/bootstrap"
  PM_LOG_LEVEL=warn "$bin/pm-devbroker" --bootstrap-file "$state/bootstrap" \
    >"$state/devbroker.out" 2>>"$state/devbroker.log" </dev/null &
  db_pid=$!
  pids+=("$db_pid")
  wait_for pm-devbroker test -s "$state/bootstrap"
  brokers=$(cat "$state/bootstrap")
  PM_SANDBOX_LISTEN=127.0.0.1:0 PM_SANDBOX_WEBHOOK_SECRET=$secret PM_LOG_LEVEL=warn \
    "$bin/pm-sandbox" >"$state/sandbox.out" 2>>"$state/sandbox.log" </dev/null &
  sb_pid=$!
  pids+=("$sb_pid")
  wait_for pm-sandbox grep -q "listening on" "$state/sandbox.out"
  sb=$(grep -o 'http://[0-9.:]*' "$state/sandbox.out" | head -1)
  wait_for pm-sandbox curl -sf "$sb/_sandbox/healthz"
}

load() { # load <variant> <messages> <patients>
  local out
  out=$(PM_KAFKA_BROKERS=$brokers "$bin/pm-bench-load" --sandbox "$sb" --patients "$3" \
    --messages "$2" --variant "$1" --ids-out "$state/ids")
  echo "$out" >&2
  [ "$(field "$out" on_topic)" = "$2" ] ||
    { echo "pm.canvas.messages does not hold exactly $2 events" >&2; exit 1; }
}

alive_or_die() { # pm-deliver, the broker and the sandbox must still run: else say so and stop
  local p
  for p in "$db_pid" "$sb_pid"; do
    kill -0 "$p" 2>/dev/null ||
      { echo "pm-devbroker or pm-sandbox (pid $p) is gone: stopped from outside?" >&2; exit 1; }
  done
  kill -0 "$dl_pid" 2>/dev/null && return 0
  wait "$dl_pid" || echo "pm-deliver exited with status $?:" >&2
  tail -20 "$state/deliver.log" >&2
  exit 1
}

set_latency() {
  curl -sf -X POST -H 'Content-Type: application/json' -d "{\"ms\": $1}" \
    "$sb/_sandbox/latency" >/dev/null
}

sb_stat() { # sb_stat <jq path> on GET /_sandbox/stats (0 when the sandbox does not answer)
  { curl -sf "$sb/_sandbox/stats" || echo '{}'; } | jq -r "$1 // 0"
}

# The progress poll below runs while pm-deliver works and shares the two CPUs with it, so it
# starts no process: perf showed curl (its start-up links a dozen libraries), date, sleep and the
# command substitutions of the earlier poll taking 8-9 % of the machine's CPU samples at 10 Hz.
# sb_webhooks sets got to the webhook requests so far (0 when the sandbox does not answer), over
# bash's /dev/tcp and a regex instead of curl and jq; pause waits on a pipe nobody writes to.
exec {pause_fd}<> <(:)
pause() { read -rt "$1" -u "$pause_fd" _ || true; }
sb_webhooks() {
  local fd s="" hostport=${sb#http://}
  got=0
  exec {fd}<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || return 0
  printf 'GET /_sandbox/stats HTTP/1.0\r\nHost: %s\r\n\r\n' "$hostport" >&"$fd"
  IFS= read -r -d '' -u "$fd" s || true
  exec {fd}>&-
  [[ $s =~ \"by_target\":\{[^}]*\"webhook\":([0-9]+) ]] && got=${BASH_REMATCH[1]}
  return 0
}

# Mean of a histogram from pm-deliver's /metrics: sum / count of <name>{<labels>}.
metric_mean_ms() {
  awk -v n="$2" '
    index($0, n "_sum{") == 1 && index($0, "canvas.message.v1") {s = $NF}
    index($0, n "_count{") == 1 && index($0, "canvas.message.v1") {c = $NF}
    END {printf "%.2f", (c > 0 ? s / c * 1000 : 0)}' "$1"
}

# Webhook requests the sandbox recorded: count, distinct ids, first/last arrival, bad ones.
# Sets w_count, w_distinct, w_dups, w_first_ms, w_last_ms, w_non200, w_badsig, w_lost, w_extra.
webhook_check() {
  curl -sf "$sb/_sandbox/requests?target=webhook&limit=0" >"$state/webhook.json"
  jq -r '.requests[] | [((.ts | sub("\\.[0-9]+Z$"; "Z") | fromdate) * 1000 +
            (.ts | capture("\\.(?<ms>[0-9]+)Z$").ms | tonumber)),
          .status, (.signature_valid | tostring),
          (.body | fromjson | .communication_id)] | @tsv' "$state/webhook.json" >"$state/webhook.tsv"
  w_count=$(wc -l <"$state/webhook.tsv")
  cut -f4 "$state/webhook.tsv" | sort >"$state/got.all"
  sort -u "$state/got.all" >"$state/got"
  w_distinct=$(wc -l <"$state/got")
  w_dups=$((w_count - w_distinct))
  w_first_ms=$(awk -F'\t' 'NR == 1 || $1 < m {m = $1} END {printf "%.0f", m}' "$state/webhook.tsv")
  w_last_ms=$(awk -F'\t' '$1 > m {m = $1} END {printf "%.0f", m}' "$state/webhook.tsv")
  # Stalls: gaps of 100 ms or more between consecutive webhook arrivals (count, seconds).
  read -r w_gaps w_gap_s w_gap_max <<<"$(cut -f1 "$state/webhook.tsv" | sort -n | awk '
    NR > 1 && $1 - p >= 100 {n++; s += $1 - p} NR > 1 && $1 - p > m {m = $1 - p} {p = $1}
    END {printf "%d %.2f %d", n, s / 1000, m}')"
  w_non200=$(awk -F'\t' '$2 != 200' "$state/webhook.tsv" | wc -l)
  w_badsig=$(awk -F'\t' '$3 != "true"' "$state/webhook.tsv" | wc -l)
  cut -d' ' -f1 "$state/ids" | sort -u >"$state/expected"
  w_lost=$(comm -23 "$state/expected" "$state/got" | wc -l)
  w_extra=$(comm -13 "$state/expected" "$state/got" | wc -l)
}

echo "## Machine"
echo
echo "- CPU: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(nproc) CPUs (nproc)"
echo "- RAM: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "- Kernel: $(uname -sr)"
echo "- Load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Source: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); uncommitted" \
  "changes in: $(git status --porcelain -- common services tools 2>/dev/null | awk '{print $2}' |
    tr '\n' ' ' | sed 's/ $//' | grep . || echo none)"
echo "- Workload: $messages staff messages for $patients patients, webhook channel, PM_LOG_LEVEL=warn"
echo

# One pm-deliver run against fresh processes; appends a table row and a check line and sets
# rate_of / handler_of["<variant>,<latency>,<in-flight>"].
run_deliver() { # run_deliver <variant> <latency ms> <in-flight> <messages> <patients>
  local variant=$1 lat=$2 inflight=$3 n=$4 np=$5
  label="$variant, $([ "$lat" = 0 ] && echo "no added latency" || echo "+$lat ms"), in-flight $inflight, $n messages"
  echo "--- $label" >&2
  start_stack
  load "$variant" "$n" "$np"
  set_latency "$lat"
  curl -sf -X DELETE "$sb/_sandbox/requests" >/dev/null # zero the counters
  sb_cpu0=$(cpu_s "$sb_pid")
  db_cpu0=$(cpu_s "$db_pid")
  port=$((18300 + RANDOM % 1000))
  t_start=$(now)
  PM_KAFKA_BROKERS=$brokers PM_LOG_LEVEL=warn PM_DELIVER_LISTEN=127.0.0.1:$port \
    PM_CANVAS_FHIR_URL="$sb/fhir" PM_CANVAS_TOKEN_URL="$sb/auth/token/" \
    PM_CANVAS_CLIENT_ID=$client_id PM_CANVAS_CLIENT_SECRET=$client_secret \
    PM_DELIVER_CHANNELS=webhook PM_WEBHOOK_URL="$sb/webhook" PM_WEBHOOK_SECRET=$secret \
    PM_DELIVER_MAX_IN_FLIGHT=$inflight \
    ${DELIVER_WRAPPER:-} "$bin/pm-deliver" 2>>"$state/deliver.log" </dev/null &
  dl_pid=$!
  pids+=("$dl_pid")
  # Ready = a group member (the mock cluster's fixed ~3 s join delay is over).
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    alive_or_die
    sleep 0.02
  done
  t_ready=$(now)
  read -ra stat0 </proc/stat
  perf_pids=()
  if [ -n "${PERF:-}" ]; then # profile pm-deliver and pm-sandbox from the group join on
    perf record -q -F "${PERF_HZ:-499}" --call-graph dwarf,16384 -p "$dl_pid" \
      -o "$PERF/deliver-$variant-$lat-$inflight.data" >/dev/null 2>&1 &
    perf_pids+=($!)
    perf record -q -F "${PERF_HZ:-499}" --call-graph dwarf,16384 -p "$sb_pid" \
      -o "$PERF/sandbox-$variant-$lat-$inflight.data" >/dev/null 2>&1 &
    perf_pids+=($!)
  fi
  load_during=""
  printf -v deadline '%(%s)T' -1
  deadline=$((deadline + run_timeout))
  while :; do
    sb_webhooks
    [ -z "$load_during" ] && [ "$got" -gt $((n / 2)) ] && load_during=$(cut -d' ' -f1 /proc/loadavg)
    [ "$got" -ge "$n" ] && break
    alive_or_die
    printf -v now_s '%(%s)T' -1
    [ "$now_s" -lt "$deadline" ] || { echo "timed out at $got webhook requests" >&2; break; }
    pause 0.1
  done
  read -ra stat1 </proc/stat # ready → last webhook
  machine=$(machine_split)
  # Every event finished means its delivery result is on pm.deliveries.
  for _ in $(seq 1 300); do
    [ "$(topic_records pm.deliveries)" -ge "$n" ] && break
    sleep 0.1
  done
  [ -z "$load_during" ] && load_during=$(cut -d' ' -f1 /proc/loadavg)
  for p in "${perf_pids[@]}"; do kill -INT "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  hwm=$(status_kb "$dl_pid" VmHWM)
  threads=$(status_kb "$dl_pid" Threads)
  dl_cpu=$(cpu_s "$dl_pid")
  sb_cpu=$(awk -v a="$sb_cpu0" -v b="$(cpu_s "$sb_pid")" 'BEGIN {printf "%.2f", b - a}')
  db_cpu=$(awk -v a="$db_cpu0" -v b="$(cpu_s "$db_pid")" 'BEGIN {printf "%.2f", b - a}')
  # CPU by thread: the HTTP client's curl thread (named pm-http by common/http_client.c),
  # librdkafka's threads (rdk:*), and the rest (the consumer's workers pm-worker and poll thread
  # pm-consume, the result producer's pm-produce, MHD, main). Each thread's time is counted in
  # whole clock ticks (10 ms; this kernel has no schedstats), so with hundreds of threads the
  # per-thread sum falls short of the process total; the shortfall is printed as "in ticks lost".
  split=$(for t in /proc/"$dl_pid"/task/*; do
      printf '%s %s %s\n' "${t##*/}" "$(cat "$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
    done | awk -v t="$(getconf CLK_TCK)" -v n="$n" -v total="$(awk '{print $14 + $15}' "/proc/$dl_pid/stat")" '
      $2 == "pm-http" {c += $3; next} $2 ~ /^rdk:/ {k += $3; next} {o += $3}
      END {printf "HTTP client thread %.0f, librdkafka threads %.0f, other threads %.0f, in ticks lost %.0f us/msg", c / t / n * 1e6, k / t / n * 1e6, o / t / n * 1e6, (total - c - k - o) / t / n * 1e6}')
  curl -sf "http://127.0.0.1:$port/metrics" >"$state/metrics.txt"
  http_ms=$(awk '
    /outbound_request_duration_seconds_sum\{target="(canvas-fhir|webhook)"/ {s += $NF}
    /outbound_request_duration_seconds_count\{target="(canvas-fhir|webhook)"/ {c += $NF}
    END {printf "%.2f", (c > 0 ? s / c * 1000 : 0)}' "$state/metrics.txt")
  handler_ms=$(metric_mean_ms "$state/metrics.txt" pm_deliver_handler_duration_seconds)
  tokens=$(sb_stat '.by_target.token')
  fhir=$(sb_stat '.by_target.fhir')
  kill -TERM "$dl_pid"
  wait "$dl_pid" && dl_rc=0 || dl_rc=$?

  webhook_check
  results=$(kcat -b "$brokers" -C -t pm.deliveries -e -q -f '%T %s\n' 2>/dev/null)
  r_count=$(grep -c . <<<"$results" || true)
  r_delivered=$(grep -c '"outcome":"delivered"' <<<"$results" || true)
  r_last_ms=$(awk '$1 > m {m = $1} END {printf "%.0f", m}' <<<"$results")
  dlq=$(topic_records pm.dlq)
  stop_all

  window_s=$(awk -v a="$w_first_ms" -v b="$w_last_ms" 'BEGIN {printf "%.3f", (b - a) / 1000}')
  rate=$(awk -v n="$w_distinct" -v w="$window_s" 'BEGIN {printf "%.0f", (w > 0 ? n / w : 0)}')
  ready_s=$(awk -v a="$t_start" -v b="$t_ready" 'BEGIN {printf "%.2f", b - a}')
  rate2=$(awk -v n="$r_delivered" -v a="$t_ready" -v b="$r_last_ms" \
    'BEGIN {w = b / 1000 - a; printf "%.0f", (w > 0 ? n / w : 0)}')
  us_msg=$(awk -v d="$dl_cpu" -v s="$sb_cpu" -v k="$db_cpu" -v n="$n" \
    'BEGIN {printf "%.0f / %.0f / %.0f", d / n * 1e6, s / n * 1e6, k / n * 1e6}')
  rows+=("| $variant | $([ "$lat" = 0 ] && echo 0 || echo "+$lat ms") | $inflight | $n | $rate | $window_s | $rate2 | $((hwm / 1024)) MiB | $tokens | $fhir | $w_distinct / $w_dups / $w_lost | $handler_ms | $us_msg | $load_during |")
  [ "$n" = "$messages" ] && rate_of["$variant,$lat,$inflight"]=$rate # not the calibration
  handler_of["$variant,$lat,$inflight"]=$handler_ms
  ok=OK
  [ "$w_distinct" = "$n" ] && [ "$w_lost" = 0 ] && [ "$w_extra" = 0 ] &&
    [ "$w_non200" = 0 ] && [ "$w_badsig" = 0 ] && [ "$r_delivered" = "$n" ] &&
    [ "$dlq" = 0 ] && [ "$dl_rc" = 0 ] || ok=FAIL
  checks+=("$label: webhook requests $w_count, distinct Communication ids $w_distinct (expected $n; lost $w_lost, unexpected $w_extra, duplicates $w_dups), non-200 $w_non200, bad signatures $w_badsig; $w_gaps stalls of >= 100 ms between webhook arrivals ($w_gap_s s in all, longest $w_gap_max ms); pm.deliveries $r_count results ($r_delivered delivered); pm.dlq $dlq; ready after ${ready_s} s; pm-deliver threads $threads, exit $dl_rc; mean FHIR/webhook request $http_ms ms; CPU: $split; $machine: $ok")
}

rows=()
checks=()
declare -A rate_of handler_of
# Calibration: in-flight 1, no added latency, a short run: the handler's own time per message
# (the overhead added to the round trips in the concurrency ideal below).
for variant in $variants; do
  run_deliver "$variant" 0 1 "$calib_messages" "$calib_messages"
done
for variant in $variants; do
  for inflight in $inflight_a; do run_deliver "$variant" 0 "$inflight" "$messages" "$patients"; done
  for inflight in $inflight_b; do
    run_deliver "$variant" "$latency" "$inflight" "$messages" "$patients"
  done
done

guide_rows=()
declare -A guide_rate
if [ "$run_guide" = 1 ]; then
  for lat in 0 "$latency"; do
    limit=$([ "$lat" = 0 ] && echo "$guide_limit" || echo "$guide_limit_lat")
    echo "--- guide protocol, +$lat ms, limit $limit" >&2
    start_stack
    load id "$messages" "$patients"
    set_latency "$lat"
    curl -sf -X DELETE "$sb/_sandbox/requests" >/dev/null
    out=$(PM_KAFKA_BROKERS=$brokers PM_CANVAS_CLIENT_ID=$client_id \
      PM_CANVAS_CLIENT_SECRET=$client_secret PM_WEBHOOK_SECRET=$secret \
      "$bin/pm-bench-guide" --sandbox "$sb" --limit "$limit")
    echo "$out" >&2
    res=$(grep '^RESULT ' <<<"$out" | tail -1)
    tokens=$(sb_stat '.by_target.token')
    hooks=$(sb_stat '.by_target.webhook')
    stop_all
    guide_rate[$lat]=$(field "$res" msg_per_s)
    guide_rows+=("| guide protocol | $([ "$lat" = 0 ] && echo 0 || echo "+$lat ms") | 1 | $(field "$res" messages) | $(field "$res" msg_per_s) | $(field "$res" ms_per_msg) | $(field "$res" token_ms) / $(field "$res" fhir_ms) / $(field "$res" webhook_ms) | $tokens | $hooks | $(field "$res" errors) |")
  done
fi

echo "## Results"
echo
echo "| events | added latency | in-flight | messages | msg/s (webhook window) | window s | msg/s (ready → last result) | RSS (VmHWM) | token requests | FHIR requests | distinct / duplicates / lost | handler mean ms | CPU us/msg deliver / sandbox / devbroker | load (1 min) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
if [ ${#guide_rows[@]} -gt 0 ]; then
  echo "| baseline | added latency | in-flight | messages | msg/s | ms per message | ms per token / FHIR read / webhook | token requests | webhook requests | errors |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${guide_rows[@]}"
  echo
  echo "Ratios, pm-deliver / guide protocol (same sandbox, same latency):"
  for key in "${!rate_of[@]}"; do
    IFS=, read -r v l i <<<"$key"
    g=${guide_rate[$l]:-}
    [ -n "$g" ] && awk -v r="${rate_of[$key]}" -v g="$g" -v k="$v, +$l ms, in-flight $i" \
      'BEGIN {printf "- %s: %s / %s = %.1f\n", k, r, g, (g > 0 ? r / g : 0)}'
  done | sort
  echo
fi
ideal=$(for v in $variants; do
  trips=$([ "$v" = id ] && echo 2 || echo 1)
  t0=${handler_of[$v,0,1]:-}
  [ -n "$t0" ] || continue
  for i in $inflight_b; do
    r=${rate_of[$v,$latency,$i]:-}
    [ -n "$r" ] || continue
    awk -v v="$v" -v tr="$trips" -v lat="$latency" -v t0="$t0" -v i="$i" -v r="$r" \
      -v hb="${handler_of[$v,$latency,$i]}" 'BEGIN {
        l = tr * lat + t0; ideal = i / (l / 1000)
        printf "- %s: %d round trip(s) x %d ms + %.2f ms (handler mean at in-flight 1, no added latency) = %.2f ms; ideal %d / %.4f s = %.0f msg/s; achieved %s = %.0f%% (handler mean in this run %s ms)\n",
          v, tr, lat, t0, l, i, l / 1000, ideal, r, r / ideal * 100, hb }'
  done
done)
if [ -n "$ideal" ]; then
  echo "Concurrency ideal with +$latency ms (in-flight / per-message latency):"
  echo "$ideal"
  echo
fi
echo "Checks:"
printf -- '- %s\n' "${checks[@]}"
echo
echo "Load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
