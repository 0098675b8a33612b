"""Tests of the Canvas-side senders: the SDK plugin handler and the workflow-kit protocol.

Each sender runs against stand-ins of the Canvas classes (canvas_stubs.py) and posts over real
HTTP to a local server standing in for pm-ingest; the test then checks the exact request (path,
headers, body) and verifies the signature the way pm-ingest does (HMAC recomputed, canonical
base64, timestamp within 300 s). Standard library only:

    python3 -m unittest discover -s integrations/canvas/tests -v
"""

import base64
import hashlib
import hmac
import importlib.util
import json
import os
import random
import socket
import sys
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import canvas_stubs

HERE = os.path.dirname(os.path.abspath(__file__))
CANVAS = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(CANVAS))
VECTORS_FILE = os.path.join(REPO, "tests", "testdata", "webhook-signatures.json")

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tMDAwMQ=="
MESSAGE_ID = "6e2f9a1c-3b7d-4c5e-9f8a-1d2b3c4e5f60"
PATIENT_KEY = "7c4e1f0a9b2d4e6f8a3c5b7d9e1f2a4c"
# PHI: must never appear in a sender's logs or narratives.
MESSAGE_TEXT = "Your biopsy results are in, Jane"
PHONE = "5554320555"


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SAVED_MODULES = canvas_stubs.install()
sys.path.insert(0, os.path.join(CANVAS, "plugin"))
sys.path.insert(0, os.path.join(CANVAS, "protocol"))
import pm_bridge_protocol  # noqa: E402
import pm_bridge_sender.pm_sign as plugin_pm_sign  # noqa: E402
from pm_bridge_sender.handlers import message_created  # noqa: E402

canvas_stubs.uninstall(SAVED_MODULES)  # the senders keep what they imported
source_pm_sign = load_module("pm_sign_source", os.path.join(CANVAS, "pm_sign.py"))
vendor = load_module("vendor_pm_sign", os.path.join(CANVAS, "vendor_pm_sign.py"))

with open(VECTORS_FILE, encoding="utf-8") as f:
    VECTORS = json.load(f)["vectors"]


def pm_ingest_verifies(secrets, headers, body, now):
    """pm-ingest's acceptance rule (docs/http-api.md), written independently of pm_sign."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        return False
    if not (1 <= len(msg_id) <= 200) or any(not ("!" <= c <= "~") for c in msg_id):
        return False
    if not timestamp.isdigit() or len(timestamp) > 19 or abs(int(timestamp) - now) > 300:
        return False
    for secret in secrets:
        key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret,
                               validate=True)
        mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        expected = base64.b64encode(mac).decode()
        for part in signatures.split(" "):
            version, _, value = part.partition(",")
            if version == "v1" and hmac.compare_digest(value, expected):
                return True
    return False


class IngestStub:
    """A local HTTP server standing in for pm-ingest: records requests, answers from a script."""

    def __init__(self):
        self.requests = []
        self.answers = []  # (status, headers, body) consumed in order; then 202
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                stub.requests.append({
                    "method": self.command, "path": self.path, "body": body,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "header_count": {k.lower(): len(self.headers.get_all(k)) for k in self.headers},
                    "received_at": int(time.time()),
                })
                if stub.answers:
                    status, headers, payload = stub.answers.pop(0)
                else:
                    status, headers = 202, {"Content-Type": "application/json"}
                    payload = json.dumps({"id": self.headers.get("webhook-id"),
                                          "topic": "pm.canvas.messages", "partition": 0,
                                          "offset": len(stub.requests)}).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.02})
        self.thread.start()

    def answer(self, status, problem_type=None, retry_after=None):
        headers = {"Content-Type": "application/problem+json"}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        problem = {"type": problem_type or "urn:pm:problem:test", "status": status,
                   "title": "test", "detail": "scripted by the test"}
        self.answers.append((status, headers, json.dumps(problem).encode()))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def refused_url():
    """An http URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return "http://127.0.0.1:%d" % port


