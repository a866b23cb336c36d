#!/usr/bin/env python3
"""Loads the gateway's admin dashboard in headless Chromium and checks what it shows.

Drives Chromium through the Chrome DevTools Protocol (CDP) over its websocket, with Python's
`websockets` package (the sync client, websockets 11+; `scripts/test` installs it). Collects console
errors, uncaught exceptions and failed loads, waits (bounded) until the page's node table shows the
expected connection counts, and saves screenshots. Results are JSON lines on stdout.

One shot (prints one JSON line; exit 0 when every expectation held and the console stayed clean):

    scripts/dashboard-check.py http://127.0.0.1:9090/dashboard \\
        --expect gw-1=3 --expect gw-2=0:alive --screenshot target/dashboard.png

Steps (`--steps`, for tests that change the cluster while the same page stays open): after the page
has loaded and shows its first node row, prints {"step":"load",...}, then reads one JSON command per
line on stdin and answers each with one JSON line:

    {"expect": {"gw-1": 3, "gw-2": {"connections": 0, "state": "alive"}}, "timeout": 20}
    {"wait_js": "Number(document.getElementById('t-rate').innerText) > 0", "timeout": 20}
    {"screenshot": "target/dashboard.png"}
    {"quit": true}                 (or end of input)

Every answer has "ok", "nodes" (the rows the page shows: id, state, connections, the count as
displayed), "page" (header texts) and "errors" (console errors and exceptions so far); a failed step
also has "error". `wait_js` waits until the expression is truthy in the page and answers its "value". Exit status: 0 all good, 1 a step failed or the console had errors, 2 set-up failed
(no Chromium, no DevTools, page did not load).

Chromium runs as `chromium --headless=new --no-sandbox --disable-gpu --remote-debugging-port=0` with a
temporary profile; its DevTools URL is read from its stderr. It is killed (its whole process group) on
exit, also when this script is interrupted or its parent dies.
"""

import argparse
import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    from websockets.sync.client import connect
except ImportError:  # websockets < 11 or missing
    connect = None

DEFAULT_CHROMIUM = "/usr/bin/chromium"
DEVTOOLS_LINE = re.compile(rb"DevTools listening on (ws://\S+)")
START_TIMEOUT = 30.0
CALL_TIMEOUT = 15.0
POLL_INTERVAL = 0.2

# What the page shows, read in the page: the node rows and the header pills.
READ_PAGE = r"""(() => {
  const text = (id) => { const e = document.getElementById(id); return e ? e.innerText.trim() : null; };
  const nodes = Array.from(document.querySelectorAll('#nodes tr[data-node]')).map((tr) => {
    const shown = tr.querySelector('.bar b');
    return {
      id: tr.dataset.node,
      state: tr.dataset.state,
      connections: Number(tr.dataset.connections),
      shown: shown ? shown.innerText.trim() : null,
      text: tr.innerText,
    };
  });
  return { nodes, page: { node: text('node-id'), mode: text('mode'), redis: text('redis'),
                          ready: text('ready'), banner: text('banner'), title: document.title } };
})()"""


class SetupError(Exception):
    """Chromium or the page could not be brought up (exit status 2)."""


class Cdp:
    """A CDP connection to the browser with one flattened page session; records console problems."""

    def __init__(self, url):
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(
            connect(url, max_size=None, open_timeout=10, close_timeout=2)
        )
        self.next_id = 0
        self.session = None
        self.events = []
        self.errors = []
        self.warnings = []

    def call(self, method, params=None, session=True, timeout=CALL_TIMEOUT):
        """Sends one command and waits (bounded) for its answer; events read meanwhile are handled."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._recv(deadline)
            if reply is None:
                raise TimeoutError(f"no answer to {method} within {timeout} s")
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_event(self, method, timeout):
        """Waits (bounded) for an event of `method` on the page session; True when it came."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    del self.events[i]
                    return True
            if self._recv(deadline) is None:
                return False

    def pump(self, seconds):
        """Handles the events that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while self._recv(deadline) is not None:
            pass

    def _recv(self, deadline):
        """Reads one message before `deadline` (None on timeout); events are recorded, answers returned."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            raw = self.ws.recv(timeout=remaining)
        except TimeoutError:
            return None
        msg = json.loads(raw)
        if "id" in msg:
            return msg
        self._event(msg)
        return {}

    def _event(self, msg):
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            args = " ".join(
                str(a.get("value", a.get("description", a.get("type")))) for a in params.get("args", [])
            )
            entry = f"console.{params.get('type')}: {args}"
            if params.get("type") in ("error", "assert"):
                self.errors.append(entry)
            elif params.get("type") == "warning":
                self.warnings.append(entry)
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            self.errors.append(
                "exception: "
                + (exc.get("description") or details.get("text") or "unknown")
                + f" at {details.get('url', '')}:{details.get('lineNumber', '?')}"
            )
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            text = f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
            if entry.get("level") == "error":
                self.errors.append(text)
            elif entry.get("level") == "warning":
                self.warnings.append(text)
        elif method in ("Inspector.targetCrashed", "Target.targetCrashed"):
            self.errors.append(f"page crashed: {params}")
        self.events.append(msg)
        del self.events[:-200]

    def close(self):
        try:
            self.stack.close()
        except Exception:
            pass


