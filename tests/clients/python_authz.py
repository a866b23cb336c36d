#!/usr/bin/env python3
"""Authorization as a Python application sees it, with the `websockets` package's sync client and
tokens signed here the way a backend signs them (HS256, standard library only).

Usage: python_authz.py ws://HOST:PORT SECRET

Against a node in JWT mode whose `chat:*` channels need a grant: a subscribe without a grant is refused
with `forbidden` and the connection stays usable; a grant claim and a subscription token each open a
channel; `refresh` is acknowledged; a token left to expire ends the connection with close code 4011.
Exits 0 on success, non-zero with a message on any mismatch.
"""

import base64
import hashlib
import hmac
import json
import sys
import time

from websockets.exceptions import ConnectionClosed

from python_client import TIMEOUT, open_conn  # the same connection settings as the round-trip test


def fail(msg):
    print(f"python_authz: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(secret, claims):
    """An HS256 JWT of `claims`."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def request(ws, frame):
    ws.send(json.dumps(frame))
    return json.loads(ws.recv(timeout=TIMEOUT))


def expect(reply, **fields):
    for key, want in fields.items():
        if reply.get(key) != want:
            fail(f"{key}={reply.get(key)!r}, want {want!r} in {reply}")


def main():
    url, secret = sys.argv[1], sys.argv[2]
    now = int(time.time())
    with open_conn(url) as ws:
        token = sign(secret, {"sub": "pat", "exp": now + 3, "channels": ["chat:granted"]})
        expect(request(ws, {"op": "identify", "id": "i", "token": token}), op="ready", user="pat")
        # The first thing an app does: join a channel it was not granted. Refused, still connected.
        reply = request(ws, {"op": "subscribe", "id": "s1", "channel": "chat:secret"})
        expect(reply, op="error", id="s1", code="forbidden")
        expect(request(ws, {"op": "ping", "id": "p"}), op="pong", id="p")
        expect(request(ws, {"op": "subscribe", "id": "s2", "channel": "chat:granted"}),
               op="ack", status="subscribed")
        sub_token = sign(secret, {"sub": "pat", "exp": now + 60, "channel": "chat:secret"})
        reply = request(ws, {"op": "subscribe", "id": "s3", "channel": "chat:secret", "token": sub_token})
        expect(reply, op="ack", id="s3", status="subscribed")
        # Another user's subscription token is refused.
        stolen = sign(secret, {"sub": "sam", "exp": now + 60, "channel": "chat:other"})
        reply = request(ws, {"op": "subscribe", "id": "s4", "channel": "chat:other", "token": stolen})
        expect(reply, op="error", id="s4", code="forbidden")
        # Refresh with a token that also expires soon, then let it run out: close 4011.
        fresh = sign(secret, {"sub": "pat", "exp": now + 4})
        expect(request(ws, {"op": "refresh", "id": "r", "token": fresh}),
               op="ack", id="r", status="refreshed")
        try:
            while True:
                frame = ws.recv(timeout=TIMEOUT)
                fail(f"a frame before the expiry close: {frame}")
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            if code != 4011:
                fail(f"closed with {code}, want 4011 (token expired)")
        except TimeoutError:
            fail("the connection outlived its token")
    print("python_authz: OK")


if __name__ == "__main__":
    main()
