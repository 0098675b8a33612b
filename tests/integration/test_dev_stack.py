#!/usr/bin/env python3
"""The README's run command, as a newcomer meets it: scripts/dev.sh brings the whole system up,
the request it prints is accepted, scripts/demo.sh shows a staff message, a reply and a check-in
at every place they end up, and Ctrl-C (SIGINT to the foreground process group) stops every
service in order, exit status 0, with no Kafka error in pm-deliver's log.

Usage: test_dev_stack.py <build dir>   (run by CTest; the binaries must be built)
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAILED: " + what, file=sys.stderr)
    return cond


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def main():
    build = os.path.abspath(sys.argv[1])
    state = tempfile.mkdtemp(prefix="pm-it-devstack-")
    out_path = os.path.join(state, "dev.out")
    ingest, deliver, sandbox = free_ports(3)
    env = dict(os.environ, BUILD_DIR=build, PM_DEV_SKIP_BUILD="1", PM_DEV_STATE=state,
               PM_DEV_INGEST_PORT=str(ingest), PM_DEV_DELIVER_PORT=str(deliver),
               PM_DEV_SANDBOX_PORT=str(sandbox))
    env.pop("PM_LOG_LEVEL", None)

    def default_sigint():
        # A terminal's foreground job: its own process group, SIGINT at its default (CTest may
        # hand it down ignored, and a shell cannot trap what it inherits ignored).
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    with open(out_path, "w") as out:
        dev = subprocess.Popen(["scripts/dev.sh"], cwd=ROOT, env=env, stdout=out,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, preexec_fn=default_sigint)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and "Press Ctrl-C" not in read(out_path):
            if dev.poll() is not None:
                break
            time.sleep(0.2)
        banner = read(out_path)
        if not check("Press Ctrl-C" in banner, "dev.sh printed its banner"):
            print(banner, file=sys.stderr)
            return
        for name, port in (("pm-ingest", ingest), ("pm-sandbox", sandbox),
                           ("pm-deliver", deliver)):
            check(re.search(r"%s +http://127\.0\.0\.1:%d " % (name, port), banner),
                  "the banner says where %s listens" % name)
        check("pm-devbroker" in banner, "the banner names pm-devbroker")

        # The first request the banner offers, exactly as printed.
        m = re.search(r"curl -sS (\S+) \\\n\s+-H 'Authorization: (Bearer [^']+)' "
                      r"-H 'Content-Type: application/json' \\\n\s+-d '([^']+)'", banner)
        if check(m is not None, "the banner prints a first request"):
            req = urllib.request.Request(m.group(1), data=m.group(3).encode(), method="POST",
                                         headers={"Authorization": m.group(2),
                                                  "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=15) as r:
                check(r.status == 202, "the printed request is answered 202")

        demo = subprocess.run(["scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        shown = demo.stdout + demo.stderr
        check(demo.returncode == 0, "demo.sh exits 0")
        for what in ("signature valid: true", "/fhir/Communication -> 201",
                     "/fhir/QuestionnaireResponse -> 201", "message webhook delivered",
                     "message sms delivered", "message email delivered",
                     "reply canvas delivered", "questionnaire_response canvas delivered"):
            check(what in shown, "the demo shows '%s'" % what)
        if failures:
            print(shown, file=sys.stderr)

        # Ctrl-C: SIGINT to the whole foreground process group.
        started = time.time()
        os.killpg(dev.pid, signal.SIGINT)
        try:
            rc = dev.wait(timeout=40)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 0, "dev.sh exits 0 after Ctrl-C (got %r)" % rc)
        took = time.time() - started
        print("stopped %.1f s after Ctrl-C" % took)
        check("Stopped." in read(out_path), "dev.sh says it stopped everything")
        check("A service exited" not in read(out_path), "no service reported as crashed")
        for name, port in (("pm-ingest", ingest), ("pm-sandbox", sandbox),
                           ("pm-deliver", deliver)):
            check(not port_open(port), "%s is no longer listening" % name)
        log = read(os.path.join(state, "deliver.log"))
        check('"msg":"stopped"' in log, "pm-deliver logged its stop")
        # Stopped in order, pm-deliver could commit while the broker was still there.
        for bad in ("COMMITFAIL", "final commit failed", "_TRANSPORT"):
            check(bad not in log, "no %s in pm-deliver's log" % bad)
    finally:
        if dev.poll() is None:
            os.kill(dev.pid, signal.SIGTERM)  # its trap stops the services
            try:
                dev.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
        if failures:
            print("state kept in " + state, file=sys.stderr)
        else:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
    print("dev_stack: %d failed" % len(failures))
    sys.exit(1 if failures else 0)
