//! A raw WebSocket client for abuse tests: frames are built byte by byte (any length encoding, opcode,
//! fragmenting or payload, valid or not) and the server's frames are read back without a library's
//! checks in between. Also the process-level helpers those tests need: the node's resident memory and
//! the test process's open-file limit.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::IO_TIMEOUT;

/// A valid upgrade request on `/ws`.
pub const UPGRADE_REQUEST: &str = "GET /ws HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Opcodes, as the low nibble of a frame's first byte.
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;
/// The FIN bit of a frame's first byte.
pub const FIN: u8 = 0x80;

/// The mask every frame from [`frame`] carries.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame: `first` is FIN and opcode (`FIN | TEXT`), the length in its shortest form.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = match len {
        0..=125 => vec![first, 0x80 | len as u8],
        126..=65535 => {
            let mut h = vec![first, 0x80 | 126];
            h.extend_from_slice(&(len as u16).to_be_bytes());
            h
        }
        _ => {
            let mut h = vec![first, 0x80 | 127];
            h.extend_from_slice(&(len as u64).to_be_bytes());
            h
        }
    };
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A masked frame header with a 64-bit length field holding `len` as given (any value, minimal or not),
/// and no payload.
pub fn header_u64(first: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&MASK);
    out
}

/// A frame read from the server: opcode, FIN and payload.
#[derive(Debug)]
pub struct ServerFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// A raw client connection.
pub struct RawWs {
    /// The socket (read and write timeouts of [`IO_TIMEOUT`]).
    pub stream: TcpStream,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects to `addr` and completes the upgrade; panics on failure.
    pub fn connect(addr: SocketAddr) -> RawWs {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        RawWs::upgrade(stream)
    }

    /// Upgrades an already connected `stream`; panics unless the answer is `101`.
    pub fn upgrade(stream: TcpStream) -> RawWs {
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
        };
        ws.send_raw(UPGRADE_REQUEST.as_bytes())
            .expect("send the upgrade request");
        let head = ws.read_head().expect("read the upgrade response");
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "expected 101 Switching Protocols, got {head:?}"
        );
        ws
    }

    /// Reads an HTTP response head (up to the blank line); bytes after it stay buffered.
    pub fn read_head(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Ok(String::from_utf8_lossy(&head).into_owned());
            }
            self.fill()?;
        }
    }

    /// Writes `bytes` as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes one masked frame (see [`frame`]).
    pub fn send_frame(&mut self, first: u8, payload: &[u8]) -> io::Result<()> {
        self.send_raw(&frame(first, payload))
    }

    /// Reads one more chunk from the socket into the buffer; EOF is an error.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF"));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads the next frame the server sends.
    pub fn read_frame(&mut self) -> io::Result<ServerFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(frame);
            }
            self.fill()?;
        }
    }

    /// Reads frames until a data frame and parses it as JSON (pings, pongs skipped); panics on a close,
    /// an error or after [`IO_TIMEOUT`].
    pub fn recv_json(&mut self) -> Value {
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            let f = self
                .read_frame()
                .unwrap_or_else(|e| panic!("expected a data frame: {e}"));
            match f.opcode {
                TEXT | BINARY => {
                    return serde_json::from_slice(&f.payload).unwrap_or_else(|e| {
                        panic!("data frame is not JSON ({e}): {:?}", f.payload)
                    });
                }
                CLOSE => panic!(
                    "expected a data frame, got close {:?}",
                    close_of(&f.payload)
                ),
                _ => {}
            }
        }
        panic!("no data frame within {IO_TIMEOUT:?}");
    }

    /// Sends `text` in one text frame and returns the next data frame.
    pub fn request(&mut self, text: &str) -> Value {
        self.send_frame(FIN | TEXT, text.as_bytes())
            .expect("send a request");
        self.recv_json()
    }

    /// Identifies as `user` (dev mode); asserts the `ready` reply.
    pub fn identify(&mut self, user: &str) {
        let ready = self.request(&format!(r#"{{"op":"identify","user":"{user}"}}"#));
        assert_eq!(ready["op"], "ready", "identify reply: {ready}");
    }

    /// An application-level ping round trip: the connection is open and serving.
    pub fn ping_pong(&mut self, id: &str) {
        let reply = self.request(&format!(r#"{{"op":"ping","id":"{id}"}}"#));
        assert_eq!(reply["op"], "pong", "expected pong {id}: {reply}");
        assert_eq!(reply["id"], id, "expected pong {id}: {reply}");
    }

    /// Reads until the server's close frame; returns its code and reason and how many frames came
    /// before it. Panics on EOF or reset before a close frame.
    pub fn expect_close(&mut self) -> (u16, String, usize) {
        let mut before = 0;
        loop {
            let f = self
                .read_frame()
                .unwrap_or_else(|e| panic!("expected a close frame after {before} frames: {e}"));
            if f.opcode == CLOSE {
                let (code, reason) = close_of(&f.payload);
                return (code, reason, before);
            }
            before += 1;
        }
    }

    /// [`expect_close`](Self::expect_close), asserting the code; returns the reason.
    pub fn expect_close_code(&mut self, code: u16) -> String {
        let (got, reason, before) = self.expect_close();
        assert_eq!(
            got, code,
            "expected close {code}, got {got} ({reason:?}) after {before} frames"
        );
        reason
    }

    /// Closes with 1000 and waits (bounded) for the server's close frame and EOF.
    pub fn close(mut self) {
        let _ = self.send_frame(FIN | CLOSE, &1000u16.to_be_bytes());
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            match self.read_frame() {
                Ok(f) if f.opcode == CLOSE => break,
                Ok(_) => {}
                Err(_) => return,
            }
        }
        self.closed_within(IO_TIMEOUT);
    }

    /// After the close frame: true once the server closed TCP (EOF or reset) within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)));
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Code and reason of a close payload (1005 when empty).
pub fn close_of(payload: &[u8]) -> (u16, String) {
    if payload.len() < 2 {
        return (1005, String::new());
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8_lossy(&payload[2..]).into_owned())
}

/// One complete server frame at the start of `buf`, with the bytes it takes.
fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (fin, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x0f);
    let masked = buf[1] & 0x80 != 0;
    let (len, mut pos) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = buf.get(pos..pos + 4)?.try_into().ok()?;
        pos += 4;
        Some(m)
    } else {
        None
    };
    let mut payload = buf.get(pos..pos + len)?.to_vec();
    if let Some(m) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= m[i % 4]);
    }
    Some((
        ServerFrame {
            fin,
            opcode,
            payload,
        },
        pos + len,
    ))
}

/// Resident memory of process `pid` (VmRSS of /proc/<pid>/status), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kib * 1024
}

/// Raises this process's soft open-file limit towards `want` (at most the hard limit); returns the soft
/// limit in force afterwards. Children (the node) inherit it.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    // rlim_t is u64 on Linux.
    let target = want.min(lim.rlim_max);
    if lim.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return target;
        }
    }
    lim.rlim_cur
}

/// Bytes as MiB with one decimal, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Prints the node's RSS against its baseline (`what` names the load) and asserts it grew by at most
/// `bound_mib` MiB.
pub fn assert_rss_within(what: &str, baseline: u64, now: u64, bound_mib: u64) {
    eprintln!(
        "{what}: RSS baseline {}, now {} (bound +{bound_mib} MiB)",
        mib(baseline),
        mib(now)
    );
    assert!(
        now <= baseline + bound_mib * 1024 * 1024,
        "{what}: RSS grew from {} to {}",
        mib(baseline),
        mib(now)
    );
}
