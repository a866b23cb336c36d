//! Opening, identifying, reading and closing one client WebSocket connection.
//!
//! Each socket is bound to its planned loopback source address before connecting (with
//! IP_BIND_ADDRESS_NO_PORT, so the port is chosen per destination at connect time and one source
//! address is good for a whole port range per server). The WebSocket layer uses a 4 KiB read buffer so
//! tens of thousands of mostly idle connections stay cheap. Every failure is reduced to a short
//! *kind* (`refused`, `timeout`, `close_1013`, `http_404`, ...) that reports count by.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use shards::protocol::client::{self, ServerFrame};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{
        Error as WsError, Message,
        protocol::{WebSocketConfig, frame::coding::CloseCode},
    },
};

use crate::cli::Target;

/// A client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// How long connect + handshake + identify may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a close handshake may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection failed, as a short kind for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl Failure {
    /// A failure of kind `k`.
    pub fn new(k: impl Into<String>) -> Self {
        Failure(k.into())
    }
}

/// The WebSocket settings of every client connection.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 << 10)
        .write_buffer_size(16 << 10)
        .max_message_size(Some(64 << 20))
}

/// The kind of an I/O error.
pub fn io_kind(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused".into(),
        Some(libc::ECONNRESET) => "reset".into(),
        Some(libc::EADDRNOTAVAIL) => "addr_not_available".into(),
        Some(libc::EADDRINUSE) => "addr_in_use".into(),
        Some(libc::EMFILE | libc::ENFILE) => "too_many_open_files".into(),
        Some(libc::ETIMEDOUT) => "timeout".into(),
        Some(libc::EPIPE) => "broken_pipe".into(),
        Some(libc::ENOBUFS | libc::ENOMEM) => "no_memory".into(),
        Some(n) => format!("errno_{n}"),
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof => "eof".into(),
            io::ErrorKind::TimedOut => "timeout".into(),
            k => format!("io_{k:?}").to_lowercase(),
        },
    }
}

/// The kind of a WebSocket error.
pub fn ws_kind(e: &WsError) -> String {
    match e {
        WsError::Io(e) => io_kind(e),
        WsError::Http(resp) => format!("http_{}", resp.status().as_u16()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed".into(),
        WsError::Protocol(p) => {
            // The variant's name in snake case: `protocol_reset_without_closing_handshake`, ...
            let name = format!("{p:?}");
            let mut kind = String::from("protocol");
            for c in name.chars().take_while(|c| c.is_ascii_alphanumeric()) {
                if c.is_ascii_uppercase() {
                    kind.push('_');
                }
                kind.push(c.to_ascii_lowercase());
            }
            kind
        }
        WsError::Capacity(_) => "too_big".into(),
        WsError::Utf8(_) => "invalid_utf8".into(),
        _ => "ws_error".into(),
    }
}

/// Sets IP_BIND_ADDRESS_NO_PORT: bind fixes the address only, connect picks the port.
fn bind_address_no_port(sock: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the fd is a valid socket owned by `sock` for the whole call; the option value points to
    // a live c_int and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A TCP connection to `server` from `source` (IPv4 only; `None`: the kernel's choice).
pub async fn tcp(server: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    sock.set_nonblocking(true)?;
    sock.set_reuse_address(false)?;
    sock.set_tcp_nodelay(true)?;
    if let (Some(src), true) = (source, server.is_ipv4()) {
        bind_address_no_port(&sock)?;
        sock.bind(&SocketAddr::new(src, 0).into())?;
    }
    let std_stream: std::net::TcpStream = sock.into();
    TcpSocket::from_std_stream(std_stream).connect(server).await
}

/// Opens a WebSocket to `target` from `source`, without identifying.
pub async fn open(target: &Target, source: Option<IpAddr>) -> Result<Ws, Failure> {
    let stream = tcp(target.addr, source)
        .await
        .map_err(|e| Failure(io_kind(&e)))?;
    let (ws, _resp) = client_async_with_config(target.url.as_str(), stream, Some(ws_config()))
        .await
        .map_err(|e| Failure(ws_kind(&e)))?;
    Ok(ws)
}

/// A data frame's payload.
pub enum Data {
    /// A text frame.
    Text(bytes::Bytes),
    /// A binary frame.
    Binary(bytes::Bytes),
}

impl Data {
    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Data::Text(b) | Data::Binary(b) => b,
        }
    }
}

