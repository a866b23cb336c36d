//! The client side of the Pusher Channels protocol 7, as far as the load generator needs it: wait for
//! `pusher:connection_established`, subscribe to public channels, answer the server's `pusher:ping`,
//! read events, and trigger events through the signed HTTP API (`POST /apps/<id>/events`).
//!
//! Every frame is `{"event":..,"channel":..,"data":..}`; the data of the events this load generator
//! triggers is a JSON string holding what protocol v1 carries in `data` (`[sender, seq, send time µs]`,
//! then `{"end": total}`), so the same checks count lost, duplicated and reordered deliveries. The HTTP
//! API is spoken as the server SDKs speak it: one request per TCP connection (`Connection: close`),
//! signed with [`shards::pusher::signature::sign_api_request`].

use std::{borrow::Cow, net::IpAddr, net::SocketAddr, time::Duration};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    cli::Target,
    net::{self, Data, Failure, Ws},
};

/// The name of the events a fanout publisher triggers.
pub const EVENT: &str = "loadtest";
/// The name of the probe events a fanout publisher triggers before `go` (subscribers skip them).
pub const PROBE_EVENT: &str = "loadtest-probe";
/// The answer to the server's heartbeat.
pub const PONG: &str = r#"{"event":"pusher:pong","data":"{}"}"#;
/// How long one HTTP API request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest HTTP answer read.
const MAX_ANSWER: usize = 64 << 10;

/// A server frame, borrowed where it can be.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    /// The event name.
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    /// The channel, for channel events.
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
    /// The data: a string holding JSON for most events, an object for `pusher:error`.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

impl Frame<'_> {
    /// The data as a string (most events carry JSON encoded in a string).
    pub fn data_str(&self) -> Option<&str> {
        self.data.as_ref().and_then(|d| d.as_str())
    }

    /// `pusher:error`'s code, or `pusher:subscription_error`'s status, as a failure kind.
    pub fn refusal(&self) -> Option<Failure> {
        let field = match self.event.as_ref() {
            "pusher:error" => "code",
            "pusher:subscription_error" => "status",
            _ => return None,
        };
        let data = match &self.data {
            Some(serde_json::Value::String(s)) => serde_json::from_str(s).ok(),
            other => other.clone(),
        };
        let code = data
            .as_ref()
            .and_then(|d| d.get(field))
            .and_then(|c| c.as_u64())
            .map_or_else(|| "none".to_string(), |c| c.to_string());
        let kind = self.event.trim_start_matches("pusher:");
        Some(Failure(format!("pusher_{kind}_{code}")))
    }
}

/// Parses a frame; `None` when it is not a Pusher frame.
pub fn parse(bytes: &[u8]) -> Option<Frame<'_>> {
    serde_json::from_slice(bytes).ok()
}

/// What [`control`] found in a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    /// `pusher:ping`: answer with [`PONG`].
    Ping,
    /// A fanout publisher's probe.
    Probe,
    /// Anything else.
    None,
}

/// True when `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Recognises the frames a reader handles by itself (cheaply: most frames are events and are only
/// scanned, not parsed).
pub fn control(bytes: &[u8]) -> Control {
    let ping = contains(bytes, b"pusher:ping");
    let probe = !ping && contains(bytes, PROBE_EVENT.as_bytes());
    if !(ping || probe) {
        return Control::None;
    }
    match parse(bytes).map(|f| f.event) {
        Some(e) if e == "pusher:ping" => Control::Ping,
        Some(e) if e == PROBE_EVENT => Control::Probe,
        _ => Control::None,
    }
}

/// Reads the next frame that is not a ping (pings are answered).
pub async fn recv(ws: &mut Ws) -> Result<Data, Failure> {
    loop {
        let data = net::recv(ws).await?;
        if control(data.bytes()) == Control::Ping {
            net::send_text(ws, PONG.to_string()).await?;
            continue;
        }
        return Ok(data);
    }
}

/// Opens a WebSocket to `target` (a `/app/<key>` URL) and waits for `pusher:connection_established`
/// within [`net::SETUP_TIMEOUT`]; a `pusher:error` first is a failure `pusher_error_<code>`.
pub async fn connect(target: &Target, source: Option<IpAddr>) -> Result<Ws, Failure> {
    let setup = async {
        let mut ws = net::open(target, source).await?;
        loop {
            let data = recv(&mut ws).await?;
            let Some(frame) = parse(data.bytes()) else {
                return Err(Failure::new("bad_frame"));
            };
            if frame.event == "pusher:connection_established" {
                return Ok(ws);
            }
            if let Some(f) = frame.refusal() {
                return Err(f);
            }
        }
    };
    tokio::time::timeout(net::SETUP_TIMEOUT, setup)
        .await
        .unwrap_or_else(|_| Err(Failure::new("timeout")))
}

