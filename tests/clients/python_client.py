#!/usr/bin/env python3
"""Third-party client check for the gateway, using the `websockets` package's sync client.

Usage: python_client.py ws://HOST:PORT

Identifies two users, subscribes one to a channel, publishes from the other, sends a direct message, and
checks every reply frame field by field. Exits 0 on success, non-zero with a message on any mismatch.
"""

import json
import sys

from websockets.sync.client import connect

TIMEOUT = 10


def fail(msg):
    print(f"python_client: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def open_conn(url):
    try:
        # proxy=None (websockets >= 15) keeps proxy environment variables out of a loopback test.
        return connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, proxy=None)
    except TypeError:
        return connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT)


def send(ws, frame):
    ws.send(json.dumps(frame))


def recv(ws, what):
    try:
        raw = ws.recv(timeout=TIMEOUT)
    except TimeoutError:
        fail(f"timed out waiting for {what}")
    except Exception as e:  # noqa: BLE001 - any failure is a test failure with context
        fail(f"error waiting for {what}: {e!r}")
    try:
        frame = json.loads(raw)
    except ValueError as e:
        fail(f"{what}: reply is not JSON ({e}): {raw!r}")
    if not isinstance(frame, dict):
        fail(f"{what}: reply is not an object: {raw!r}")
    return frame


def expect(frame, what, **fields):
    for key, want in fields.items():
        if key not in frame:
            fail(f"{what}: missing field {key!r} in {frame!r}")
        if frame[key] != want:
            fail(f"{what}: field {key!r} is {frame[key]!r}, expected {want!r} (frame {frame!r})")


def identify(ws, user):
    send(ws, {"op": "identify", "id": f"id-{user}", "user": user})
    ready = recv(ws, f"ready for {user}")
    expect(ready, f"ready for {user}", op="ready", id=f"id-{user}", user=user)
    if not isinstance(ready.get("session"), str) or not ready["session"]:
        fail(f"ready for {user}: bad session {ready!r}")
    if not isinstance(ready.get("shard"), int) or ready["shard"] < 0:
        fail(f"ready for {user}: bad shard {ready!r}")
    if not isinstance(ready.get("heartbeat_ms"), int) or ready["heartbeat_ms"] <= 0:
        fail(f"ready for {user}: bad heartbeat_ms {ready!r}")
    if not isinstance(ready.get("node"), str) or not ready["node"]:
        fail(f"ready for {user}: bad node {ready!r}")
    return ready


def main():
    if len(sys.argv) != 2:
        fail("usage: python_client.py ws://HOST:PORT")
    url = sys.argv[1]
    channel = "room:python"
    with open_conn(url) as alice, open_conn(url) as bob:
        identify(alice, "py-alice")
        identify(bob, "py-bob")

        send(bob, {"op": "subscribe", "id": "sub1", "channel": channel})
        expect(recv(bob, "subscribe ack"), "subscribe ack", op="ack", id="sub1", status="subscribed")

        data = {"text": "héllo from python", "n": [1, 2.5, None, True]}
        send(alice, {"op": "publish", "id": "pub1", "channel": channel, "data": data})
        expect(recv(alice, "publish ack"), "publish ack", op="ack", id="pub1", status="published", conns=1)
        expect(recv(bob, "channel message"), "channel message",
               op="message", channel=channel, **{"from": "py-alice"}, data=data)

        send(alice, {"op": "send", "id": "dm1", "to": "py-bob", "data": "direct"})
        expect(recv(alice, "send ack"), "send ack", op="ack", id="dm1", status="delivered", conns=1)
        expect(recv(bob, "direct message"), "direct message",
               op="message", **{"from": "py-alice"}, data="direct")

        send(alice, {"op": "presence", "id": "pr1", "users": ["py-bob", "py-nobody"]})
        expect(recv(alice, "presence"), "presence",
               op="presence", id="pr1", online={"py-bob": True, "py-nobody": False})

        send(bob, {"op": "ping", "id": "end"})
        expect(recv(bob, "pong"), "pong", op="pong", id="end")
    print("python_client: OK")


if __name__ == "__main__":
    main()