/// The next data frame; control frames are handled (pongs by tungstenite) and skipped. A close frame,
/// the end of the stream or an error is a [`Failure`].
pub async fn recv(ws: &mut Ws) -> Result<Data, Failure> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(Data::Text(bytes::Bytes::from(t))),
            Some(Ok(Message::Binary(b))) => return Ok(Data::Binary(b)),
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                return Err(Failure(format!("close_{code}")));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(Failure(ws_kind(&e))),
            None => return Err(Failure::new("eof")),
        }
    }
}

/// Sends one text message (written at once).
pub async fn send_text(ws: &mut Ws, text: String) -> Result<(), Failure> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| Failure(ws_kind(&e)))
}

/// Queues one message without flushing.
pub async fn feed(ws: &mut Ws, msg: Message) -> Result<(), Failure> {
    ws.feed(msg).await.map_err(|e| Failure(ws_kind(&e)))
}

/// Writes everything queued.
pub async fn flush(ws: &mut Ws) -> Result<(), Failure> {
    SinkExt::flush(ws).await.map_err(|e| Failure(ws_kind(&e)))
}

/// Sends `identify` as `user` and waits for `ready` (or the error that refuses it).
pub async fn identify(ws: &mut Ws, user: &str) -> Result<(), Failure> {
    send_text(ws, client::identify_user(Some("i"), user)).await?;
    loop {
        let data = recv(ws).await?;
        let mut buf = data.bytes().to_vec();
        match ServerFrame::parse(&mut buf) {
            Ok(ServerFrame::Ready { .. }) => return Ok(()),
            Ok(ServerFrame::Error { code, .. }) => {
                return Err(Failure(format!("server_{}", code.as_str())));
            }
            Ok(_) => continue,
            Err(_) => return Err(Failure::new("bad_frame")),
        }
    }
}

/// Opens, and identifies as `user` unless it is `None` (raw mode), within [`SETUP_TIMEOUT`].
pub async fn connect(
    target: &Target,
    source: Option<IpAddr>,
    user: Option<&str>,
) -> Result<Ws, Failure> {
    let setup = async {
        let mut ws = open(target, source).await?;
        if let Some(user) = user {
            identify(&mut ws, user).await?;
        }
        Ok(ws)
    };
    tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .unwrap_or_else(|_| Err(Failure::new("timeout")))
}

/// Closes with 1000 and waits (briefly) for the server's close and the end of the stream.
pub async fn close(mut ws: Ws) {
    let done = async {
        let _ = ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
        while let Some(Ok(_)) = ws.next().await {}
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, done).await;
}

/// Closes and reports whether the close handshake completed cleanly.
pub async fn close_checked(mut ws: Ws) -> Result<(), Failure> {
    let done = async {
        ws.close(None).await.map_err(|e| Failure(ws_kind(&e)))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => continue,
                Some(Err(WsError::ConnectionClosed)) => return Ok(()),
                Some(Err(e)) => return Err(Failure(ws_kind(&e))),
            }
        }
    };
    tokio::time::timeout(CLOSE_TIMEOUT, done)
        .await
        .unwrap_or_else(|_| Err(Failure::new("close_timeout")))
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::error::ProtocolError;

    use super::*;

    #[test]
    fn failures_have_short_kinds() {
        let e = WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(ws_kind(&e), "protocol_reset_without_closing_handshake");
        let e = WsError::Io(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(ws_kind(&e), "refused");
        assert_eq!(
            io_kind(&io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)),
            "addr_not_available"
        );
        assert_eq!(ws_kind(&WsError::ConnectionClosed), "closed");
    }
}
