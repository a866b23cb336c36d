//! The Origin allow-list: an allowed Origin gets a working session; a foreign or missing Origin is
//! upgraded and then closed at once with 1008 (so a browser sees a close code, not a failed upgrade).

mod common;

use std::{net::TcpStream, time::Duration};

use common::{Node, NodeOpts};
use tungstenite::{
    Message, WebSocket,
    client::{IntoClientRequest, client},
    protocol::frame::coding::CloseCode,
};

/// Upgrades on `/ws` with `origin` (or none).
fn connect_with_origin(node: &Node, origin: Option<&str>) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(node.ws_addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut req = format!("ws://{}/ws", node.ws_addr)
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    client(req, stream).expect("the upgrade itself succeeds").0
}

/// Reads until the close frame, sends the close reply (as browsers do at once); returns its code.
fn close_code(ws: &mut WebSocket<TcpStream>) -> u16 {
    loop {
        match ws.read().expect("a close frame, not a reset") {
            Message::Close(Some(frame)) => {
                let _ = ws.flush();
                return u16::from(frame.code);
            }
            Message::Close(None) => panic!("close frame without a code"),
            _ => {}
        }
    }
}

#[test]
fn only_listed_origins_get_a_session() {
    let node = Node::start(NodeOpts::new().set(
        "websocket.allowed_origins",
        r#"["https://app.example", "https://admin.example"]"#,
    ));

    let mut ok = connect_with_origin(&node, Some("https://admin.example"));
    ok.send(Message::text(
        r#"{"op":"identify","id":"i","user":"alice"}"#,
    ))
    .unwrap();
    let reply = loop {
        if let Message::Text(t) = ok.read().unwrap() {
            break t;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["op"], "ready", "allowed origin must be served: {reply}");
    assert_eq!(v["user"], "alice");

    let mut foreign = connect_with_origin(&node, Some("https://evil.example"));
    assert_eq!(close_code(&mut foreign), u16::from(CloseCode::Policy));

    let mut missing = connect_with_origin(&node, None);
    assert_eq!(close_code(&mut missing), 1008);

    // The refused ones are counted as policy closes; the allowed session is untouched.
    let policy = node.wait_metric(
        "gateway_connections_closed_total",
        &[("reason", "policy")],
        2.0,
        Duration::from_secs(10),
    );
    assert_eq!(policy, 2.0);
    ok.send(Message::text(r#"{"op":"ping","id":"p"}"#)).unwrap();
    let pong = loop {
        if let Message::Text(t) = ok.read().unwrap() {
            break t;
        }
    };
    assert!(pong.contains("\"pong\""), "{pong}");
}

#[test]
fn without_an_allow_list_any_origin_is_accepted() {
    let node = Node::start(NodeOpts::new());
    for origin in [Some("https://anything.example"), None] {
        let mut ws = connect_with_origin(&node, origin);
        ws.send(Message::text(r#"{"op":"identify","user":"bob"}"#))
            .unwrap();
        let reply = loop {
            if let Message::Text(t) = ws.read().unwrap() {
                break t;
            }
        };
        assert!(reply.contains("\"ready\""), "{reply}");
    }
}
