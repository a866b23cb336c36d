//! A blocking tungstenite WebSocket client with timeouts on every read and write, protocol helpers
//! (identify, request/reply, ping/pong ordering checks) and close-code assertions.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{HandshakeError, Message, WebSocket};

/// Default bound for any single blocking read/write on a test socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for `expect_close` as a whole (data frames may keep arriving before the Close frame).
pub const EXPECT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client read: a data frame (JSON) or a Close frame.
#[derive(Debug)]
pub enum Incoming {
    /// A text or binary frame parsed as JSON.
    Json(Value),
    /// A Close frame with its code (None: empty close payload).
    Close(Option<u16>),
}

/// What `expect_close` saw before the Close frame.
#[derive(Debug, Default)]
pub struct CloseInfo {
    /// Server Ping frames read before the Close frame.
    pub pings: usize,
    /// Data frames read before the Close frame.
    pub data: Vec<Value>,
}

/// A blocking WebSocket test client (read/write timeouts of 10 s by default).
pub struct Client {
    /// The tungstenite connection.
    pub ws: WebSocket<TcpStream>,
    /// Server Ping frames seen so far.
    pub pings_seen: usize,
    /// Current read timeout; also bounds how long `try_recv` skips pings while waiting for a frame.
    timeout: Duration,
    /// The reason text of the Close frame received, once one was.
    pub close_reason: Option<String>,
    /// Check and remove `seq`/`epoch` of direct messages before returning them (the default), so tests
    /// about routing compare frames without them; resume tests keep them.
    strip_seq: bool,
}

/// Checks that a direct `message` frame carries a well-formed `seq` and `epoch`, and removes both.
fn strip_seq(v: &mut Value) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    if obj.get("op").and_then(Value::as_str) != Some("message") || obj.contains_key("channel") {
        return;
    }
    let seq = obj.remove("seq");
    let epoch = obj.remove("epoch");
    if let Some(seq) = seq {
        assert!(
            seq.as_u64().is_some_and(|s| s >= 1),
            "seq must be a positive integer: {seq}"
        );
        let epoch = epoch.expect("a message with seq has an epoch");
        assert!(
            epoch
                .as_str()
                .is_some_and(|e| e.len() == 16 && e.bytes().all(|b| b.is_ascii_hexdigit())),
            "epoch must be 16 hex digits: {epoch}"
        );
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
}

fn describe(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            "timed out waiting for a frame (read timeout)".to_string()
        }
        tungstenite::Error::Io(io) => format!(
            "I/O error without a Close frame (TCP reset/EOF?): {io} (kind {:?})",
            io.kind()
        ),
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => "connection closed (EOF/reset) without a Close frame".to_string(),
        tungstenite::Error::ConnectionClosed => "connection already closed".to_string(),
        other => format!("{other}"),
    }
}

