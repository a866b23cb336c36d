//! A WebSocket connection over a plain `TcpStream` with every byte written by hand, for tests that send
//! what no client library will (unmasked frames, reserved bits, broken close payloads) and read exactly
//! the frames the server sends back, up to its EOF.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::IO_TIMEOUT;

/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;

/// An upgraded connection positioned right after the server's `101` response.
pub struct RawWs {
    /// The socket; reads time out after [`IO_TIMEOUT`].
    pub stream: TcpStream,
}

/// One frame as the server sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFrame {
    /// The FIN bit.
    pub fin: bool,
    /// The opcode (low four bits of the first byte).
    pub opcode: u8,
    /// The payload (server frames are never masked).
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The close code of a close frame with a payload.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A masked client frame: `first` is the first header byte (FIN, RSV bits, opcode).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![first];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

impl RawWs {
    /// Connects to `addr` and performs the upgrade on `/ws`; panics if the answer is not `101`.
    pub fn connect(addr: SocketAddr) -> RawWs {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        write!(
            stream,
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream
                .read_exact(&mut byte)
                .expect("read the upgrade response");
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "upgrade refused: {}",
            String::from_utf8_lossy(&head)
        );
        RawWs { stream }
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    /// Reads until the server closes the TCP connection (EOF or reset) and parses what it sent. Panics
    /// when the read times out: the server kept the connection open, or a frame is cut short.
    pub fn frames_until_eof(&mut self) -> Vec<ServerFrame> {
        let mut got = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!(
                    "no EOF from the server ({} bytes so far: {:?}): {e}",
                    got.len(),
                    parse_frames(&got)
                ),
            }
        }
        parse_frames(&got)
    }
}

/// Splits unmasked server frames; panics on a truncated frame.
pub fn parse_frames(mut bytes: &[u8]) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 2, "truncated frame header: {bytes:?}");
        let (fin, opcode) = (bytes[0] & 0x80 != 0, bytes[0] & 0x0f);
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, head) = match bytes[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (usize::from(n), 2),
        };
        assert!(bytes.len() >= head + len, "truncated frame: {bytes:?}");
        frames.push(ServerFrame {
            fin,
            opcode,
            payload: bytes[head..head + len].to_vec(),
        });
        bytes = &bytes[head + len..];
    }
    frames
}
