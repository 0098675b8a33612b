"""Minimal stand-ins for the Canvas runtime the two senders import, for tests without Canvas.

install() puts fake modules into sys.modules: the Canvas SDK surface the plugin uses
(canvas_sdk.events.EventType, canvas_sdk.effects.Effect, canvas_sdk.handlers.base.BaseHandler,
canvas_sdk.utils.Http, the plugin `logger`), the workflow-kit surface the protocol uses
(canvas_workflow_kit.constants.CHANGE_TYPE, canvas_workflow_kit.protocol.ClinicalQualityMeasure,
ProtocolResult, STATUS_NOT_APPLICABLE) and `requests.post`. Both HTTP clients perform a real
request with urllib, so the tests see exactly the bytes and headers a sender put on the wire.
Only the shapes the senders rely on are modelled, after the real classes (canvas-plugins
canvas_sdk/handlers/base.py, canvas_sdk/events/base.py, canvas_sdk/utils/http.py;
canvas_workflow_kit/protocol.py).
"""

import json
import sys
import types
import urllib.error
import urllib.request


class Response:
    """The part of requests.Response the senders read."""

    def __init__(self, status_code, headers, content):
        self.status_code = status_code
        self.headers = headers  # an email.message.Message: case-insensitive .get()
        self.content = content
        self.text = content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.text)


class RequestException(Exception):
    """requests.RequestException."""


class ConnectionError(RequestException):  # noqa: A001 (named like requests.ConnectionError)
    """requests.ConnectionError."""


# No proxy from the environment: the tests talk to 127.0.0.1 only.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_post(url, json_body=None, data=None, headers=None, timeout=30):
    """POST like requests does: `data` bytes sent unchanged, `json_body` serialised; 4xx/5xx are
    answers, not exceptions; connection failures raise ConnectionError."""
    if json_body is not None:
        data = json.dumps(json_body).encode("utf-8")
    if isinstance(data, str):
        data = data.encode("utf-8")
    request = urllib.request.Request(url, data=data, method="POST", headers=dict(headers or {}))
    try:
        with OPENER.open(request, timeout=timeout) as answer:
            return Response(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, err.headers, err.read())
    except (urllib.error.URLError, OSError) as err:
        raise ConnectionError(str(err)) from err


class LogCapture:
    """The plugin runner's `logger.log`: keeps (level, text) pairs."""

    def __init__(self):
        self.records = []

    def clear(self):
        self.records = []

    def text(self):
        return "\n".join(message for _, message in self.records)

    def debug(self, message):
        self.records.append(("debug", str(message)))

    def info(self, message):
        self.records.append(("info", str(message)))

    def warning(self, message):
        self.records.append(("warning", str(message)))

    def error(self, message):
        self.records.append(("error", str(message)))

    def exception(self, message):
        self.records.append(("error", str(message)))


log = LogCapture()


class EventType:
    """canvas_sdk.events.EventType: a protobuf enum with Name()."""

    UNKNOWN = 0
    MESSAGE_CREATED = 42

    @classmethod
    def Name(cls, number):  # noqa: N802 (protobuf's spelling)
        for name, value in vars(cls).items():
            if name.isupper() and value == number:
                return name
        raise ValueError(number)


class Target:
    def __init__(self, target_id):
        self.id = target_id


class Event:
    """canvas_sdk.events.base.Event: type, name, target.id, context."""

    def __init__(self, event_type, target_id, context):
        self.type = event_type
        self.name = EventType.Name(event_type)
        self.target = Target(target_id)
        self.context = context


class Effect:
    pass


class BaseHandler:
    """canvas_sdk.handlers.base.BaseHandler: event, secrets, environment; compute()."""

    RESPONDS_TO = None

    def __init__(self, event, secrets=None, environment=None):
        self.event = event
        self.secrets = secrets or {}
        self.environment = environment or {}

    def compute(self):
        raise NotImplementedError

    def accept_event(self):
        return True


class Http:
    """canvas_sdk.utils.Http: post(url, json=, data=, headers=) with its fixed 30 s timeout."""

    requests_made = []

    def __init__(self, base_url=""):
        self.base_url = base_url

    def post(self, url, json=None, data=None, headers=None):
        Http.requests_made.append(url)
        return http_post(self.base_url + url, json_body=json, data=data, headers=headers,
                         timeout=30)


class CHANGE_TYPE:  # noqa: N801 (the kit's spelling)
    MESSAGE = "message"


STATUS_NOT_APPLICABLE = "not_applicable"


class AttrDict(dict):
    """canvas_workflow_kit.internal.attrdict.AttrDict: settings by key or attribute."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err


class ProtocolResult:
    def __init__(self):
        self.recommendations = []
        self.status = STATUS_NOT_APPLICABLE
        self.narratives = []

    def add_narrative(self, narrative):
        self.narratives.append(narrative)

    @property
    def narrative(self):
        return "\n".join(self.narratives)


class ClinicalQualityMeasure:
    """The workflow kit's base: patient, settings (AttrDict), field_changes."""

    class Meta:
        compute_on_change_types = []

    def __init__(self, patient=None, **kwargs):
        self.patient = patient
        self.settings = AttrDict()
        self.field_changes = {}

    def set_settings(self, settings):
        self.settings = AttrDict(settings)

    def set_context(self, context):
        self.settings = AttrDict(context.get("config", {}))
        self.field_changes = context.get("change_info", {})

    def compute_results(self):
        raise NotImplementedError


def module(name, **attributes):
    mod = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(mod, key, value)
    return mod


def requests_post(url, data=None, json=None, headers=None, timeout=None, **kwargs):
    return http_post(url, json_body=json, data=data, headers=headers, timeout=timeout or 30)


STUBS = {
    "canvas_sdk": module("canvas_sdk"),
    "canvas_sdk.events": module("canvas_sdk.events", EventType=EventType, Event=Event),
    "canvas_sdk.effects": module("canvas_sdk.effects", Effect=Effect),
    "canvas_sdk.handlers": module("canvas_sdk.handlers", BaseHandler=BaseHandler),
    "canvas_sdk.handlers.base": module("canvas_sdk.handlers.base", BaseHandler=BaseHandler),
    "canvas_sdk.utils": module("canvas_sdk.utils", Http=Http),
    "logger": module("logger", log=log),
    "canvas_workflow_kit": module("canvas_workflow_kit"),
    "canvas_workflow_kit.constants": module("canvas_workflow_kit.constants",
                                            CHANGE_TYPE=CHANGE_TYPE),
    "canvas_workflow_kit.protocol": module(
        "canvas_workflow_kit.protocol", ClinicalQualityMeasure=ClinicalQualityMeasure,
        ProtocolResult=ProtocolResult, STATUS_NOT_APPLICABLE=STATUS_NOT_APPLICABLE),
    "requests": module("requests", post=requests_post, RequestException=RequestException,
                       ConnectionError=ConnectionError),
}


def install():
    """Puts the stand-ins into sys.modules; returns what they replaced, for uninstall()."""
    saved = {name: sys.modules.get(name) for name in STUBS}
    sys.modules.update(STUBS)
    return saved


def uninstall(saved):
    for name, previous in saved.items():
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