class SignerTest(unittest.TestCase):
    """pm_sign, in its source and in both vendored copies."""

    COPIES = (("source", source_pm_sign), ("plugin copy", plugin_pm_sign),
              ("protocol block", pm_bridge_protocol))

    def each_copy_and_codec(self):
        """Yields (label, module) for every copy, once with stdlib base64, once without."""
        for label, mod in self.COPIES:
            saved = mod.stdlib_base64
            try:
                mod.stdlib_base64 = base64
                yield label + " (stdlib base64)", mod
                mod.stdlib_base64 = None  # as in the workflow-kit sandbox
                yield label + " (pure-Python base64)", mod
            finally:
                mod.stdlib_base64 = saved

    def test_published_vector(self):
        v = VECTORS[0]
        self.assertTrue(v["valid"])
        for label, mod in self.each_copy_and_codec():
            with self.subTest(label):
                self.assertEqual(mod.sign(v["secrets"][0], v["id"], v["timestamp"], v["body"]),
                                 v["signature"])
                self.assertEqual(mod.sign(v["secrets"][0], v["id"], str(v["timestamp"]),
                                          v["body"].encode()), v["signature"])

    def test_second_secret_of_the_rotation_vector(self):
        v = VECTORS[2]
        mod = source_pm_sign
        self.assertEqual(mod.sign(v["secrets"][1], v["id"], v["timestamp"], v["body"]),
                         v["signature"])
        self.assertNotEqual(mod.sign(v["secrets"][0], v["id"], v["timestamp"], v["body"]),
                            v["signature"])

    def test_verifier_follows_every_vector(self):
        # Guards the test's own verifier: it must accept exactly the vectors pm-ingest accepts.
        for v in VECTORS:
            with self.subTest(v["name"]):
                headers = {"webhook-id": v["id"], "webhook-timestamp": str(v["timestamp"]),
                           "webhook-signature": v["signature"]}
                self.assertEqual(pm_ingest_verifies(v["secrets"], headers, v["body"].encode(),
                                                    v["now"]), v["valid"])

    def test_pure_base64_matches_the_standard_library(self):
        rng = random.Random(7)
        for length in list(range(0, 70)) + [255, 256, 1000]:
            data = bytes(rng.randrange(256) for _ in range(length))
            text = base64.b64encode(data).decode()
            self.assertEqual(source_pm_sign.b64encode_pure(data), text)
            self.assertEqual(source_pm_sign.b64decode_pure(text), data)

    def test_malformed_secrets_are_refused_without_echoing_them(self):
        bad = ["", "whsec_", "whsec_not base64!", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
               "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx=", "whsec_YQ=", "whsec_YR==",
               "whsec_=YQ=", None, 12]
        for label, mod in self.each_copy_and_codec():
            for secret in bad:
                with self.subTest(label=label, secret=secret):
                    with self.assertRaises(ValueError) as caught:
                        mod.secret_key(secret)
                    if isinstance(secret, str) and len(secret) > 6:
                        self.assertNotIn(secret[6:], str(caught.exception))
            with self.subTest(label=label, secret="without prefix"):
                self.assertEqual(mod.secret_key(SECRET[6:]), mod.secret_key(SECRET))

    def test_webhook_id_is_a_function_of_the_body(self):
        a = source_pm_sign.webhook_id(MESSAGE_ID, b'{"a":1}')
        self.assertEqual(a, source_pm_sign.webhook_id(MESSAGE_ID, '{"a":1}'))
        self.assertNotEqual(a, source_pm_sign.webhook_id(MESSAGE_ID, b'{"a":2}'))
        self.assertTrue(a.startswith("msg_" + MESSAGE_ID + "_"))
        self.assertEqual(len(a), len("msg_" + MESSAGE_ID + "_") + 16)

    def test_vendored_copies_are_up_to_date(self):
        self.assertEqual(vendor.stale_files(), [],
                         "run python3 integrations/canvas/vendor_pm_sign.py")


