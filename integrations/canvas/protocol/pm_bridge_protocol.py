"""pm-bridge sender for clinics still on the Canvas workflow kit (a notification protocol).

Canvas runs this protocol on every CHANGE_TYPE.MESSAGE change. When the change is the creation of
a message transmission, it POSTs pm-bridge's own notification (shape (a) of docs/http-api.md)

    {"communication_id": "<FHIR Communication id>", "patient_id": "<patient key>",
     "occurred_at": "<when the transmission was created>", "change": <field_changes, untouched>}

to <PM_INGEST_URL>/v1/canvas/messages, signed with Standard Webhooks. Settings (Settings >
Protocol settings, /admin/api/protocolsetting/): PM_INGEST_URL and PM_WEBHOOK_SECRET.

Which changes are sent: only `messagetransmission` records being created. Transmissions exist
only for staff -> patient messages, one per channel, and are created when the message is sent (so
not for a draft until it goes out: an assumption, see the README); a message from the patient,
which pm-deliver would skip anyway, has none. Updates of a transmission (delivered/failed flags)
fire again but tell pm-deliver nothing new: sending them would be safe, since pm-deliver delivers
each Communication once, but only adds load. A message sent on two channels still gives two
notifications; that is expected and harmless.

Ids and retries: the body is a pure function of field_changes (occurred_at is taken from the
change, never from the clock; without a usable time it is left out and pm-ingest stamps the time
of receipt), and the webhook-id is msg_<communication id>_<16 hex digits of SHA-256(body)>. A
retry, or Canvas running the protocol again for the same change, sends the same id and bytes and
pm-ingest answers "duplicate"; any other change gets another id.

HTTP goes through `requests` (on the kit's allowed list) rather than the kit's send_notification:
it takes the raw bytes that were signed and a timeout, which a hung pm-ingest makes necessary.

The protocol never recommends anything and never raises: every outcome is one line in the
protocol result's narrative (ids and HTTP statuses only, no message content). The workflow-kit
sandbox has no logging module, so the narrative is where failures show.

Assumptions where the kit's documentation is thin (see integrations/canvas/README.md):
* self.patient.messages.filter(id=<message db id>) returns the message records, dicts with
  "externallyExposableId" (the FHIR Communication id), as in Canvas's own message notification
  examples; if that finds nothing, field_changes["external_id"] is sent instead.
* self.patient.patient["key"] is the patient's FHIR id.
* the sandbox refuses `import base64` (it is not on the allowed list), which pm_sign survives.
"""

import json
import re
import time

import requests

from canvas_workflow_kit.constants import CHANGE_TYPE
from canvas_workflow_kit.protocol import (STATUS_NOT_APPLICABLE, ClinicalQualityMeasure,
                                          ProtocolResult)

# --- BEGIN pm_sign.py (written by vendor_pm_sign.py: edit integrations/canvas/pm_sign.py) ---
"""Standard Webhooks signing for the pm-bridge senders that run inside Canvas.

This file is the one source of the signing code. Canvas installs a plugin or a protocol as a
self-contained unit, so each sender carries its own copy, written by vendor_pm_sign.py:
plugin/pm_bridge_sender/pm_sign.py (a module of the plugin package) and the marked block inside
protocol/pm_bridge_protocol.py (a workflow-kit protocol is uploaded as one file). Edit this file,
then run `python3 integrations/canvas/vendor_pm_sign.py`; the tests fail while a copy differs.

Contract (the one pm-ingest verifies, docs/http-api.md "Standard Webhooks signature"):
    key       = base64 decode of the secret after its optional "whsec_" prefix
    signature = "v1," + base64(HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<raw body>"))

The code keeps to what both Canvas sandboxes (RestrictedPython) run: no names with a leading
underscore, no bytearray/setattr/type(), no augmented assignment to items or attributes, no
annotations newer than Python 3.7. The workflow-kit sandbox does not allow `import base64`, so
base64 falls back to a small pure-Python codec there; it is not cryptography (HMAC-SHA256 comes
from hmac/hashlib, which both sandboxes allow) and the tests check it against the standard library.
"""

import hashlib
import hmac
import time

try:
    import base64 as stdlib_base64
except Exception:  # ImportError from a sandbox that does not allow the module
    stdlib_base64 = None

SECRET_PREFIX = "whsec_"
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
BAD_SECRET = ("webhook secret is not valid: expected whsec_ followed by padded standard base64 "
              "of at least one byte")


def b64encode_pure(data):
    """Standard base64 with padding of the bytes `data`, as text; pure Python."""
    out = []
    for start in range(0, len(data), 3):
        chunk = data[start:start + 3]
        b1 = chunk[1] if len(chunk) > 1 else 0
        b2 = chunk[2] if len(chunk) > 2 else 0
        triple = (chunk[0] << 16) | (b1 << 8) | b2
        out.append(B64_ALPHABET[(triple >> 18) & 63])
        out.append(B64_ALPHABET[(triple >> 12) & 63])
        out.append(B64_ALPHABET[(triple >> 6) & 63] if len(chunk) > 1 else "=")
        out.append(B64_ALPHABET[triple & 63] if len(chunk) > 2 else "=")
    return "".join(out)


