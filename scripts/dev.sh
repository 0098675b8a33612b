#!/usr/bin/env bash
# Builds everything and runs the whole system on its embedded defaults: pm-devbroker as Kafka,
# pm-sandbox as Canvas/Twilio/SendGrid/clinic webhook, pm-ingest and pm-deliver. Ctrl-C stops all.
# Usage: scripts/dev.sh
# Environment: BUILD_DIR (default build), PM_DEV_INGEST_PORT (8080), PM_DEV_DELIVER_PORT (8081),
#              PM_DEV_SANDBOX_PORT (8090), PM_LOG_LEVEL (info), PM_DEV_STATE (logs and settings,
#              default .dev), PM_DEV_SKIP_BUILD=1 (run what BUILD_DIR holds, as the tests do).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/deps.sh

build=${BUILD_DIR:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
if [ "${PM_DEV_SKIP_BUILD:-0}" != 1 ]; then
  echo "Building in $build/ ..."
  cmake -S . -B "$build" >/dev/null
  cmake --build "$build" -j"$(nproc)" >/dev/null
fi
bin="$build/bin"

state=${PM_DEV_STATE:-$root/.dev}
case $state in /*) ;; *) state="$root/$state" ;; esac
shown=${state#"$root"/} # as the messages below show it: .dev unless PM_DEV_STATE says otherwise
mkdir -p "$state"
rm -f "$state"/*.log "$state/bootstrap"

ingest_port=${PM_DEV_INGEST_PORT:-8080}
deliver_port=${PM_DEV_DELIVER_PORT:-8081}
sandbox_port=${PM_DEV_SANDBOX_PORT:-8090}
# Development credentials only: real deployments set their own (see docs/operations.md).
dev_token="dev-token-0123456789abcdef"
dev_secret="whsec_ZGV2LXdlYmhvb2stc2VjcmV0LTAxMjM0NTY3ODk="
export PM_LOG_LEVEL=${PM_LOG_LEVEL:-info}

# Each service runs in a session of its own (setsid), so Ctrl-C reaches only this script, which
# stops them in reverse order: pm-deliver drains and commits while pm-devbroker is still up.
pids=()
stop_all() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo; echo "Stopping ..."
    # In reverse order of start: the services drain and commit while Kafka is still there.
    for (( i=${#pids[@]}-1; i>=0; i-- )); do
      kill -TERM "${pids[$i]}" 2>/dev/null || true
      wait "${pids[$i]}" 2>/dev/null || true
    done
  fi
  echo "Stopped. Logs are in $state/."
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

wait_for() { # wait_for <what> <command...>
  local what=$1; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$what did not come up; see $state/" >&2; exit 1
}

setsid "$bin/pm-devbroker" --bootstrap-file "$state/bootstrap" >"$state/devbroker.out" \
  2>"$state/devbroker.log" </dev/null &
pids+=($!)
wait_for pm-devbroker test -s "$state/bootstrap"
brokers=$(cat "$state/bootstrap")
export PM_KAFKA_BROKERS=$brokers
# Consumers restarted against the mock cluster wait session.timeout.ms - 1 s before it lets them
# back into their group (44 s with the default); 6 s keeps restarts quick in development.
cat >"$state/kafka.properties" <<PROPS
# pm-devbroker only: quick consumer-group restarts (see pm-devbroker --help)
session.timeout.ms=6000
heartbeat.interval.ms=1000
PROPS

have_sandbox=0
if [ -x "$bin/pm-sandbox" ]; then
  PM_SANDBOX_LISTEN=127.0.0.1:$sandbox_port PM_SANDBOX_WEBHOOK_SECRET=$dev_secret \
    setsid "$bin/pm-sandbox" >"$state/sandbox.out" 2>"$state/sandbox.log" </dev/null &
  pids+=($!)
  wait_for pm-sandbox curl -sf "http://127.0.0.1:$sandbox_port/_sandbox/stats"
  have_sandbox=1
fi

PM_INGEST_LISTEN=127.0.0.1:$ingest_port PM_INGEST_BEARER_TOKENS=$dev_token \
  PM_INGEST_WEBHOOK_SECRETS=$dev_secret \
  setsid "$bin/pm-ingest" 2>"$state/ingest.log" </dev/null &
pids+=($!)
wait_for pm-ingest curl -sf "http://127.0.0.1:$ingest_port/readyz"

have_deliver=0
if [ -x "$bin/pm-deliver" ] && [ $have_sandbox = 1 ]; then
  sb="http://127.0.0.1:$sandbox_port"
  PM_KAFKA_CONFIG_FILE="$state/kafka.properties" \
    PM_DELIVER_LISTEN=127.0.0.1:$deliver_port PM_CANVAS_FHIR_URL=$sb/fhir \
    PM_CANVAS_TOKEN_URL=$sb/auth/token/ PM_CANVAS_CLIENT_ID=sandbox-client \
    PM_CANVAS_CLIENT_SECRET=sandbox-secret PM_DELIVER_CHANNELS=webhook,sms,email \
    PM_WEBHOOK_URL=$sb/webhook PM_WEBHOOK_SECRET=$dev_secret \
    PM_TWILIO_API_URL=$sb/twilio PM_TWILIO_ACCOUNT_SID=AC5a4db0c55a4db0c55a4db0c55a4db0c5 PM_TWILIO_AUTH_TOKEN=sandbox-twilio-token \
    PM_TWILIO_FROM=+15550001111 PM_SENDGRID_API_URL=$sb/sendgrid PM_SENDGRID_API_KEY=SG.sandbox \
    PM_SENDGRID_FROM=clinic@example.org PM_EMAIL_SUBJECT="A message from your clinic" \
    PM_DEFAULT_PRACTITIONER_ID=4150cd20de8a470aa570a852859ac87e PM_DELIVER_CONTACT_CATEGORIES=ARI \
    setsid "$bin/pm-deliver" 2>"$state/deliver.log" </dev/null &
  pids+=($!)
  wait_for pm-deliver curl -sf "http://127.0.0.1:$deliver_port/healthz"
  have_deliver=1
fi

cat >"$state/env" <<ENV
PM_KAFKA_BROKERS=$brokers
PM_KAFKA_CONFIG_FILE='$state/kafka.properties'
INGEST_PORT=$ingest_port
DELIVER_PORT=$deliver_port
SANDBOX_PORT=$sandbox_port
BEARER_TOKEN=$dev_token
WEBHOOK_SECRET=$dev_secret
ENV

cat <<MSG

The patient messaging bridge is running (development settings):
  Kafka (pm-devbroker)   $brokers            log: $shown/devbroker.log
  pm-ingest              http://127.0.0.1:$ingest_port   log: $shown/ingest.log
MSG
[ $have_sandbox = 1 ] && echo "  pm-sandbox             http://127.0.0.1:$sandbox_port   log: $shown/sandbox.log"
[ $have_deliver = 1 ] && echo "  pm-deliver             http://127.0.0.1:$deliver_port   log: $shown/deliver.log"
cat <<MSG

Dev credentials: bearer token $dev_token
                 webhook secret $dev_secret

Send a first message notification (in another terminal):

  curl -sS http://127.0.0.1:$ingest_port/v1/canvas/messages \\
    -H 'Authorization: Bearer $dev_token' -H 'Content-Type: application/json' \\
    -d '{"communication_id": "8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b", "patient_id": "b3084f7e884e4af2b7e23b1dca494abd"}'

and read it back from Kafka:

  kcat -C -b $brokers -t pm.canvas.messages -e -f '%k %h\\n%s\\n'

Or run the demo: a staff message, a reply and a check-in through the whole path, and where each
one ended up (webhook, SMS, email, the chart):

  scripts/demo.sh

Your own consumer (docs/consumer-runtime.md) against this broker: PM_KAFKA_BROKERS=$brokers
and PM_KAFKA_CONFIG_FILE=$shown/kafka.properties (quick group restarts on the mock cluster).

Press Ctrl-C to stop everything.
MSG

# Stop everything as soon as one of the services exits on its own.
set +e
wait -n "${pids[@]}"
echo "A service exited; see the logs in $state/." >&2
