#!/usr/bin/env bash
# Ingest benchmark: pm-loadgen (signed ~1 KB notifications, keep-alive) against pm-ingest +
# pm-devbroker, then against pm-ingest-nokafka (the HTTP ceiling), plus a wrk cross-check.
# Prints the machine, one markdown table row per run, and the topic-count check.
#
# Usage: bench/ingest/run.sh
# Environment (defaults in brackets):
#   BUILD_DIR [build-bench]    where to build (Release)
#   CONNS ["64 128 256"]       connection counts to run, each against fresh processes
#   WARMUP [5] DURATION [20]   pm-loadgen warm-up and measured seconds
#   INGEST_THREADS [2]         PM_INGEST_THREADS (libmicrohttpd worker threads)
#   LOADGEN_THREADS [1]        pm-loadgen threads
#   CONFIGS ["kafka nokafka"]  which servers to run
#   WRK [1]                    1: also run wrk (bearer token, fixed body) once per server
#   WRK_CONNS [128]            wrk connections
#   PORT [first free from 18080]  pm-ingest's port (loopback; must be free)
#   PIN [""]                   e.g. "ingest=0 devbroker=1 loadgen=1": taskset CPU lists
#   SKIP_BUILD [0]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

build=${BUILD_DIR:-build-bench}
conns_list=${CONNS:-"64 128 256"}
warmup=${WARMUP:-5}
duration=${DURATION:-20}
ingest_threads=${INGEST_THREADS:-2}
loadgen_threads=${LOADGEN_THREADS:-1}
configs=${CONFIGS:-"kafka nokafka"}
run_wrk=${WRK:-1}
wrk_conns=${WRK_CONNS:-128}
port=${PORT:-}
pin=${PIN:-}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "Building (Release) in $build/ ..." >&2
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPM_WERROR=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target pm-ingest pm-ingest-nokafka pm-devbroker \
    pm-loadgen >/dev/null
fi
bin="$root/$build/bin"

# The ceiling binary must not contain the real producer, and the real one must.
nm "$bin/pm-ingest" | grep -c rd_kafka_producev >/dev/null ||
  { echo "pm-ingest does not reference rd_kafka_producev?" >&2; exit 1; }
if nm "$bin/pm-ingest-nokafka" | grep -c rd_kafka_producev >/dev/null; then
  echo "pm-ingest-nokafka contains the real Kafka producer" >&2; exit 1
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/pm-bench-ingest.XXXXXX")
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$state"' EXIT
trap 'exit 130' INT TERM

# A port nobody listens on. This matters: pm-ingest binds with SO_REUSEPORT
# (MHD_OPTION_LISTENING_ADDRESS_REUSE), so a forgotten instance on the same port would silently
# take a share of the connections (and answer them 401 with its own secrets).
listeners() { ss -Hltn "sport = :$1" 2>/dev/null | wc -l; }
if [ -z "$port" ]; then
  port=18080
  while [ "$(listeners "$port")" -gt 0 ]; do port=$((port + 1)); done
elif [ "$(listeners "$port")" -gt 0 ]; then
  echo "something already listens on port $port" >&2; exit 1
fi

# Bench-only credentials, generated per run; handed over in the environment, never argv.
secret="whsec_$(head -c 32 /dev/urandom | base64)"
token="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

pin_cmd() { # pin_cmd <role>: "taskset -c <cpus>" when PIN names the role
  local kv
  for kv in $pin; do
    if [ "${kv%%=*}" = "$1" ]; then echo "taskset -c ${kv#*=}"; return; fi
  done
}

wait_for() { # wait_for <what> <command...>
  local what=$1; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$what did not come up; logs in $state/" >&2; exit 1
}