def b64decode_pure(text):
    """Bytes of the padded standard base64 `text`; raises ValueError on anything else.

    Only the alphabet and the padding are checked here; b64decode_canonical rejects the
    non-canonical spellings (stray bits in the last character) by encoding the result again.
    """
    if len(text) % 4 != 0:
        raise ValueError("base64 length is not a multiple of 4")
    values = []
    pad = 0
    for index in range(len(text)):
        char = text[index]
        if char == "=":
            if index < len(text) - 2:
                raise ValueError("base64 padding in the middle")
            pad = pad + 1
            values.append(0)
        else:
            position = B64_ALPHABET.find(char)
            if position < 0 or pad:
                raise ValueError("not a base64 character")
            values.append(position)
    out = []
    for start in range(0, len(values), 4):
        quad = ((values[start] << 18) | (values[start + 1] << 12) |
                (values[start + 2] << 6) | values[start + 3])
        out.append((quad >> 16) & 255)
        out.append((quad >> 8) & 255)
        out.append(quad & 255)
    return bytes(out[:len(out) - pad])


def b64encode(data):
    """Standard base64 with padding of `data` (bytes), as text."""
    if stdlib_base64 is not None:
        return stdlib_base64.b64encode(data).decode("ascii")
    return b64encode_pure(data)


def b64decode_canonical(text):
    """Bytes of `text` if it is canonical padded standard base64, else raises ValueError."""
    try:
        if stdlib_base64 is not None:
            data = stdlib_base64.b64decode(text.encode("ascii"), validate=True)
        else:
            data = b64decode_pure(text)
    except Exception:  # binascii.Error, UnicodeEncodeError: both mean "not base64"
        data = None
    if data is None or b64encode(data) != text:
        raise ValueError("not canonical base64")
    return data


def secret_key(secret):
    """The HMAC key of a "whsec_<base64>" secret (the prefix may be left out).

    Raises ValueError with a fixed text: neither the secret nor a part of it ever reaches an
    error message, so callers may log the message.
    """
    text = secret.strip() if isinstance(secret, str) else ""
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX):]
    key = None
    if text:
        try:
            key = b64decode_canonical(text)
        except ValueError:
            key = None
    if not key:
        raise ValueError(BAD_SECRET)
    return key


def sign(secret, msg_id, timestamp, body):
    """The webhook-signature header value "v1,<base64>" for one request.

    secret: "whsec_..." text; msg_id: the webhook-id; timestamp: unix seconds (int or digits);
    body: the raw request body, bytes (text is encoded as UTF-8). The body is signed byte for
    byte: send exactly these bytes. Raises ValueError for a malformed secret.
    """
    key = secret_key(secret)
    if isinstance(body, str):
        body = body.encode("utf-8")
    signed = ("%s.%s." % (msg_id, timestamp)).encode("utf-8") + body
    return "v1," + b64encode(hmac.new(key, signed, hashlib.sha256).digest())


def webhook_id(subject_id, body):
    """A webhook-id that is a function of the notification: "msg_<subject id>_<16 hex>".

    The hex digits are the start of SHA-256(body). A retry of the same notification (same bytes)
    therefore carries the same id and pm-ingest answers it as a duplicate, while any other
    notification, about another message or another change of the same one, gets another id;
    pm-ingest's 422 for "same id, different body" cannot happen.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    return "msg_%s_%s" % (subject_id, hashlib.sha256(body).hexdigest()[:16])


def signed_headers(secret, msg_id, body, timestamp=None):
    """Headers of one signed POST of `body`: Content-Type and the three webhook-* headers.

    timestamp defaults to now; build the headers again for each attempt, so that a retry after a
    pause is not rejected for a stale timestamp (pm-ingest allows 300 s of skew).
    """
    if timestamp is None:
        timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
# --- END pm_sign.py ---

INGEST_PATH = "/v1/canvas/messages"
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
# pm-ingest answers within its ack timeout (10 s by default); wait a little longer than that.
TIMEOUT_S = 15
MAX_ATTEMPTS = 2
RETRY_DELAY_S = 1.0
RETRY_DELAY_CAP_S = 2.0


def setting(settings, name):
    """The protocol setting `name` as stripped text, "" when it is not set."""
    try:
        value = settings.get(name) if hasattr(settings, "get") else settings[name]
    except Exception:
        value = None
    return str(value).strip() if value else ""


def new_value(change_pair):
    """The new value of a field_changes [old, new] pair, or None."""
    if isinstance(change_pair, (list, tuple)) and len(change_pair) == 2:
        return change_pair[1]
    return None


def ingest_url(base):
    """<base>/v1/canvas/messages; a base that already ends with the route is used as it is."""
    base = base.rstrip("/")
    return base if base.endswith(INGEST_PATH) else base + INGEST_PATH


def retry_delay(response):
    """Seconds to wait before the retry: Retry-After when it is whole seconds, capped."""
    delay = RETRY_DELAY_S
    value = response.headers.get("Retry-After") if response is not None else None
    if value is not None and str(value).strip().isdigit():
        delay = float(str(value).strip())
    return min(delay, RETRY_DELAY_CAP_S)


def answer_member(response, name):
    """Member `name` of pm-ingest's JSON answer, or None (answers carry ids and types, no data)."""
    try:
        answer = response.json()
    except Exception:
        return None
    return answer.get(name) if isinstance(answer, dict) else None


