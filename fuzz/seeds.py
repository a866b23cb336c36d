#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/: small, meaningful inputs for each fuzz target.

Run from anywhere: python3 fuzz/seeds.py. It rewrites the seeds it knows (file names are the seeds'
names) and leaves other files alone: regression inputs copied from crashes (named crash-*) and the
protocol_ops seeds (structured inputs, kept from a fuzzing run) are not generated here.

Frame codec inputs start with two parameter bytes (docs/FUZZING.md): byte 0 picks the limits, byte 1
the read sizes; 0x36 is 64 KiB for both size limits and 1024 fragments, the gateway's defaults.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- handshake: HTTP upgrade requests

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
BASE = [
    "Host: example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {RFC_KEY}",
    "Sec-WebSocket-Version: 13",
]


def request(target="/ws", headers=None, method="GET", version="HTTP/1.1", eol="\r\n"):
    lines = [f"{method} {target} {version}"] + (BASE if headers is None else headers)
    return eol.join(lines) + eol + eol


def replaced(index, header):
    h = list(BASE)
    if header is None:
        del h[index]
    else:
        h[index] = header
    return h


hs = {
    "rfc_example": request(),
    "root_path": request("/"),
    "query": request("/ws?client=web&v=1"),
    "origin": request(headers=BASE + ["Origin: https://app.example"]),
    "origin_null": request(headers=BASE + ["Origin: null"]),
    "chrome": request(
        "/ws",
        [
            "Host: 127.0.0.1:8080",
            "Connection: Upgrade",
            "Pragma: no-cache",
            "Cache-Control: no-cache",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36",
            "Upgrade: websocket",
            "Origin: http://127.0.0.1:8080",
            "Sec-WebSocket-Version: 13",
            "Accept-Encoding: gzip, deflate, br",
            "Accept-Language: en-US,en;q=0.9",
            "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        ],
    ),
    "firefox_keepalive": request(
        "/ws",
        [
            "Host: gateway.example:8080",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Accept: */*",
            "Sec-WebSocket-Version: 13",
            "Origin: https://app.example",
            "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC==",
            "Connection: keep-alive, Upgrade",
            "Upgrade: websocket",
        ],
    ),
    "python_websockets": request(
        "/ws",
        [
            "Host: 127.0.0.1:8080",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: 9Lp0hWEFSUuo0xTx0YJ8mA==",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            "User-Agent: Python/3.11 websockets/12.0",
        ],
    ),
    "lowercase_names": request(
        "/ws",
        [
            "host: x",
            "upgrade: WebSocket",
            "connection: UPGRADE",
            f"sec-websocket-key: {RFC_KEY}",
            "SEC-WEBSOCKET-VERSION: 13",
            "oRiGiN: https://A.example",
        ],
    ),
    "two_connection_headers": request(
        headers=replaced(2, "Connection: keep-alive") + ["Connection: upgrade"]
    ),
    "spaces_and_tabs": request(
        headers=replaced(3, f"Sec-WebSocket-Key: \t {RFC_KEY} \t")
        + ["Upgrade:\tfoo ,  WEBSOCKET"]
    ),
    "lf_only": request(eol="\n"),
    "leading_crlf": "\r\n" + request(),
    "version_8": request(headers=replaced(4, "Sec-WebSocket-Version: 8")),
    "version_list": request(headers=replaced(4, "Sec-WebSocket-Version: 13, 8")),
    "no_version": request(headers=replaced(4, None)),
    "post": request(method="POST"),
    "head": request(method="HEAD"),
    "not_found": request("/api"),
    "absolute_uri": request("http://example.com/ws"),
    "http10": request(version="HTTP/1.0"),
    "plain_get": "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    "h2c": request(headers=replaced(1, "Upgrade: h2c")),
    "no_connection": request(headers=replaced(2, None)),
    "no_key": request(headers=replaced(3, None)),
    "short_key": request(headers=replaced(3, "Sec-WebSocket-Key: short==")),
    "bad_key_char": request(headers=replaced(3, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==")),
    "duplicate_key": request(headers=BASE + ["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="]),
    "duplicate_origin": request(headers=BASE + ["Origin: https://a", "Origin: https://b"]),
    "header_no_colon": request(headers=BASE + ["Bad"]),
    "too_many_headers": request(headers=BASE + [f"X-{i}: v" for i in range(28)]),
    "max_headers": request(headers=BASE + [f"X-{i}: v" for i in range(27)]),
    "long_cookie": request(headers=BASE + ["Cookie: session=" + "ab" * 700]),
    "partial_head": request()[:-2],
    "request_line_only": "GET /ws HTTP/1.1\r\n",
    "binary_garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello start
}
hs["origin_obs_text"] = request(headers=BASE + ["Origin: https://caf\xe9.example"]).encode("latin-1")
hs["pipelined_frame"] = request("/").encode() + bytes(
    [0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6F, 0x68, 0x6E]
)
hs["pipelined_request"] = request() + "GET / HTTP/1.1\r\n\r\n"
# A head of exactly 8192 bytes (the default limit) with a frame after it: the connection task keeps one
# byte of the frame in its buffer and sets the rest aside. One byte more and the head is refused (431).
_head = request(headers=BASE + ["Cookie: c="])
_pad = "x" * (8192 - len(_head))
hs["head_8192_then_frame"] = request(headers=BASE + ["Cookie: c=" + _pad]).encode() + bytes(
    [0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6F, 0x68, 0x6E]
)
hs["head_8193"] = request(headers=BASE + ["Cookie: c=" + _pad + "x"])
for name, data in hs.items():
    write("handshake", name, data)


# ------------------------------------------------------- frame_codec: [limits, reads] + client frames

DEFAULT = 0x36  # frame limit index 6, message limit index 6: 65536 each; fragments index 0: 1024
SMALL = 0x0A  # frame limit 125 (index 2), message limit 7 (index 1)
MIXED = 0x34  # frame limit 1024 (index 4), message limit 65536 (index 6)
LONG = 0xC0 | DEFAULT  # with reads 0xF0: also round-trips a payload over 64 KiB (64-bit length)
FRAGMENTS_1 = 0x40 | DEFAULT  # max_fragments 1 (index 1 in the top two bits)
FRAGMENTS_2 = 0x80 | DEFAULT  # max_fragments 2


def frame(first, payload=b"", mask=b"\x37\xfa\x21\x3d", masked=True, length=None):
    n = len(payload) if length is None else length
    out = bytes([first])
    m = 0x80 if masked else 0
    if n < 126:
        out += bytes([m | n])
    elif n < 65536:
        out += bytes([m | 126]) + struct.pack(">H", n)
    else:
        out += bytes([m | 127]) + struct.pack(">Q", n)
    if masked:
        out += mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    else:
        out += payload
    return out


def fc(name, stream, limits=DEFAULT, reads=0):
    write("frame_codec", name, bytes([limits, reads]) + stream)


IDENTIFY = b'{"op":"identify","id":"i1","user":"alice"}'
fc("text", frame(0x81, b"hello"))
fc("text_json_bytewise", frame(0x81, IDENTIFY), reads=1)
fc("binary_300", frame(0x82, bytes(range(256)) + bytes(44)), reads=2)
fc("text_16bit_len", frame(0x81, b"x" * 200), reads=3)
fc("ping", frame(0x89, b"are you there"))
fc("ping_empty", frame(0x89))
fc("pong", frame(0x8A, b"p"))
fc("close_1000_reason", frame(0x88, struct.pack(">H", 1000) + b"bye"))
fc("close_empty", frame(0x88))
fc("close_4001", frame(0x88, struct.pack(">H", 4001)))
fc("close_1005_invalid", frame(0x88, struct.pack(">H", 1005)))
fc("close_one_byte", frame(0x88, b"\x03"))
fc("close_bad_utf8", frame(0x88, struct.pack(">H", 1000) + b"\xff"))
fc("frames_after_close", frame(0x88, struct.pack(">H", 1001)) + frame(0x81, b"late"))
fc(
    "fragmented_with_ping",
    frame(0x01, b'{"op":"pi') + frame(0x89, b"x") + frame(0x00, b'ng","id"') + frame(0x80, b':"x"}'),
    reads=2,
)
fc("fragmented_binary", frame(0x02, b"ab") + frame(0x00, b"cd") + frame(0x80, b"ef"), reads=1)
fc("fragmented_utf8_split", frame(0x01, "é".encode()[:1]) + frame(0x80, "é".encode()[1:]))
fc("empty_fragments", frame(0x01) + frame(0x00) + frame(0x80))
fc("two_message_starts", frame(0x01, b"a") + frame(0x81, b"b"))
fc("continuation_alone", frame(0x80, b"x"))
fc("invalid_utf8_text", frame(0x81, b"\xff\xfe"))
fc("unmasked", frame(0x81, b"hi", masked=False))
fc("rsv1_set", frame(0xC1, b"x"))
fc("reserved_opcode_3", frame(0x83, b"x"))
fc("reserved_control_b", frame(0x8B))
fc("fragmented_ping", frame(0x09, b"x"))
fc("control_126", frame(0x89, b"\0" * 126))
fc("announces_2_62", frame(0x82, b"", length=1 << 62)[:14])
fc("announces_2_63", frame(0x82, b"", length=1 << 63)[:14])
fc("over_small_limit", frame(0x81, b"0123456789"), limits=SMALL)
fc("fragments_over_message_limit", frame(0x01, b"abcd") + frame(0x80, b"efgh"), limits=SMALL)
fc("mixed_limits", frame(0x82, b"z" * 1000) + frame(0x82, b"z" * 1025), limits=MIXED, reads=3)
fc("non_minimal_length", bytes([0x81, 0xFE, 0, 5]) + b"\0\0\0\0hello")
fc("header_only", frame(0x81, b"hello")[:4])
fc("long_round_trip", frame(0x81, b"long"), limits=LONG, reads=0xF0)
fc("many_small", b"".join(frame(0x81, b"{}") for _ in range(40)), reads=3)
fc("non_minimal_64", bytes([0x82, 0xFF]) + struct.pack(">Q", 5) + b"\0\0\0\0hello")
fc("non_minimal_64_for_300", bytes([0x82, 0xFF]) + struct.pack(">Q", 300) + b"\0\0\0\0" + bytes(300))
fc("top_bit_over_small_limit", frame(0x82, b"", length=(1 << 63) | 5)[:14], limits=SMALL)
fc("non_minimal_over_small_limit", bytes([0x81, 0xFE, 0, 8]) + b"\0\0\0\0" + bytes(8), limits=SMALL)
fc("fragments_over_limit_1", frame(0x01, b"a") + frame(0x80, b"b"), limits=FRAGMENTS_1)
fc("fragments_at_limit_2", frame(0x02, b"a") + frame(0x89) + frame(0x80, b"b"), limits=FRAGMENTS_2)
fc("fragments_over_limit_2", frame(0x01, b"a") + frame(0x00) + frame(0x80, b"b"), limits=FRAGMENTS_2)
fc(
    "empty_continuations_1024",
    frame(0x01, b"{") + b"".join(frame(0x00) for _ in range(1022)) + frame(0x80, b"}"),
    reads=3,
)
fc(
    "empty_continuations_1025",
    frame(0x01, b"{") + b"".join(frame(0x00) for _ in range(1023)) + frame(0x80, b"}"),
    reads=3,
)
fc("utf8_invalid_in_first_fragment", frame(0x01, b"\xc0\xaf"))
fc("utf8_invalid_at_second_fragment", frame(0x01, b"caf\xc3") + frame(0x00, b"\xff"), reads=1)
fc("utf8_cut_at_message_end", frame(0x01, b"ok") + frame(0x80, "\U0001F600".encode()[:3]))
fc(
    "utf8_one_byte_per_fragment",
    frame(0x01, "\U0001F600".encode()[:1])
    + frame(0x00, "\U0001F600".encode()[1:2])
    + frame(0x89, b"p")
    + frame(0x00, "\U0001F600".encode()[2:3])
    + frame(0x80, "\U0001F600".encode()[3:] + "é!".encode()),
    reads=2,
)


# ----------------------------------------------------------------- protocol: client frame payloads

LONG_NAME = "x" * 129
proto = {
    "identify": '{"op":"identify","id":"i1","user":"alice"}',
    "identify_no_id": '{"op":"identify","user":"alice"}',
    "identify_token": '{"op":"identify","id":"i1","token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.'
    'eyJzdWIiOiJhbGljZSIsImV4cCI6MTg5MzQ1NjAwMH0.c2ln"}',
    "identify_null_id": '{"op":"identify","id":null,"user":"bob"}',
    "send": '{"op":"send","id":"m1","to":"bob","data":{"text":"hi"}}',
    "send_number": '{"op":"send","id":"m2","to":"carol","data":1}',
    "send_null_data": '{"op":"send","to":"bob","data":null}',
    "send_no_data": '{"op":"send","id":"c","to":"bob"}',
    "send_floats": '{"op":"send","to":"b","data":[1e2,1.50,-0.0,1e308,5e-324,123456789012345678]}',
    "send_escapes": '{"op":"send","to":"b\\u00e9","data":"\\u00e9\\n\\"\\ud83d\\ude00\\t\\/"}',
    "send_nested": '{"op":"send","to":"b","data":{"a":[{"b":[[[{"c":true}]]]}],"d":false}}',
    "send_big_int": '{"op":"send","to":"b","data":18446744073709551616}',
    "send_u64_max": '{"op":"send","to":"b","data":[18446744073709551615,-9223372036854775808]}',
    "send_empty_to": '{"op":"send","to":"","data":1}',
    "send_control_to": '{"op":"send","to":"a\\u0001","data":1}',
    "send_c1_control_to": '{"op":"send","to":"a\\u0085","data":1}',
    "send_to_number": '{"op":"send","to":5,"data":1}',
    "subscribe": '{"op":"subscribe","id":"s1","channel":"room:1"}',
    "subscribe_long": '{"op":"subscribe","channel":"%s"}' % LONG_NAME,
    "subscribe_128": '{"op":"subscribe","channel":"%s"}' % ("y" * 128),
    "unsubscribe": '{"op":"unsubscribe","id":"u1","channel":"room:1"}',
    "publish": '{"op":"publish","id":"p1","channel":"room:1","data":{"text":"hello room"}}',
    "publish_string": '{"op":"publish","id":"p1","channel":"room:1","data":"hello room"}',
    "presence_users": '{"op":"presence","id":"q1","users":["bob","carol"]}',
    "presence_users_dup": '{"op":"presence","id":"q1","users":["bob","bob"]}',
    "presence_users_101": '{"op":"presence","users":[%s]}'
    % ",".join('"u%d"' % i for i in range(101)),
    "presence_users_not_array": '{"op":"presence","users":"bob"}',
    "presence_users_number": '{"op":"presence","users":["a",1]}',
    "presence_channel": '{"op":"presence","id":"q2","channel":"room:1"}',
    "presence_both": '{"op":"presence","users":["a"],"channel":"c"}',
    "presence_neither": '{"op":"presence"}',
    "ping": '{"op":"ping","id":"x"}',
    "ping_no_id": '{"op":"ping"}',
    "ping_id_number": '{"op":"ping","id":5}',
    "ping_id_64": '{"op":"ping","id":"%s"}' % ("i" * 64),
    "ping_id_65": '{"op":"ping","id":"%s"}' % ("i" * 65),
    "unknown_op": '{"op":"fly","id":"f1"}',
    "empty_op": '{"op":""}',
    "op_not_string": '{"op":1,"id":"a"}',
    "no_op": '{"id":"a"}',
    "not_object": "[1,2]",
    "string": '"identify"',
    "empty": "",
    "whitespace": " \t\r\n",
    "malformed": "{not json",
    "trailing": '{"op":"ping"} {"op":"ping"}',
    "duplicate_keys": '{"op":"ping","op":"send","id":"a","id":"b"}',
    "duplicate_keys_in_data": '{"op":"send","to":"b","data":{"a":1,"b":[1],"a":{"a":2},"a":3}}',
    "deep_1024": "[" * 1024 + "]" * 1024,
    "deep_1025": '{"op":"send","to":"b","data":' + "[" * 1025 + "]" * 1025 + "}",
    "extra_fields": '{"op":"ping","id":"x","extra":{"y":[1,2,3]},"z":null}',
    # The frame's own object is a level: 1 + 1023 = 1024 levels are accepted, 1025 are malformed.
    "send_depth_1024": '{"op":"send","to":"b","data":' + "[" * 1023 + "]" * 1023 + "}",
    "send_depth_1025": '{"op":"send","to":"b","data":' + "[" * 1024 + "]" * 1024 + "}",
    "identify_resume": '{"op":"identify","id":"i2","user":"alice",'
    '"resume":{"session":"9f3c2a7b41d0e865","epoch":"5b0e1c2d3a4f6789","seq":42}}',
    "identify_resume_empty": '{"op":"identify","user":"alice","resume":{}}',
    "identify_resume_null": '{"op":"identify","user":"alice","resume":null}',
    "identify_resume_seq_u64_max": '{"op":"identify","user":"a",'
    '"resume":{"epoch":"e","seq":18446744073709551615}}',
    "identify_resume_seq_without_epoch": '{"op":"identify","user":"a","resume":{"seq":3}}',
    "identify_resume_null_epoch_seq_0": '{"op":"identify","user":"a","resume":{"epoch":null,"seq":0}}',
    "identify_resume_negative_seq": '{"op":"identify","user":"a","resume":{"epoch":"e","seq":-1}}',
    "identify_resume_float_seq": '{"op":"identify","user":"a","resume":{"epoch":"e","seq":1.0}}',
    "identify_resume_empty_epoch": '{"op":"identify","user":"a","resume":{"epoch":"","seq":1}}',
    "identify_resume_epoch_65": '{"op":"identify","user":"a","resume":{"epoch":"%s","seq":1}}'
    % ("e" * 65),
    "identify_resume_session_number": '{"op":"identify","user":"a","resume":{"session":7}}',
    "identify_resume_not_object": '{"op":"identify","user":"a","resume":[1]}',
}
for name, data in proto.items():
    write("protocol", name, data)
write("protocol", "invalid_utf8_in_string", b'{"op":"send","to":"b","data":"\xff\xfe"}')
write("protocol", "invalid_utf8_in_id", b'{"op":"ping","id":"\xc3"}')
write("protocol", "nul_byte", b'{"op":"ping",\0"id":"x"}')
write("protocol", "bom", b'\xef\xbb\xbf{"op":"ping"}')