def die_with_parent():
    """In the child before exec: SIGKILL when this script dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass


def start_chromium(binary, workdir):
    """Starts Chromium; returns (process, DevTools websocket URL, log path)."""
    log_path = os.path.join(workdir, "chromium.log")
    log = open(log_path, "wb")
    args = [
        binary,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--remote-debugging-port=0",
        f"--user-data-dir={os.path.join(workdir, 'profile')}",
        "--window-size=1280,1000",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-background-networking",
        "--hide-scrollbars",
        "--mute-audio",
        "about:blank",
    ]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with open(log_path, "rb") as f:
            found = DEVTOOLS_LINE.search(f.read())
        if found:
            return proc, found.group(1).decode(), log_path
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_chromium(proc)
    raise SetupError(
        f"Chromium printed no 'DevTools listening on ws://...' within {START_TIMEOUT} s "
        f"(exit status {proc.poll()}); its log:\n{tail(log_path)}"
    )


def stop_chromium(proc):
    """Terminates Chromium's process group, then kills what is left of it (bounded)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:  # the browser if it ignored SIGTERM, and helpers (zygote, renderers) that outlived it
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=5)


def tail(path, limit=4000):
    try:
        with open(path, "rb") as f:
            return f.read()[-limit:].decode(errors="replace")
    except OSError as e:
        return f"({e})"


def read_page(cdp):
    result = cdp.call(
        "Runtime.evaluate", {"expression": READ_PAGE, "returnByValue": True, "awaitPromise": False}
    )
    if "exceptionDetails" in result:
        raise RuntimeError(f"reading the page failed: {result['exceptionDetails']}")
    return result["result"]["value"]


def normalize(expect):
    """{"id": 3} or {"id": {"connections": 3, "state": "alive"}} -> {"id": (3, "alive"|None)}."""
    out = {}
    for node, want in expect.items():
        if isinstance(want, dict):
            out[node] = (want.get("connections"), want.get("state"))
        else:
            out[node] = (int(want), None)
    return out


def unmet(view, expect):
    """What of `expect` the page does not show (empty: all shown)."""
    rows = {n["id"]: n for n in view["nodes"]}
    missing = []
    for node, (count, state) in expect.items():
        row = rows.get(node)
        if row is None:
            missing.append(f"{node}: no row")
            continue
        if node not in row["text"]:
            missing.append(f"{node}: id not visible")
        shown = (row.get("shown") or "").replace(",", "")
        if count is not None and (row["connections"] != count or shown != str(count)):
            missing.append(f"{node}: shows {row.get('shown')!r} connections, want {count}")
        if state is not None and row["state"] != state:
            missing.append(f"{node}: state {row['state']}, want {state}")
    return missing


def wait_for(cdp, expect, timeout):
    """Polls the page until it shows `expect` (at least one node row when empty) or `timeout`."""
    expect = normalize(expect)
    started = time.monotonic()
    deadline = started + timeout
    while True:
        view = read_page(cdp)
        missing = unmet(view, expect) if expect else ([] if view["nodes"] else ["no node rows yet"])
        if not missing or time.monotonic() >= deadline:
            result = {"ok": not missing, **view}
            if missing:
                result["error"] = f"after {timeout} s the page does not show: " + "; ".join(missing)
            result["elapsed_ms"] = int((time.monotonic() - started) * 1000)
            return result
        cdp.pump(POLL_INTERVAL)


