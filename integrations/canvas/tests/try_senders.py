#!/usr/bin/env python3
"""Runs the Canvas senders, outside Canvas, against a real pm-ingest (e.g. scripts/dev.sh).

    python3 integrations/canvas/tests/try_senders.py [plugin|protocol|both]
        [--url URL] [--secret whsec_...] [--message-id ID] [--patient-id KEY]

The sender code is the one that ships (plugin/pm_bridge_sender, protocol/pm_bridge_protocol.py),
fed a MESSAGE_CREATED event or a created-messagetransmission change through the same stand-ins
the unit tests use (canvas_stubs.py). Defaults match scripts/dev.sh: pm-ingest on
http://127.0.0.1:8080, its development webhook secret, and the Communication and patient of the
pm-sandbox fixtures it suggests. PM_INGEST_URL and PM_WEBHOOK_SECRET in the environment override
the defaults. Exits 0 when pm-ingest accepted every notification (202).
"""

import argparse
import os
import sys
import types

import canvas_stubs

HERE = os.path.dirname(os.path.abspath(__file__))
CANVAS = os.path.dirname(HERE)
DEV_URL = "http://127.0.0.1:8080"
DEV_SECRET = "whsec_ZGV2LXdlYmhvb2stc2VjcmV0LTAxMjM0NTY3ODk="  # scripts/dev.sh, development only
DEV_COMMUNICATION = "8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b"
DEV_PATIENT = "b3084f7e884e4af2b7e23b1dca494abd"


class Patient:
    """The workflow kit's patient: its key and a message lookup that finds one message."""

    def __init__(self, key, message_id):
        self.patient = {"key": key}
        self.message_id = message_id
        self.messages = self

    def filter(self, id=None):  # noqa: A002 (the kit's keyword)
        return types.SimpleNamespace(records=[
            {"id": id, "externallyExposableId": self.message_id}])


def run_plugin(args):
    from pm_bridge_sender.handlers import message_created

    event = canvas_stubs.Event(canvas_stubs.EventType.MESSAGE_CREATED, args.message_id,
                               {"patient": {"id": args.patient_id}})
    handler = message_created.MessageCreatedSender(
        event=event, secrets={"PM_INGEST_URL": args.url, "PM_WEBHOOK_SECRET": args.secret})
    canvas_stubs.log.clear()
    effects = handler.compute()
    for level, text in canvas_stubs.log.records:
        print("plugin   %-7s %s" % (level, text))
    print("plugin   effects returned to Canvas: %r" % (effects,))
    return any("accepted by pm-ingest" in text for _, text in canvas_stubs.log.records)


def run_protocol(args):
    import pm_bridge_protocol

    protocol = pm_bridge_protocol.PmBridgeMessageNotification(
        patient=Patient(args.patient_id, args.message_id))
    protocol.set_context({
        "config": {"PM_INGEST_URL": args.url, "PM_WEBHOOK_SECRET": args.secret},
        "change_info": {"model_name": "messagetransmission", "created": True, "deleted": False,
                        "fields": {"message_id": [None, 1], "delivery_method": [None, "noop"]},
                        "canvas_id": 1, "external_id": None, "external_identifiers": None}})
    result = protocol.compute_results()
    for line in result.narratives:
        print("protocol %s" % line)
    print("protocol status: %s" % result.status)
    return any("accepted by pm-ingest" in line for line in result.narratives)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", default="both", choices=("plugin", "protocol", "both"))
    parser.add_argument("--url", default=os.environ.get("PM_INGEST_URL") or DEV_URL)
    parser.add_argument("--secret", default=os.environ.get("PM_WEBHOOK_SECRET") or DEV_SECRET)
    parser.add_argument("--message-id", default=DEV_COMMUNICATION)
    parser.add_argument("--patient-id", default=DEV_PATIENT)
    args = parser.parse_args()

    canvas_stubs.install()
    sys.path.insert(0, os.path.join(CANVAS, "plugin"))
    sys.path.insert(0, os.path.join(CANVAS, "protocol"))
    ok = True
    if args.which in ("plugin", "both"):
        ok = run_plugin(args) and ok
    if args.which in ("protocol", "both"):
        ok = run_protocol(args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