class SandboxRulesTest(unittest.TestCase):
    """The senders use only what Canvas's RestrictedPython sandboxes run.

    Sources of the rules: canvas-plugins plugin_runner/sandbox.py (ALLOWED_MODULES) and the
    `canvas validate` static lint (no setattr/delattr/bytearray/type(), no augmented assignment
    to an item or attribute); the workflow-kit page "Sandboxing and Allowed Imports" (allowed
    modules and builtins: no base64, no logging, no getattr); RestrictedPython refuses names and
    attributes starting with "_" (the plugin sandbox only warns, and Canvas's docs suggest
    x.__class__.__name__ there).
    """

    PLUGIN_IMPORTS = {"json", "re", "time", "hashlib", "hmac", "base64", "logger",
                      "canvas_sdk.effects", "canvas_sdk.events", "canvas_sdk.handlers.base",
                      "canvas_sdk.utils", "pm_bridge_sender.pm_sign"}
    PROTOCOL_IMPORTS = {"json", "re", "time", "hashlib", "hmac", "requests",
                        "canvas_workflow_kit.constants", "canvas_workflow_kit.protocol"}
    BLOCKED_CALLS = {"setattr", "delattr", "bytearray", "type", "getattr", "print", "eval",
                     "exec", "open", "vars", "globals", "enumerate", "map", "sum"}

    def check(self, path, allowed_imports, allowed_dunders=()):
        import ast
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        guarded = set()  # imports inside try/except: a refusal is handled
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and node.handlers:
                for inner in node.body:
                    for sub in ast.walk(inner):
                        guarded.add(id(sub))
        problems = []
        for node in ast.walk(tree):
            where = "%s:%d" % (os.path.basename(path), getattr(node, "lineno", 0))
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in guarded:
                names = ([node.module] if isinstance(node, ast.ImportFrom)
                         else [alias.name for alias in node.names])
                problems += ["%s import %s" % (where, n) for n in names
                             if n not in allowed_imports]
            if isinstance(node, ast.Name) and node.id.startswith("_"):
                problems.append("%s name %s" % (where, node.id))
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_"):
                problems.append("%s definition %s" % (where, node.name))
            if isinstance(node, ast.arg) and node.arg.startswith("_"):
                problems.append("%s argument %s" % (where, node.arg))
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and node.attr not in allowed_dunders):
                problems.append("%s attribute %s" % (where, node.attr))
            if isinstance(node, ast.AugAssign) and not isinstance(node.target, ast.Name):
                problems.append("%s augmented assignment to an item or attribute" % where)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in self.BLOCKED_CALLS):
                problems.append("%s call %s()" % (where, node.func.id))
        self.assertEqual(problems, [])

    def test_plugin(self):
        package = os.path.join(CANVAS, "plugin", "pm_bridge_sender")
        for name in ("handlers/message_created.py", "pm_sign.py", "__init__.py",
                     "handlers/__init__.py"):
            with self.subTest(name):
                self.check(os.path.join(package, name), self.PLUGIN_IMPORTS,
                           allowed_dunders=("__class__", "__name__"))

    def test_protocol(self):
        self.check(os.path.join(CANVAS, "protocol", "pm_bridge_protocol.py"),
                   self.PROTOCOL_IMPORTS)

    def test_manifest(self):
        with open(os.path.join(CANVAS, "plugin", "pm_bridge_sender", "CANVAS_MANIFEST.json"),
                  encoding="utf-8") as f:
            manifest = json.load(f)
        for field in ("sdk_version", "plugin_version", "name", "description", "components",
                      "tags", "license", "readme"):  # required by canvas_cli's manifest schema
            self.assertIn(field, manifest)
        self.assertEqual(manifest["name"], "pm_bridge_sender")
        self.assertEqual(manifest["secrets"], ["PM_INGEST_URL", "PM_WEBHOOK_SECRET"])
        [handler] = manifest["components"]["handlers"]
        module_path, class_name = handler["class"].split(":")
        self.assertEqual(module_path, message_created.__name__)
        self.assertTrue(hasattr(message_created, class_name))
        self.assertTrue(os.path.exists(os.path.join(CANVAS, "plugin", "pm_bridge_sender",
                                                    manifest["readme"])))