/// Subscribes to the public channel `channel` and waits for
/// `pusher_internal:subscription_succeeded`; a `pusher:subscription_error` is a failure
/// `pusher_subscription_error_<status>`.
pub async fn subscribe(ws: &mut Ws, channel: &str) -> Result<(), Failure> {
    let name = serde_json::to_string(channel).expect("a string serialises");
    let request =
        format!(r#"{{"event":"pusher:subscribe","data":{{"channel":{name},"auth":""}}}}"#);
    net::send_text(ws, request).await?;
    loop {
        let data = recv(ws).await?;
        let Some(frame) = parse(data.bytes()) else {
            return Err(Failure::new("bad_frame"));
        };
        let ours = frame.channel.as_deref() == Some(channel);
        if ours && frame.event == "pusher_internal:subscription_succeeded" {
            return Ok(());
        }
        if let Some(f) = frame.refusal() {
            return Err(f);
        }
    }
}

/// Where and as whom HTTP API triggers are sent.
#[derive(Clone, Debug)]
pub struct Api {
    /// The server (any node of the cluster).
    pub addr: SocketAddr,
    /// The app id.
    pub app_id: String,
    /// The app key.
    pub key: String,
    /// The app secret.
    pub secret: String,
}

impl Api {
    /// The request that triggers `event` on `channel` with `data` (a string), signed at `unix_now`.
    pub fn request(&self, event: &str, channel: &str, data: &str, unix_now: u64) -> Vec<u8> {
        let body = serde_json::json!({ "name": event, "channels": [channel], "data": data });
        let body = serde_json::to_vec(&body).expect("JSON serialises");
        let path = format!("/apps/{}/events", self.app_id);
        let query = shards::pusher::signature::sign_api_request(
            (&self.key, &self.secret),
            ("POST", &path),
            &[],
            &body,
            unix_now,
        );
        let mut req = format!(
            "POST {path}?{query} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        req
    }

    /// Triggers `event` on `channel` with `data`: one request on a new connection from `source`; a
    /// status other than 2xx is a failure `http_<status>`.
    pub async fn trigger(
        &self,
        source: Option<IpAddr>,
        event: &str,
        channel: &str,
        data: &str,
    ) -> Result<(), Failure> {
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let req = self.request(event, channel, data, unix_now);
        let exchange = async {
            let mut stream = net::tcp(self.addr, source)
                .await
                .map_err(|e| Failure(net::io_kind(&e)))?;
            stream
                .write_all(&req)
                .await
                .map_err(|e| Failure(net::io_kind(&e)))?;
            read_answer(&mut stream).await
        };
        let status = tokio::time::timeout(HTTP_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(Failure::new("http_timeout")))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(Failure(format!("http_{status}")))
        }
    }
}

/// Reads an HTTP/1.1 answer until its body is complete (by `Content-Length`, else the end of the
/// stream); returns its status.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> Result<u16, Failure> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| Failure(net::io_kind(&e)))?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(answer) = answer_status(&buf, n == 0)? {
            return Ok(answer);
        }
        if buf.len() > MAX_ANSWER {
            return Err(Failure::new("http_too_big"));
        }
    }
}

/// The status of a buffered answer once it is complete (`eof`: the stream ended), `None` while more
/// is expected.
fn answer_status(buf: &[u8], eof: bool) -> Result<Option<u16>, Failure> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if eof {
            Err(Failure::new("http_truncated"))
        } else {
            Ok(None)
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Failure::new("http_bad_answer"))?;
    let length = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    let complete = match length {
        Some(len) => buf.len() >= head_end + 4 + len,
        None => eof,
    };
    Ok(complete.then_some(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_controls() {
        let ping = br#"{"event":"pusher:ping","data":"{}"}"#;
        assert_eq!(control(ping), Control::Ping);
        let probe = br#"{"channel":"c","event":"loadtest-probe","data":"{\"probe\":1}"}"#;
        assert_eq!(control(probe), Control::Probe);
        let event = br#"{"event":"loadtest","channel":"c","data":"[0,1,2]"}"#;
        assert_eq!(control(event), Control::None);
        let f = parse(event).unwrap();
        assert_eq!(
            (f.event.as_ref(), f.data_str()),
            ("loadtest", Some("[0,1,2]"))
        );
        assert_eq!(f.channel.as_deref(), Some("c"));
        let err = br#"{"event":"pusher:error","data":{"code":4001,"message":"no"}}"#;
        assert_eq!(
            parse(err).unwrap().refusal().unwrap().0,
            "pusher_error_4001"
        );
        let sub =
            br#"{"event":"pusher:subscription_error","channel":"c","data":"{\"status\":401}"}"#;
        let kind = parse(sub).unwrap().refusal().unwrap().0;
        assert_eq!(kind, "pusher_subscription_error_401");
    }

    #[test]
    fn http_answers() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(answer_status(ok, false).unwrap(), Some(200));
        assert_eq!(answer_status(&ok[..ok.len() - 1], false).unwrap(), None);
        let no_len = b"HTTP/1.1 401 Unauthorized\r\n\r\n{\"error\":\"x\"}";
        assert_eq!(answer_status(no_len, false).unwrap(), None);
        assert_eq!(answer_status(no_len, true).unwrap(), Some(401));
        assert!(answer_status(b"HTTP/1.1 200", true).is_err());
    }

    #[test]
    fn requests_are_signed_as_the_sdks_sign_them() {
        let api = Api {
            addr: "127.0.0.1:6001".parse().unwrap(),
            app_id: "app-1".into(),
            key: "key-1".into(),
            secret: "secret-1".into(),
        };
        let req = String::from_utf8(api.request(EVENT, "c", "[0,1,2]", 1_700_000_000)).unwrap();
        let (head, body) = req.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            body,
            r#"{"channels":["c"],"data":"[0,1,2]","name":"loadtest"}"#
        );
        let target = head.lines().next().unwrap().split(' ').nth(1).unwrap();
        let (path, query) = target.split_once('?').unwrap();
        assert_eq!(path, "/apps/app-1/events");
        let params: Vec<(&str, &str)> =
            query.split('&').filter_map(|p| p.split_once('=')).collect();
        let ok = shards::pusher::signature::verify_api_request(
            ("key-1", "secret-1"),
            ("POST", path),
            &params,
            body.as_bytes(),
            1_700_000_000,
        );
        assert!(ok.is_ok());
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
