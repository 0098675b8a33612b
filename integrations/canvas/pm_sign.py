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