class SenderTestCase(unittest.TestCase):
    """A pm-ingest stand-in per test, fast retries, clean log."""

    sender_module = None

    def setUp(self):
        self.ingest = IngestStub()
        self.addCleanup(self.ingest.close)
        canvas_stubs.log.clear()
        for name, value in (("RETRY_DELAY_S", 0.01), ("RETRY_DELAY_CAP_S", 0.05)):
            saved = getattr(self.sender_module, name)
            setattr(self.sender_module, name, value)
            self.addCleanup(setattr, self.sender_module, name, saved)

    def assert_signed_post(self, request, body_object):
        """The request is exactly what pm-ingest accepts, carrying `body_object`."""
        self.assertEqual(request["method"], "POST")
        self.assertEqual(request["path"], "/v1/canvas/messages")
        headers = request["headers"]
        self.assertEqual(headers.get("content-type"), "application/json")
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            self.assertEqual(request["header_count"].get(name), 1, name)
        self.assertNotIn("authorization", headers)
        self.assertEqual(json.loads(request["body"]), body_object)
        self.assertEqual(request["body"], json.dumps(body_object, separators=(",", ":")).encode())
        self.assertEqual(headers["webhook-id"],
                         "msg_%s_%s" % (body_object.get("communication_id") or
                                        body_object["target"]["id"],
                                        hashlib.sha256(request["body"]).hexdigest()[:16]))
        self.assertLessEqual(abs(int(headers["webhook-timestamp"]) - request["received_at"]), 5)
        self.assertTrue(pm_ingest_verifies([SECRET], headers, request["body"],
                                           request["received_at"]))
        self.assertFalse(pm_ingest_verifies([OTHER_SECRET], headers, request["body"],
                                            request["received_at"]))
        self.assertFalse(pm_ingest_verifies([SECRET], headers, request["body"] + b" ",
                                            request["received_at"]))
        self.assertFalse(pm_ingest_verifies([SECRET], headers, request["body"],
                                            request["received_at"] + 301))

    def assert_no_secret_or_phi_in(self, text):
        self.assertNotIn(SECRET[6:], text)
        self.assertNotIn(MESSAGE_TEXT, text)
        self.assertNotIn(PHONE, text)
        self.assertNotIn("127.0.0.1", text)