def post_notification(url, secret, msg_id, body):
    """POSTs `body` (bytes) signed under `msg_id`; returns one line saying how it went.

    Never raises for a network or HTTP failure. A retry resends the same id and bytes with a
    fresh timestamp and signature.
    """
    outcome = ""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        response = None
        try:
            response = requests.post(url, data=body, timeout=TIMEOUT_S,
                                     headers=signed_headers(secret, msg_id, body))
        except Exception:
            outcome = "could not reach pm-ingest"
            retryable = True
        else:
            status = response.status_code
            if 200 <= status < 300:
                seen = ", duplicate" if answer_member(response, "duplicate") is True else ""
                return "pm-bridge: notification %s accepted by pm-ingest (%d%s)" % (
                    msg_id, status, seen)
            kind = answer_member(response, "type")
            outcome = "pm-ingest answered %d" % status
            if isinstance(kind, str):
                outcome = outcome + " " + kind
            if status == 401:
                outcome = outcome + ("; check that PM_WEBHOOK_SECRET is one of pm-ingest's "
                                     "PM_INGEST_WEBHOOK_SECRETS and that the clocks agree")
            retryable = status in (408, 429) or status >= 500
        if not retryable or attempt == MAX_ATTEMPTS:
            break
        time.sleep(retry_delay(response))
    return "pm-bridge: notification %s not delivered after %d attempt(s): %s" % (
        msg_id, attempt, outcome)


class PmBridgeMessageNotification(ClinicalQualityMeasure):
    """Notifies pm-ingest of every staff message sent to a patient."""

    class Meta:
        title = "pm-bridge message notification"
        version = "1.0.0"
        description = ("Posts a signed notification to pm-ingest (pm-bridge) when a message to a "
                       "patient is sent, so the clinic's bridge delivers it.")
        types = ["Notification"]
        compute_on_change_types = [CHANGE_TYPE.MESSAGE]
        notification_only = True

    def compute_results(self):
        result = ProtocolResult()
        result.status = STATUS_NOT_APPLICABLE
        try:
            note = self.notify()
        except Exception:
            note = "pm-bridge: unexpected error; no notification sent"
        if note:
            result.add_narrative(note)
        return result

    def communication_id(self, change):
        """The FHIR id of the message the transmission belongs to, or None.

        The message record's externallyExposableId when the lookup finds it, else what
        field_changes gives (external_id).
        """
        message_dbid = new_value((change.get("fields") or {}).get("message_id"))
        if message_dbid is not None:
            try:
                found = self.patient.messages.filter(id=message_dbid)
                records = found.records if hasattr(found, "records") else list(found)
                exposed = records[-1].get("externallyExposableId") if records else None
            except Exception:
                exposed = None
            if exposed:
                return str(exposed)
        external = change.get("external_id")
        return str(external) if external else None

    def patient_id(self):
        """The patient's key (FHIR id), or None."""
        try:
            key = self.patient.patient["key"]
        except Exception:
            key = None
        return str(key) if key else None

    def notify(self):
        """Sends the notification for a created transmission; returns the narrative or None."""
        change = self.field_changes if isinstance(self.field_changes, dict) else {}
        if change.get("model_name") != "messagetransmission" or not change.get("created"):
            return None  # not a message being sent: nothing to tell pm-ingest

        url = setting(self.settings, "PM_INGEST_URL")
        secret = setting(self.settings, "PM_WEBHOOK_SECRET")
        missing = [name for name, value in (("PM_INGEST_URL", url), ("PM_WEBHOOK_SECRET", secret))
                   if not value]
        if missing:
            return ("pm-bridge: %s not set in Protocol settings; no notification sent"
                    % " and ".join(missing))
        try:
            secret_key(secret)
        except ValueError as exc:
            return "pm-bridge: PM_WEBHOOK_SECRET: %s; no notification sent" % exc

        communication_id = self.communication_id(change)
        patient_id = self.patient_id()
        if (not communication_id or not FHIR_ID.match(communication_id) or not patient_id
                or not FHIR_ID.match(patient_id)):
            return ("pm-bridge: message transmission without a usable Communication id and "
                    "patient id; no notification sent")

        members = [("communication_id", communication_id), ("patient_id", patient_id)]
        fields = change.get("fields") or {}
        for name in ("created", "modified"):
            when = new_value(fields.get(name))
            if isinstance(when, str) and RFC3339.match(when):
                members.append(("occurred_at", when))
                break
        members.append(("change", change))
        # Serialised once: these exact bytes are signed, sent, and resent on a retry.
        body = json.dumps(dict(members), separators=(",", ":"), default=str).encode("utf-8")
        return post_notification(ingest_url(url), secret, webhook_id(communication_id, body), body)