impl Client {
    /// Connects and upgrades on `/`; panics on failure.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr, "/", IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Connects and upgrades on `path` with `timeout` as connect/read/write timeout.
    pub fn try_connect(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Client, String> {
        let stream =
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("TCP connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| format!("read timeout: {e}"))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| format!("write timeout: {e}"))?;
        let url = format!("ws://{addr}{path}");
        match tungstenite::client::client_with_config(url, stream, Some(ws_config())) {
            Ok((ws, _resp)) => Ok(Client {
                ws,
                pings_seen: 0,
                timeout,
                close_reason: None,
                strip_seq: true,
            }),
            Err(HandshakeError::Interrupted(_)) => Err("handshake timed out".to_string()),
            Err(HandshakeError::Failure(e)) => Err(format!("handshake failed: {}", describe(&e))),
        }
    }

    /// Returns direct messages with their `seq` and `epoch` (by default they are checked and removed).
    pub fn keep_seq(&mut self) {
        self.strip_seq = false;
    }

    /// Changes the read timeout of the underlying socket.
    pub fn set_read_timeout(&mut self, d: Duration) {
        self.timeout = d;
        self.ws
            .get_mut()
            .set_read_timeout(Some(d))
            .expect("set_read_timeout");
    }

    /// Sends a message; returns an error description on failure.
    pub fn try_send(&mut self, msg: Message) -> Result<(), String> {
        self.ws.send(msg).map_err(|e| describe(&e))
    }

    /// Sends `v` as a text frame; panics on failure.
    pub fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    /// Sends a text frame; panics on failure.
    pub fn send_text(&mut self, s: &str) {
        if let Err(e) = self.try_send(Message::text(s.to_string())) {
            panic!("send failed: {e}");
        }
    }

    /// Reads the next data or Close frame, skipping (and auto-answering) server pings.
    pub fn try_recv(&mut self) -> Result<Incoming, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let mut v: Value = serde_json::from_str(t.as_str())
                        .map_err(|e| format!("text frame is not JSON ({e}): {:?}", t.as_str()))?;
                    if self.strip_seq {
                        strip_seq(&mut v);
                    }
                    return Ok(Incoming::Json(v));
                }
                Ok(Message::Binary(b)) => {
                    return serde_json::from_slice(&b)
                        .map(Incoming::Json)
                        .map_err(|e| format!("binary frame is not JSON ({e}): {b:?}"));
                }
                Ok(Message::Ping(_)) => {
                    self.pings_seen += 1;
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "timed out waiting for a frame (only pings for {:?})",
                            self.timeout
                        ));
                    }
                }
                Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {}
                Ok(Message::Close(frame)) => {
                    // tungstenite queues the Close reply until the next read/write: send it now so the
                    // server can finish the closing handshake without waiting for its grace period.
                    let _ = self.ws.flush();
                    self.close_reason = Some(
                        frame
                            .as_ref()
                            .map(|f| f.reason.as_str().to_string())
                            .unwrap_or_default(),
                    );
                    return Ok(Incoming::Close(frame.map(|f| u16::from(f.code))));
                }
                Err(e) => return Err(describe(&e)),
            }
        }
    }

    /// Reads the next data frame as JSON; panics on Close, error or timeout.
    pub fn recv_json(&mut self) -> Value {
        match self.try_recv() {
            Ok(Incoming::Json(v)) => v,
            Ok(Incoming::Close(code)) => panic!("expected a data frame, got Close {code:?}"),
            Err(e) => panic!("expected a data frame: {e}"),
        }
    }

    /// Sends `v` and returns the next data frame.
    pub fn request(&mut self, v: Value) -> Value {
        self.send_json(&v);
        self.recv_json()
    }

    /// Identifies as `user` (dev mode) and returns the `ready` frame (asserts op, id and user).
    pub fn identify(&mut self, user: &str) -> Value {
        let ready = self.request(json!({"op": "identify", "id": "ident", "user": user}));
        assert_eq!(ready["op"], "ready", "identify reply for {user}: {ready}");
        assert_eq!(ready["user"], user, "identify reply for {user}: {ready}");
        assert_eq!(ready["id"], "ident", "identify reply for {user}: {ready}");
        ready
    }

    /// Sends a `ping` op and asserts that the very next data frame is the matching `pong`.
    pub fn ping_pong(&mut self, id: &str) {
        let reply = self.request(json!({"op": "ping", "id": id}));
        assert_eq!(
            reply,
            json!({"op": "pong", "id": id}),
            "expected pong {id} as the next frame"
        );
    }

    /// Reads until a Close frame and asserts its code; data frames and pings before it are collected.
    pub fn expect_close(&mut self, code: u16) -> CloseInfo {
        let mut info = CloseInfo::default();
        let start_pings = self.pings_seen;
        let deadline = Instant::now() + EXPECT_CLOSE_TIMEOUT;
        loop {
            assert!(
                Instant::now() < deadline,
                "expected Close {code}: none within {EXPECT_CLOSE_TIMEOUT:?} ({} data frames, last: {:?})",
                info.data.len(),
                info.data.last()
            );
            match self.try_recv() {
                Ok(Incoming::Json(v)) => info.data.push(v),
                Ok(Incoming::Close(got)) => {
                    info.pings = self.pings_seen - start_pings;
                    assert_eq!(
                        got,
                        Some(code),
                        "expected Close {code}, got Close {got:?} (after {} data frames, last: {:?})",
                        info.data.len(),
                        info.data.last()
                    );
                    return info;
                }
                Err(e) => panic!(
                    "expected Close {code}, got: {e} (after {} data frames, last: {:?})",
                    info.data.len(),
                    info.data.last()
                ),
            }
        }
    }

    /// Closes with 1000 and reads until the server finishes the closing handshake (bounded by the timeout).
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        loop {
            match self.ws.read() {
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Asserts that `v` is an error frame with `code` (and `id` when given).
pub fn assert_error(v: &Value, code: &str, id: Option<&str>) {
    assert_eq!(v["op"], "error", "expected error {code}, got {v}");
    assert_eq!(v["code"], code, "expected error {code}, got {v}");
    assert!(
        v["message"].is_string(),
        "error frame without a message string: {v}"
    );
    if let Some(id) = id {
        assert_eq!(v["id"], id, "error frame must echo id {id}: {v}");
    }
}