class PluginTest(SenderTestCase):
    sender_module = message_created

    def handler(self, secrets=None, target=MESSAGE_ID, context=None):
        if secrets is None:
            secrets = {"PM_INGEST_URL": self.ingest.url, "PM_WEBHOOK_SECRET": SECRET}
        if context is None:
            context = {"patient": {"id": PATIENT_KEY}}
        event = canvas_stubs.Event(canvas_stubs.EventType.MESSAGE_CREATED, target, context)
        return message_created.MessageCreatedSender(event=event, secrets=secrets)

    def expected_body(self):
        return {"type": "MESSAGE_CREATED", "target": {"id": MESSAGE_ID},
                "context": {"patient": {"id": PATIENT_KEY}}}

    def test_responds_to_message_created(self):
        self.assertEqual(message_created.MessageCreatedSender.RESPONDS_TO, "MESSAGE_CREATED")

    def test_posts_the_signed_plugin_event(self):
        self.assertEqual(self.handler().compute(), [])
        self.assertEqual(len(self.ingest.requests), 1)
        self.assert_signed_post(self.ingest.requests[0], self.expected_body())
        self.assertIn("accepted by pm-ingest (202)", canvas_stubs.log.text())

    def test_same_message_same_id_and_bytes(self):
        self.handler().compute()
        self.ingest.answers.append((202, {"Content-Type": "application/json"},
                                    b'{"id":"x","topic":"pm.canvas.messages","partition":0,'
                                    b'"offset":1,"duplicate":true}'))
        self.handler().compute()  # the event fired again
        self.assertIn("accepted by pm-ingest (202, duplicate)", canvas_stubs.log.text())
        first, second = self.ingest.requests
        self.assertEqual(first["headers"]["webhook-id"], second["headers"]["webhook-id"])
        self.assertEqual(first["body"], second["body"])
        self.handler(target="0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d").compute()
        self.assertNotEqual(self.ingest.requests[2]["headers"]["webhook-id"],
                            first["headers"]["webhook-id"])

    def test_url_with_trailing_slash_or_route(self):
        for url in (self.ingest.url + "/", self.ingest.url + "/v1/canvas/messages"):
            self.handler({"PM_INGEST_URL": url, "PM_WEBHOOK_SECRET": SECRET}).compute()
        self.assertEqual([r["path"] for r in self.ingest.requests], ["/v1/canvas/messages"] * 2)

    def test_missing_secrets_send_nothing(self):
        cases = (({}, ["PM_INGEST_URL", "PM_WEBHOOK_SECRET"]),
                 ({"PM_INGEST_URL": self.ingest.url}, ["PM_WEBHOOK_SECRET"]),
                 ({"PM_INGEST_URL": " ", "PM_WEBHOOK_SECRET": SECRET}, ["PM_INGEST_URL"]))
        for secrets, named in cases:
            with self.subTest(secrets=sorted(secrets)):
                canvas_stubs.log.clear()
                self.assertEqual(self.handler(secrets).compute(), [])
                text = canvas_stubs.log.text()
                for name in named:
                    self.assertIn(name, text)
                self.assertIn("no notification sent", text)
                self.assert_no_secret_or_phi_in(text)
        self.assertEqual(self.ingest.requests, [])

    def test_malformed_secret_sends_nothing_and_is_not_logged(self):
        bad = "whsec_this-is-not-base64"
        self.assertEqual(self.handler({"PM_INGEST_URL": self.ingest.url,
                                       "PM_WEBHOOK_SECRET": bad}).compute(), [])
        self.assertEqual(self.ingest.requests, [])
        text = canvas_stubs.log.text()
        self.assertIn("PM_WEBHOOK_SECRET", text)
        self.assertNotIn("this-is-not-base64", text)

    def test_event_without_patient_sends_nothing(self):
        self.assertEqual(self.handler(context={"note_id": 3}).compute(), [])
        self.assertEqual(self.handler(target="").compute(), [])
        self.assertEqual(self.ingest.requests, [])
        self.assertIn("no notification sent", canvas_stubs.log.text())

    def test_server_error_is_retried_once_then_logged_not_raised(self):
        self.ingest.answer(500, "urn:pm:problem:internal")
        self.ingest.answer(500, "urn:pm:problem:internal")
        self.assertEqual(self.handler().compute(), [])
        self.assertEqual(len(self.ingest.requests), 2)
        first, second = self.ingest.requests
        self.assertEqual(first["headers"]["webhook-id"], second["headers"]["webhook-id"])
        self.assertEqual(first["body"], second["body"])
        self.assert_signed_post(second, self.expected_body())
        text = canvas_stubs.log.text()
        self.assertIn("answered 500 urn:pm:problem:internal", text)
        self.assertEqual(canvas_stubs.log.records[-1][0], "error")
        self.assert_no_secret_or_phi_in(text)

    def test_unavailable_then_accepted(self):
        self.ingest.answer(503, "urn:pm:problem:kafka-unavailable", retry_after=1)
        self.assertEqual(self.handler().compute(), [])
        self.assertEqual(len(self.ingest.requests), 2)
        self.assertEqual(self.ingest.requests[0]["body"], self.ingest.requests[1]["body"])
        self.assertEqual(self.ingest.requests[0]["headers"]["webhook-id"],
                         self.ingest.requests[1]["headers"]["webhook-id"])
        self.assertIn("accepted by pm-ingest (202)", canvas_stubs.log.text())

    def test_client_errors_are_not_retried(self):
        self.ingest.answer(401, "urn:pm:problem:unauthorized")
        self.assertEqual(self.handler().compute(), [])
        self.assertEqual(len(self.ingest.requests), 1)
        text = canvas_stubs.log.text()
        self.assertIn("answered 401", text)
        self.assertIn("PM_INGEST_WEBHOOK_SECRETS", text)

    def test_connection_refused_is_logged_not_raised(self):
        handler = self.handler({"PM_INGEST_URL": refused_url(), "PM_WEBHOOK_SECRET": SECRET})
        self.assertEqual(handler.compute(), [])
        text = canvas_stubs.log.text()
        self.assertIn("could not reach pm-ingest", text)
        self.assertIn("after 2 attempt(s)", text)
        self.assert_no_secret_or_phi_in(text)

    def test_unexpected_error_is_logged_not_raised(self):
        handler = self.handler()
        handler.event = None  # anything that breaks inside notify()
        self.assertEqual(handler.compute(), [])
        self.assertIn("unexpected AttributeError", canvas_stubs.log.text())

    def test_retry_delay_honours_retry_after_up_to_the_cap(self):
        answer = canvas_stubs.Response(503, {"Retry-After": "1"}, b"")
        self.assertEqual(message_created.retry_delay(answer), 0.05)  # capped in setUp
        self.assertEqual(message_created.retry_delay(None), 0.01)


