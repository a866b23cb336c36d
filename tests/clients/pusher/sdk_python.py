"""The PyPI `pusher` 3 server SDK against the gateway's HTTP API: `trigger` reaches a subscriber, and
`channels_info` / `channel_info` answer what the node holds.

Usage: python3 sdk_python.py <host> <port> <app id> <key> <secret>. The subscriber is a plain
WebSocket client (Python `websockets`) speaking Pusher protocol 7, so the check is end to end.
Prints `sdk_python: OK` and exits 0 when every check holds; raises otherwise.
"""

import json
import sys

import pusher
from websockets.sync.client import connect


def recv_event(ws, event):
    """The next frame, which must be `event`; returns it parsed."""
    frame = json.loads(ws.recv(timeout=5))
    assert frame["event"] == event, f"expected {event}, got {frame}"
    return frame


def main():
    host, port, app_id, key, secret = sys.argv[1:6]
    client = pusher.Pusher(app_id=app_id, key=key, secret=secret, host=host, port=int(port), ssl=False)
    url = f"ws://{host}:{port}/app/{key}?protocol=7&client=python&version=1"
    with connect(url, open_timeout=5) as ws:
        recv_event(ws, "pusher:connection_established")
        ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": "py-news", "auth": ""}}))
        recv_event(ws, "pusher_internal:subscription_succeeded")

        client.trigger("py-news", "greeting", {"hello": "from python"})
        got = recv_event(ws, "greeting")
        assert json.loads(got["data"]) == {"hello": "from python"}, got

        client.trigger(["py-news", "py-other"], "twice", "plain text")
        assert recv_event(ws, "twice")["data"] == "plain text"

        listed = client.channels_info(prefix_filter="py-")
        assert "py-news" in listed["channels"], listed
        one = client.channel_info("py-news", ["subscription_count"])
        assert one == {"occupied": True, "subscription_count": 1}, one

        wrong = pusher.Pusher(app_id=app_id, key=key, secret="wrong", host=host, port=int(port), ssl=False)
        try:
            wrong.trigger("py-news", "x", {})
        except pusher.errors.PusherBadAuth:
            pass
        else:
            raise AssertionError("a trigger signed with the wrong secret was accepted")
    print("sdk_python: OK")


if __name__ == "__main__":
    main()
