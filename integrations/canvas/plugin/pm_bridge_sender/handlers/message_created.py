"""Tells pm-ingest that a message was written in Canvas (Canvas SDK plugin handler).

On every MESSAGE_CREATED event this handler POSTs the plugin-event notification (shape (c) of
docs/http-api.md)

    {"type":"MESSAGE_CREATED","target":{"id":"<message id>"},"context":{"patient":{"id":"<key>"}}}

to <PM_INGEST_URL>/v1/canvas/messages, signed with Standard Webhooks (pm_sign.py). pm-deliver
then reads the Communication through FHIR and decides whether it goes to the patient: only
staff -> patient messages that are neither drafts nor scheduled are delivered, each once.

Why shape (c) and not pm-bridge's own shape (a): the event carries exactly the two ids shape (c)
needs and nothing that would improve (a) (no occurrence time, no change record), so forwarding
the event as it is keeps the plugin free of data-model reads and of assumptions about them.

The webhook-id is msg_<message id>_<16 hex digits of SHA-256(body)> (pm_sign.webhook_id): the
same for a retry and for the event firing again for the same message, so pm-ingest answers those
as duplicates; different for every other message.

The handler never changes anything in Canvas: compute() returns no effects, and every failure
(missing configuration, pm-ingest down or refusing) is logged and swallowed. Logs carry ids,
HTTP statuses and problem types only: never message text, names, the body, the URL or the secret.
"""

import json
import re
import time

from canvas_sdk.effects import Effect
from canvas_sdk.events import EventType
from canvas_sdk.handlers.base import BaseHandler
from canvas_sdk.utils import Http
from logger import log

from pm_bridge_sender.pm_sign import secret_key, signed_headers, webhook_id

INGEST_PATH = "/v1/canvas/messages"
# Ids pm-ingest accepts (FHIR ids); anything else would only earn a 400.
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# One retry for answers that say "try again" (408, 429, 5xx) and for connection failures. The
# retry repeats the same webhook-id and the same bytes, so pm-ingest recognises it if the first
# attempt was accepted after all. Kept short: a handler should not hold the plugin runner.
MAX_ATTEMPTS = 2
RETRY_DELAY_S = 1.0
RETRY_DELAY_CAP_S = 2.0


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


def post_notification(url, secret, msg_id, body, http=None):
    """POSTs `body` (bytes) signed under `msg_id`; returns True once pm-ingest answered 2xx.

    Never raises for a network or HTTP failure: it logs the outcome (id and status only).
    """
    http = http or Http()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        response = None
        try:
            response = http.post(url, data=body, headers=signed_headers(secret, msg_id, body))
        except Exception as exc:
            outcome = "could not reach pm-ingest (%s)" % exc.__class__.__name__
            retryable = True
        else:
            status = response.status_code
            if 200 <= status < 300:
                seen = ", duplicate" if answer_member(response, "duplicate") is True else ""
                log.info("pm-bridge: notification %s accepted by pm-ingest (%d%s)"
                         % (msg_id, status, seen))
                return True
            kind = answer_member(response, "type")
            outcome = "pm-ingest answered %d" % status
            if isinstance(kind, str):
                outcome = outcome + " " + kind
            if status == 401:
                outcome = outcome + ("; check that PM_WEBHOOK_SECRET is one of pm-ingest's "
                                     "PM_INGEST_WEBHOOK_SECRETS and that the clocks agree")
            retryable = status in (408, 429) or status >= 500
        if not retryable or attempt == MAX_ATTEMPTS:
            log.error("pm-bridge: notification %s not delivered after %d attempt(s): %s"
                      % (msg_id, attempt, outcome))
            return False
        log.warning("pm-bridge: notification %s: %s; retrying" % (msg_id, outcome))
        time.sleep(retry_delay(response))
    return False


class MessageCreatedSender(BaseHandler):
    """Posts a signed MESSAGE_CREATED notification to pm-ingest; returns no effects."""

    RESPONDS_TO = EventType.Name(EventType.MESSAGE_CREATED)

    def compute(self) -> list[Effect]:
        """Sends the notification; whatever happens, Canvas gets no effects and no exception."""
        try:
            self.notify()
        except Exception as exc:
            log.error("pm-bridge: MESSAGE_CREATED not forwarded: unexpected %s"
                      % exc.__class__.__name__)
        return []

    def patient_id(self):
        """context.patient.id of the event (context.patient_id as a fallback), or None."""
        context = self.event.context if isinstance(self.event.context, dict) else {}
        patient = context.get("patient")
        if isinstance(patient, dict) and patient.get("id"):
            return str(patient.get("id"))
        if context.get("patient_id"):
            return str(context.get("patient_id"))
        return None

    def notify(self):
        """Builds, signs and posts the notification; returns True when pm-ingest accepted it."""
        secrets = self.secrets or {}
        url = str(secrets.get("PM_INGEST_URL") or "").strip()
        secret = str(secrets.get("PM_WEBHOOK_SECRET") or "").strip()
        missing = [name for name, value in (("PM_INGEST_URL", url), ("PM_WEBHOOK_SECRET", secret))
                   if not value]
        if missing:
            log.warning("pm-bridge: %s not set in the plugin's secrets; no notification sent"
                        % " and ".join(missing))
            return False
        try:
            secret_key(secret)
        except ValueError as exc:
            log.error("pm-bridge: PM_WEBHOOK_SECRET: %s; no notification sent" % exc)
            return False

        message_id = str(self.event.target.id or "")
        patient_id = self.patient_id()
        if not FHIR_ID.match(message_id) or not patient_id or not FHIR_ID.match(patient_id):
            log.warning("pm-bridge: MESSAGE_CREATED without a usable message id and patient id; "
                        "no notification sent")
            return False

        # Compact JSON, serialised once: these exact bytes are signed and sent, and they are the
        # same for every retry and every re-fired event of this message.
        body = json.dumps(
            {"type": "MESSAGE_CREATED", "target": {"id": message_id},
             "context": {"patient": {"id": patient_id}}},
            separators=(",", ":")).encode("utf-8")
        return post_notification(ingest_url(url), secret, webhook_id(message_id, body), body)