class Records:
    def __init__(self, records):
        self.records = records


class Messages:
    def __init__(self, records):
        self.all = records

    def filter(self, id=None):  # noqa: A002 (the kit's keyword)
        return Records([r for r in self.all if r["id"] == id])


class Patient:
    def __init__(self, key, messages):
        self.patient = {"key": key}
        self.messages = Messages(messages)


class ProtocolTest(SenderTestCase):
    sender_module = pm_bridge_protocol

    def change(self, **overrides):
        change = {
            "model_name": "messagetransmission", "created": True, "deleted": False,
            "fields": {"id": [None, 9731], "message_id": [None, 4812],
                       "delivery_method": [None, "sms"], "contact_point_value": [None, PHONE],
                       "created": [None, "2026-03-02T15:04:05.123456+00:00"]},
            "canvas_id": 9731, "external_id": "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d",
            "external_identifiers": None,
        }
        change.update(overrides)
        return change

    def protocol(self, change=None, settings=None, messages=None):
        if messages is None:
            messages = [{"id": 4812, "externallyExposableId": MESSAGE_ID,
                         "content": MESSAGE_TEXT}]
        protocol = pm_bridge_protocol.PmBridgeMessageNotification(
            patient=Patient(PATIENT_KEY, messages))
        if settings is None:
            settings = {"PM_INGEST_URL": self.ingest.url, "PM_WEBHOOK_SECRET": SECRET}
        protocol.set_context({"config": settings,
                              "change_info": self.change() if change is None else change})
        return protocol

    def test_meta(self):
        meta = pm_bridge_protocol.PmBridgeMessageNotification.Meta
        self.assertEqual(meta.compute_on_change_types, [canvas_stubs.CHANGE_TYPE.MESSAGE])
        self.assertTrue(meta.notification_only)

    def test_posts_signed_notification_for_a_created_transmission(self):
        result = self.protocol().compute_results()
        self.assertEqual(result.status, "not_applicable")
        self.assertEqual(result.recommendations, [])
        self.assertEqual(len(self.ingest.requests), 1)
        self.assert_signed_post(self.ingest.requests[0], {
            "communication_id": MESSAGE_ID, "patient_id": PATIENT_KEY,
            "occurred_at": "2026-03-02T15:04:05.123456+00:00", "change": self.change()})
        self.assertIn("accepted by pm-ingest (202)", result.narrative)
        self.assert_no_secret_or_phi_in(result.narrative)

    def test_same_change_same_id_other_change_other_id(self):
        self.protocol().compute_results()
        self.protocol().compute_results()  # Canvas ran the protocol again for the same change
        email = self.change(canvas_id=9732, fields={"id": [None, 9732],
                                                    "message_id": [None, 4812],
                                                    "delivery_method": [None, "email"]})
        self.protocol(change=email).compute_results()  # the same message's e-mail transmission
        first, again, other = self.ingest.requests
        self.assertEqual(first["headers"]["webhook-id"], again["headers"]["webhook-id"])
        self.assertEqual(first["body"], again["body"])
        self.assertNotEqual(other["headers"]["webhook-id"], first["headers"]["webhook-id"])
        self.assertEqual(json.loads(other["body"])["communication_id"], MESSAGE_ID)

    def test_only_created_transmissions_are_sent(self):
        for change in (self.change(created=False), self.change(model_name="message"),
                       self.change(model_name="messagetransmission", created=None), {}):
            with self.subTest(change=change.get("model_name")):
                result = self.protocol(change=change).compute_results()
                self.assertEqual(result.status, "not_applicable")
                self.assertEqual(result.narratives, [])
        self.assertEqual(self.ingest.requests, [])

    def test_falls_back_to_external_id_when_the_message_is_not_found(self):
        self.protocol(messages=[]).compute_results()
        body = json.loads(self.ingest.requests[0]["body"])
        self.assertEqual(body["communication_id"], "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d")

    def test_occurred_at_left_out_when_the_change_has_no_time(self):
        change = self.change(fields={"message_id": [None, 4812], "created": [None, "yesterday"]})
        self.protocol(change=change).compute_results()
        request = self.ingest.requests[0]
        self.assert_signed_post(request, {"communication_id": MESSAGE_ID,
                                          "patient_id": PATIENT_KEY, "change": change})

    def test_missing_settings_send_nothing(self):
        for settings, named in (({}, ["PM_INGEST_URL", "PM_WEBHOOK_SECRET"]),
                                ({"PM_INGEST_URL": self.ingest.url}, ["PM_WEBHOOK_SECRET"]),
                                ({"PM_WEBHOOK_SECRET": SECRET}, ["PM_INGEST_URL"])):
            with self.subTest(settings=sorted(settings)):
                result = self.protocol(settings=settings).compute_results()
                for name in named:
                    self.assertIn(name, result.narrative)
                self.assertIn("no notification sent", result.narrative)
                self.assert_no_secret_or_phi_in(result.narrative)
        result = self.protocol(settings={"PM_INGEST_URL": self.ingest.url,
                                         "PM_WEBHOOK_SECRET": "whsec_%%%"}).compute_results()
        self.assertIn("PM_WEBHOOK_SECRET", result.narrative)
        self.assertNotIn("%%%", result.narrative)
        self.assertEqual(self.ingest.requests, [])

    def test_server_error_is_retried_once_and_reported_not_raised(self):
        self.ingest.answer(500)
        self.ingest.answer(502)
        result = self.protocol().compute_results()
        self.assertEqual(len(self.ingest.requests), 2)
        self.assertEqual(self.ingest.requests[0]["body"], self.ingest.requests[1]["body"])
        self.assertEqual(self.ingest.requests[0]["headers"]["webhook-id"],
                         self.ingest.requests[1]["headers"]["webhook-id"])
        self.assertIn("not delivered after 2 attempt(s): pm-ingest answered 502",
                      result.narrative)
        self.assert_no_secret_or_phi_in(result.narrative)

    def test_unavailable_then_accepted(self):
        self.ingest.answer(503, retry_after=1)
        result = self.protocol().compute_results()
        self.assertEqual(len(self.ingest.requests), 2)
        self.assertIn("accepted by pm-ingest (202)", result.narrative)

    def test_bad_request_is_not_retried(self):
        self.ingest.answer(400, "urn:pm:problem:invalid-fields")
        result = self.protocol().compute_results()
        self.assertEqual(len(self.ingest.requests), 1)
        self.assertIn("answered 400 urn:pm:problem:invalid-fields", result.narrative)

    def test_connection_refused_is_reported_not_raised(self):
        result = self.protocol(settings={"PM_INGEST_URL": refused_url(),
                                         "PM_WEBHOOK_SECRET": SECRET}).compute_results()
        self.assertIn("could not reach pm-ingest", result.narrative)
        self.assert_no_secret_or_phi_in(result.narrative)

    def test_unusable_ids_send_nothing(self):
        protocol = self.protocol()
        protocol.patient = None  # neither lookup finds anything
        protocol.field_changes = self.change(external_id=None)
        result = protocol.compute_results()
        self.assertIn("without a usable Communication id and patient id", result.narrative)
        self.assertEqual(self.ingest.requests, [])

    def test_unexpected_error_is_reported_not_raised(self):
        result = self.protocol(change=self.change(fields="not an object")).compute_results()
        self.assertEqual(result.status, "not_applicable")
        self.assertEqual(result.narratives, ["pm-bridge: unexpected error; no notification sent"])
        self.assertEqual(self.ingest.requests, [])


if __name__ == "__main__":
    unittest.main()
