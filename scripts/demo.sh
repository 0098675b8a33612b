#!/usr/bin/env bash
# Sends a staff message notification, a patient reply and a check-in through the running dev stack
# (scripts/dev.sh) and shows where each one ended up: Kafka, pm-sandbox's webhook/Twilio/SendGrid,
# and the resources written back into "Canvas" (pm-sandbox).
# Usage: scripts/demo.sh      (with scripts/dev.sh running in another terminal)
# Environment: PM_DEV_STATE (the dev stack's state directory, default .dev)
set -euo pipefail
cd "$(dirname "$0")/.."
state=${PM_DEV_STATE:-.dev}/env
[ -f "$state" ] || { echo "Start the stack first: scripts/dev.sh" >&2; exit 1; }
# shellcheck disable=SC1090
. "$state"
command -v jq >/dev/null || scripts/deps.sh jq

patient=b3084f7e884e4af2b7e23b1dca494abd
ingest="http://127.0.0.1:$INGEST_PORT"
sandbox="http://127.0.0.1:$SANDBOX_PORT"

# Standard Webhooks signature, the way Canvas-side senders sign (docs/http-api.md).
post_signed() { # post_signed <path> <body>
  local id ts key sig
  id="demo_$(date +%s%N)"
  ts=$(date +%s)
  key=$(printf '%s' "${WEBHOOK_SECRET#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \n')
  sig=$(printf '%s' "$id.$ts.$2" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -binary | base64)
  curl -sS "$ingest$1" -H 'Content-Type: application/json' -H "webhook-id: $id" \
    -H "webhook-timestamp: $ts" -H "webhook-signature: v1,$sig" -d "$2"
  echo
}

curl -sS -X DELETE "$sandbox/_sandbox/requests" >/dev/null

echo "1. A staff message notification, as the Canvas plugin sends it (signed):"
post_signed /v1/canvas/messages \
  "{\"type\":\"MESSAGE_CREATED\",\"target\":{\"id\":\"8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b\"},\"context\":{\"patient\":{\"id\":\"$patient\"}}}"

echo "2. A patient reply from the patient app (bearer token):"
curl -sS "$ingest/v1/patient/replies" -H "Authorization: Bearer $BEARER_TOKEN" \
  -H 'Content-Type: application/json' \
  -d "{\"patient_id\":\"$patient\",\"text\":\"Thanks, see you Tuesday!\",\"recipient\":{\"email\":\"staff@clinic.example\"}}"
echo

echo "3. A check-in in the simple form:"
curl -sS "$ingest/v1/patient/questionnaire-responses" -H "Authorization: Bearer $BEARER_TOKEN" \
  -H 'Content-Type: application/json' \
  -d "{\"patient_id\":\"$patient\",\"questionnaire\":{\"code\":\"404684003\"},\"answers\":[{\"question_code\":\"228448000\",\"value_code\":\"LA33-6\"},{\"question_code\":\"EXACT\",\"value_codes\":[\"EXACT_WALK\",\"EXACT_SWIM\"]},{\"question_code\":\"EXTYPE\",\"value_string\":\"Morning walks\"}]}"
echo

echo
echo "Waiting for pm-deliver ..."
for _ in $(seq 1 100); do
  n=$(curl -sS "$sandbox/_sandbox/requests?method=POST" | jq '[.requests[] | select(.target != "token")] | length')
  [ "$n" -ge 6 ] && break
  sleep 0.2
done

echo
echo "== At the clinic's webhook receiver (pm-sandbox /webhook):"
curl -sS "$sandbox/_sandbox/requests?target=webhook" |
  jq -r '.requests[] | "   signature valid: \(.signature_valid)\n   body: \(.body)"'
echo "== Sent by SMS (Twilio stand-in) and email (SendGrid stand-in):"
curl -sS "$sandbox/_sandbox/requests?target=twilio" | jq -r '.requests[] | "   twilio   \(.status)  \(.body | .[0:90])"'
curl -sS "$sandbox/_sandbox/requests?target=sendgrid" | jq -r '.requests[] | "   sendgrid \(.status)  \(.body | fromjson | .personalizations[0].to[0].email)"'
echo "== Written back into Canvas (pm-sandbox):"
curl -sS "$sandbox/_sandbox/requests?target=fhir&method=POST" |
  jq -r '.requests[] | "   \(.path) -> \(.status)\n   \(.body)"'
echo "== Outcomes on pm.deliveries:"
kcat -C -b "$PM_KAFKA_BROKERS" -t pm.deliveries -o -20 -e -q -f '%s\n' 2>/dev/null |
  jq -r '.data | "   \(.kind) \(.channel) \(.outcome) \(.provider_id // "")"' | tail -8
echo
echo "Anything that could not be delivered is on pm.dlq:"
echo "   kcat -C -b $PM_KAFKA_BROKERS -t pm.dlq -e -f '%k %h\\n'"
