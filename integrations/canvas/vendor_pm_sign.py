#!/usr/bin/env python3
"""Copies pm_sign.py into the two Canvas senders, which must each be self-contained.

    python3 integrations/canvas/vendor_pm_sign.py           # write the copies
    python3 integrations/canvas/vendor_pm_sign.py --check   # exit 1 if a copy is out of date

The plugin gets pm_sign.py as its module pm_bridge_sender/pm_sign.py (byte for byte). The
workflow-kit protocol is uploaded as a single file, so pm_sign.py goes between the BEGIN/END
marker lines of protocol/pm_bridge_protocol.py. integrations/canvas/tests/test_senders.py runs the
check, so an edited copy (instead of the source) fails the tests.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "pm_sign.py")
PLUGIN_COPY = os.path.join(HERE, "plugin", "pm_bridge_sender", "pm_sign.py")
PROTOCOL = os.path.join(HERE, "protocol", "pm_bridge_protocol.py")
BEGIN = ("# --- BEGIN pm_sign.py (written by vendor_pm_sign.py: "
         "edit integrations/canvas/pm_sign.py) ---\n")
END = "# --- END pm_sign.py ---\n"


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def expected_files():
    """{path: the content it must have} for both copies."""
    source = read(SOURCE)
    protocol = read(PROTOCOL)
    start = protocol.find(BEGIN)
    end = protocol.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{PROTOCOL}: the BEGIN/END marker lines of the pm_sign block are missing")
    inlined = protocol[:start + len(BEGIN)] + source + protocol[end:]
    return {PLUGIN_COPY: source, PROTOCOL: inlined}


def stale_files():
    """Paths whose content differs from what vendoring would write."""
    stale = []
    for path, content in expected_files().items():
        if not os.path.exists(path) or read(path) != content:
            stale.append(path)
    return stale


def main(argv):
    if argv[1:] == ["--check"]:
        stale = stale_files()
        for path in stale:
            print(f"out of date: {os.path.relpath(path)} (run {os.path.relpath(__file__)})",
                  file=sys.stderr)
        return 1 if stale else 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    for path, content in expected_files().items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
        print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
