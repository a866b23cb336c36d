//! Abuse: deeply nested JSON. Arrays and objects nested 10,000 deep (as the whole message, inside
//! `data`, inside another field) get error `bad_request` and the connection stays usable: the parser
//! refuses nesting past 1024 levels while it builds its tape, with no recursion, so nothing overflows a
//! shard's stack. Just under the limit a message is delivered intact. Memory stays where it was.

mod common;

use std::time::Duration;

use common::raw::{RawWs, assert_rss_within};
use common::{Node, NodeOpts};

/// `depth` levels of arrays around `1`.
fn arrays(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// `depth` levels of objects `{"a":...}` around `1`.
fn objects(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

/// Mixed: alternating objects and arrays.
fn mixed(depth: usize) -> String {
    let open: String = (0..depth)
        .map(|i| if i % 2 == 0 { r#"{"a":"# } else { "[" })
        .collect();
    let close: String = (0..depth)
        .rev()
        .map(|i| if i % 2 == 0 { "}" } else { "]" })
        .collect();
    format!("{open}1{close}")
}

/// Sends `text` and expects a `bad_request` error, then checks the connection still serves.
fn refused(ws: &mut RawWs, what: &str, text: &str) {
    let reply = ws.request(text);
    assert_eq!(reply["op"], "error", "{what}: {reply}");
    assert_eq!(reply["code"], "bad_request", "{what}: {reply}");
    ws.ping_pong(what);
}

#[test]
fn nesting_ten_thousand_deep_is_a_bad_request_and_the_connection_stays() {
    const DEEP: usize = 10_000;
    let node = Node::start(NodeOpts::new().set("limits.rate_limit_per_sec", 0));
    let baseline = node.rss_bytes();

    // Before identify: the frame is checked first, whatever its op.
    let mut anon = RawWs::connect(node.ws_addr);
    let reply = anon.request(&arrays(DEEP));
    assert_eq!(reply["code"], "bad_request", "anonymous: {reply}");
    anon.identify("anon-later");
    anon.ping_pong("anon");

    let mut ws = RawWs::connect(node.ws_addr);
    ws.identify("deep");
    for (shape, nest) in [
        ("arrays", arrays as fn(usize) -> String),
        ("objects", objects),
        ("mixed", mixed),
    ] {
        refused(&mut ws, &format!("whole message of {shape}"), &nest(DEEP));
        let send = format!(
            r#"{{"op":"send","id":"d","to":"deep","data":{}}}"#,
            nest(DEEP)
        );
        refused(&mut ws, &format!("{shape} in data"), &send);
        let publish = format!(
            r#"{{"op":"publish","id":"p","channel":"c","data":{{"x":{}}}}}"#,
            nest(DEEP)
        );
        refused(&mut ws, &format!("{shape} in publish data"), &publish);
        let in_id = format!(r#"{{"op":"ping","id":{}}}"#, nest(DEEP));
        refused(&mut ws, &format!("{shape} as the id"), &in_id);
    }

    // Just under the limit (the frame's own object is a level): delivered intact, nothing overflows
    // building, writing out or dropping it.
    let near = 1022;
    let send = format!(
        r#"{{"op":"send","id":"n","to":"deep","data":{}}}"#,
        mixed(near)
    );
    ws.send_frame(common::raw::FIN | common::raw::TEXT, send.as_bytes())
        .expect("send");
    // Read as text: the test's own JSON parser stops at 128 levels.
    let mut got_message = false;
    let mut got_ack = false;
    while !(got_message && got_ack) {
        let f = ws.read_frame().expect("a reply");
        if f.opcode != common::raw::TEXT {
            continue;
        }
        let text = String::from_utf8(f.payload).expect("UTF-8");
        if text.contains(r#""op":"message""#) {
            assert!(
                text.contains(&format!(r#""data":{}"#, mixed(near))),
                "the message lost its nesting: {}…",
                &text[..200.min(text.len())]
            );
            got_message = true;
        } else {
            assert!(
                text.contains(r#""op":"ack""#) && text.contains(r#""status":"delivered""#),
                "unexpected {text}"
            );
            got_ack = true;
        }
    }

    // Many more, for the memory bound.
    for i in 0..300 {
        let text = if i % 2 == 0 {
            arrays(DEEP)
        } else {
            objects(DEEP)
        };
        refused(&mut ws, "repeat", &text);
    }
    let after = node.rss_bytes();
    assert_rss_within(
        "json depth, after 300+ frames nested 10,000 deep",
        baseline,
        after,
        16,
    );
    // The node never crashed: its admin port and a new client still answer.
    assert_eq!(node.http_get("/healthz").0, 200);
    let open = node.wait_metric("gateway_connections_open", &[], 2.0, Duration::from_secs(5));
    assert_eq!(open, 2.0);
    let mut c = node.identified("after");
    c.ping_pong("alive");
}