def wait_js(cdp, expression, timeout):
    """Polls the page until `expression` is truthy or `timeout`; answers its last value."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        result = cdp.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        failed = result.get("exceptionDetails")
        value = result.get("result", {}).get("value")
        if failed or value or time.monotonic() >= deadline:
            answer = {"ok": bool(value) and not failed, "value": value, **read_page(cdp)}
            if failed:
                answer["error"] = f"{expression} threw: {failed}"
            elif not value:
                answer["error"] = f"after {timeout} s, {expression} is still {value!r}"
            answer["elapsed_ms"] = int((time.monotonic() - started) * 1000)
            return answer
        cdp.pump(POLL_INTERVAL)


def screenshot(cdp, path):
    """Saves a PNG of the whole page to `path` (directories created)."""
    metrics = cdp.call("Page.getLayoutMetrics")
    size = metrics.get("cssContentSize") or metrics.get("contentSize")
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = cdp.call(
        "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
    )
    data = base64.b64decode(shot["data"])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return {"ok": True, "screenshot": os.path.abspath(path), "bytes": len(data)}


def open_page(cdp, url, timeout):
    """Opens a page target, enables Runtime/Log/Page, navigates to `url` and waits for the load."""
    target = cdp.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
    cdp.session = cdp.call(
        "Target.attachToTarget", {"targetId": target, "flatten": True}, session=False
    )["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        cdp.call(f"{domain}.enable")
    nav = cdp.call("Page.navigate", {"url": url})
    if nav.get("errorText"):
        raise SetupError(f"navigating to {url} failed: {nav['errorText']}")
    if not cdp.wait_event("Page.loadEventFired", timeout):
        raise SetupError(f"{url} did not fire its load event within {timeout} s")


def emit(result, **extra):
    print(json.dumps({**extra, **result}), flush=True)


def run(args, cdp):
    """The checks; returns the exit status."""
    open_page(cdp, args.url, args.timeout)
    first = wait_for(cdp, {} if args.steps else args.expect, args.timeout)
    ok = first["ok"]
    if not args.steps:
        if args.screenshot:
            first.update(screenshot(cdp, args.screenshot))
        cdp.pump(0.3)
        emit(first, errors=cdp.errors, warnings=cdp.warnings)
        return 0 if ok and not cdp.errors else 1
    emit(first, step="load", errors=cdp.errors)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line)
            if command.get("quit"):
                break
            if "expect" in command:
                step, result = "expect", wait_for(
                    cdp, command["expect"], float(command.get("timeout", args.timeout))
                )
            elif "wait_js" in command:
                step, result = "wait_js", wait_js(
                    cdp, command["wait_js"], float(command.get("timeout", args.timeout))
                )
            elif "screenshot" in command:
                step, result = "screenshot", screenshot(cdp, command["screenshot"])
            else:
                step, result = "unknown", {"ok": False, "error": f"unknown command {line}"}
        except Exception as e:  # report and go on: the test decides
            step, result = "error", {"ok": False, "error": f"{type(e).__name__}: {e}"}
        ok = ok and result["ok"]
        emit(result, step=step, errors=cdp.errors)
    cdp.pump(0.3)
    return 0 if ok and not cdp.errors else 1


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the dashboard URL, e.g. http://127.0.0.1:9090/dashboard")
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="NODE=COUNT[:STATE]",
        help="wait until node NODE's row shows COUNT connections (and STATE); repeatable",
    )
    p.add_argument("--screenshot", metavar="PATH", help="save a PNG of the page to PATH")
    p.add_argument("--timeout", type=float, default=20.0, help="bound of each wait, seconds")
    p.add_argument("--steps", action="store_true", help="read JSON commands from stdin (see above)")
    p.add_argument("--chromium", default=os.environ.get("CHROMIUM", DEFAULT_CHROMIUM))
    args = p.parse_args()
    expect = {}
    for item in args.expect:
        node, _, want = item.rpartition("=")
        count, _, state = want.partition(":")
        if not node or not count.isdigit():
            p.error(f"--expect {item!r}: want NODE=COUNT or NODE=COUNT:STATE")
        expect[node] = {"connections": int(count), "state": state or None}
    args.expect = expect
    return args


def main():
    args = parse_args()
    if connect is None:
        print("the Python package `websockets` (11+, sync client) is needed: "
              "python3 -m pip install websockets", file=sys.stderr)
        return 2
    if not (os.path.isfile(args.chromium) and os.access(args.chromium, os.X_OK)):
        print(f"{args.chromium} not found: install the Debian `chromium` package "
              "(apt-get install chromium), or pass --chromium PATH", file=sys.stderr)
        return 2
    # A SIGTERM (e.g. from the test harness) unwinds through the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    workdir = tempfile.mkdtemp(prefix="dashboard-check-")
    proc = cdp = log_path = None
    try:
        proc, devtools, log_path = start_chromium(args.chromium, workdir)
        cdp = Cdp(devtools)
        return run(args, cdp)
    except SetupError as e:
        emit({"ok": False, "error": str(e)}, step="setup", errors=cdp.errors if cdp else [])
        return 2
    except Exception as e:
        log = f"\nChromium log:\n{tail(log_path)}" if log_path else ""
        emit({"ok": False, "error": f"{type(e).__name__}: {e}{log}"}, step="setup",
             errors=cdp.errors if cdp else [])
        return 2
    finally:
        if cdp:
            try:
                cdp.call("Browser.close", session=False, timeout=3)
            except Exception:
                pass
            cdp.close()
        if proc:
            stop_chromium(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