status_kb() { # status_kb <pid> <field>: a /proc/<pid>/status value in kB
  awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# Starts pm-devbroker (kafka config only) and the server; sets $brokers and $server_pid.
start_stack() { # start_stack <config>
  local cfg=$1 binary
  devbroker_pid=""
  brokers=127.0.0.1:9 # nokafka: never contacted (the fake producer ignores the configuration)
  if [ "$cfg" = kafka ]; then
    rm -f "$state/bootstrap"
    PM_LOG_LEVEL=warn $(pin_cmd devbroker) "$bin/pm-devbroker" --bootstrap-file "$state/bootstrap" \
      >"$state/devbroker.out" 2>>"$state/devbroker.log" </dev/null &
    devbroker_pid=$!
    pids+=($devbroker_pid)
    wait_for pm-devbroker test -s "$state/bootstrap"
    brokers=$(cat "$state/bootstrap")
    binary=pm-ingest
  else
    binary=pm-ingest-nokafka
  fi
  PM_KAFKA_BROKERS=$brokers PM_LOG_LEVEL=warn PM_INGEST_LISTEN=127.0.0.1:$port \
    PM_INGEST_WEBHOOK_SECRETS=$secret PM_INGEST_BEARER_TOKENS=$token \
    PM_INGEST_THREADS=$ingest_threads \
    $(pin_cmd ingest) "$bin/$binary" 2>>"$state/ingest.log" </dev/null &
  server_pid=$!
  pids+=($server_pid)
  wait_for "$binary" curl -sf "http://127.0.0.1:$port/readyz"
  if [ "$(listeners "$port")" -ne 1 ]; then
    echo "another process listens on port $port too: results would be mixed" >&2; exit 1
  fi
}

# Sum of the high watermarks of every partition of pm.canvas.messages: the records on it.
topic_records() {
  local parts q="" p
  parts=$(kcat -b "$brokers" -L -t pm.canvas.messages 2>/dev/null |
    awk '/partition [0-9]+,/ {sub(",", "", $2); print $2}')
  for p in $parts; do q="$q -t pm.canvas.messages:$p:-1"; done
  # shellcheck disable=SC2086
  kcat -b "$brokers" -Q $q 2>/dev/null | awk '{s += $4} END {print s + 0}'
}

# Samples the server's VmRSS every 0.2 s into $state/rss.max until the server goes away.
rss_sampler() {
  local pid=$1 max=0 v
  while kill -0 "$pid" 2>/dev/null; do
    v=$(status_kb "$pid" VmRSS)
    [ -n "$v" ] && [ "$v" -gt "$max" ] && max=$v && echo "$max" >"$state/rss.max"
    sleep 0.2
  done
}

field() { # field <RESULT line> <key>
  tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'
}

cpu_ticks() { # cpu_ticks <pid>...: utime+stime of each pid ("0" for none or gone)
  local p
  for p in "$@"; do
    if [ -n "$p" ] && [ -r "/proc/$p/stat" ]; then
      awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0
    else
      echo 0
    fi
  done | tr '\n' ' '
}

busy_ticks() { # CPU ticks spent by anything (all CPUs), from /proc/stat: all but idle+iowait
  awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

ms() { awk -v us="$1" 'BEGIN {printf "%.1f", us / 1000}'; }

echo "## Machine"
echo
echo "- CPU: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(nproc) CPUs (nproc)"
echo "- RAM: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "- Kernel: $(uname -sr)"
echo "- Load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
if git rev-parse --git-dir >/dev/null 2>&1; then
  dirty=$(git status --porcelain -- services/ingest common bench/ingest | wc -l)
  echo "- Code: commit $(git rev-parse --short HEAD)$([ "$dirty" -gt 0 ] && echo " + $dirty uncommitted file(s) in services/ingest, common or bench/ingest")"
fi
echo "- Settings: PM_INGEST_THREADS=$ingest_threads, pm-loadgen threads $loadgen_threads," \
  "warm-up ${warmup} s, measured ${duration} s, body 1024 bytes, pinning: ${pin:-none}"
echo

rows=()
cpu_lines=()
declare -A best_rps
check_lines=()
# Kafka and ceiling back to back for each connection count, so that each pair (and its ratio)
# sees the same conditions on a shared machine.
for c in $conns_list; do
  for cfg in $configs; do
    echo "--- $cfg, $c connections" >&2
    start_stack "$cfg"
    rm -f "$state/rss.max"
    rss_sampler "$server_pid" &
    sampler=$!
    PM_LOADGEN_WEBHOOK_SECRET=$secret $(pin_cmd loadgen) "$bin/pm-loadgen" \
      -a "127.0.0.1:$port" -c "$c" -t "$loadgen_threads" -w "$warmup" -d "$duration" \
      -l "$cfg" >"$state/loadgen.out" &
    lg_pid=$!
    pids+=($lg_pid)
    # CPU time of each process over the measured window (from /proc/<pid>/stat, in ticks).
    # Sampled inside the window (0.5 s in from each end), while pm-loadgen surely runs.
    cpu_window=$(awk -v d="$duration" 'BEGIN {print (d > 2 ? d - 1 : d / 2)}')
    sleep "$(awk -v w="$warmup" -v d="$duration" -v c="$cpu_window" 'BEGIN {print w + (d - c) / 2}')"
    cpu0=$(cpu_ticks "$server_pid" "${devbroker_pid:-}" "$lg_pid")
    busy0=$(busy_ticks)
    sleep "$cpu_window"
    cpu1=$(cpu_ticks "$server_pid" "${devbroker_pid:-}" "$lg_pid")
    busy1=$(busy_ticks)
    wait "$lg_pid"
    out=$(cat "$state/loadgen.out")
    echo "$out" >&2
    res=$(grep '^RESULT ' <<<"$out" | tail -1)
    hwm=$(status_kb "$server_pid" VmHWM)
    rss=$(status_kb "$server_pid" VmRSS)
    if [ "$cfg" = kafka ]; then
      on_topic=$(topic_records)
      acked=$(field "$res" run_2xx)
      if [ "$acked" -le "$on_topic" ]; then verdict=OK; else verdict=FAIL; fi
      check_lines+=("$c connections: pm-loadgen counted $acked 2xx (warm-up + window + drain); pm.canvas.messages holds $on_topic records: $verdict")
      [ "$acked" -eq "$on_topic" ] || check_lines+=("  (not equal: see the ack-timeout log lines in $state/ingest.log)")
      [ "$verdict" = OK ] || { echo "acknowledged > records on the topic" >&2; exit 1; }
    fi
    stop_all
    wait "$sampler" 2>/dev/null || true
    rss_max=$(cat "$state/rss.max" 2>/dev/null || echo "$rss")
    rps=$(field "$res" rps)
    read -r s0 d0 l0 <<<"$cpu0"
    read -r s1 d1 l1 <<<"$cpu1"
    tick=$(getconf CLK_TCK)
    cpu_line=$(awk -v s="$((s1 - s0))" -v d="$((d1 - d0))" -v l="$((l1 - l0))" -v t="$tick" \
      -v w="$cpu_window" -v r="$rps" -v b="$((busy1 - busy0))" 'BEGIN {
        printf "server %.2f cores (%.0f us CPU per 2xx), devbroker %.2f, loadgen %.2f, ",
          s / t / w, (r > 0 ? s / t / w / r * 1e6 : 0), d / t / w, l / t / w
        printf "rest of the machine (other processes, softirq) %.2f", (b - s - d - l) / t / w }')
    cpu_lines+=("$cfg, $c connections: $cpu_line")
    label=$([ "$cfg" = kafka ] && echo "pm-ingest + pm-devbroker" || echo "pm-ingest-nokafka (ceiling)")
    rows+=("| $label | pm-loadgen, signed | $c | $rps | $(ms "$(field "$res" p50_us)") | $(ms "$(field "$res" p99_us)") | $(ms "$(field "$res" p999_us)") | $(ms "$(field "$res" max_us)") | $(field "$res" non2xx) | $((hwm / 1024)) MiB (sampled max VmRSS $((rss_max / 1024)) MiB) |")
    best_rps["$cfg,$c"]=$rps
  done
done

for cfg in $configs; do
  if [ "$run_wrk" = 1 ] && command -v wrk >/dev/null; then
    echo "--- $cfg, wrk $wrk_conns connections" >&2
    start_stack "$cfg"
    cat >"$state/wrk.lua" <<EOF
-- Fixed body, bearer token, no id: pm-ingest gives each request a new UUID and produces it.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[$("$bin/pm-loadgen" --print-body)]==]
EOF
    out=$(wrk -t1 -c"$wrk_conns" -d"$duration"s --latency -s "$state/wrk.lua" \
      -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/canvas/messages" 2>&1)
    echo "$out" >&2
    hwm=$(status_kb "$server_pid" VmHWM)
    if [ "$cfg" = kafka ]; then on_topic=$(topic_records); else on_topic=-; fi
    stop_all
    # wrk's Requests/sec counts every answer: acknowledged = (answers - non-2xx) / time.
    non=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    read -r answers secs < <(awk '/requests in/ {sub("s,", "", $4); print $1, $4}' <<<"$out")
    ok=$((answers - ${non:-0}))
    rps=$(awk -v a="$ok" -v s="$secs" 'BEGIN {printf "%.0f", a / s}')
    lat() { awk -v p="$1" '$1 == p {print $2}' <<<"$out"; }
    label=$([ "$cfg" = kafka ] && echo "pm-ingest + pm-devbroker" || echo "pm-ingest-nokafka (ceiling)")
    rows+=("| $label | wrk, bearer, fixed body | $wrk_conns | $rps | $(lat 50%) | $(lat 99%) | - | $(awk '/Latency/ {print $4; exit}' <<<"$out") | ${non:-0} | $((hwm / 1024)) MiB |")
    if [ "$cfg" = kafka ]; then
      # wrk stops without waiting for the requests in flight: those are on the topic too.
      if [ "$ok" -le "$on_topic" ]; then verdict=OK; else verdict=FAIL; fi
      check_lines+=("wrk: $ok 2xx answers counted; pm.canvas.messages holds $on_topic records (up to $wrk_conns more are expected: requests in flight when wrk stopped): $verdict")
      [ "$verdict" = OK ] || { echo "acknowledged > records on the topic" >&2; exit 1; }
    fi
  fi
done

echo "## Results"
echo
echo "| server | load | connections | acknowledged req/s | p50 ms | p99 ms | p99.9 ms | max ms | non-2xx | RSS (VmHWM) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
if [[ " $configs " == *" kafka "* && " $configs " == *" nokafka "* ]]; then
  echo "Ratio acknowledged req/s, Kafka / ceiling, at the same connection count:"
  for c in $conns_list; do
    awk -v k="${best_rps[kafka,$c]}" -v n="${best_rps[nokafka,$c]}" -v c="$c" \
      'BEGIN {printf "- %s connections: %s / %s = %.2f\n", c, k, n, (n > 0 ? k / n : 0)}'
  done
  echo
fi
if [ ${#cpu_lines[@]} -gt 0 ]; then
  echo "CPU use over the measured window ($(nproc) CPUs = $(nproc).00 cores in all):"
  printf -- '- %s\n' "${cpu_lines[@]}"
  echo
fi
if [ ${#check_lines[@]} -gt 0 ]; then
  echo "Records on the topic vs acknowledged:"
  printf -- '- %s\n' "${check_lines[@]}"
fi
echo
echo "Load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
