//! A TCP proxy in front of a real `redis-server` that can lose one reply.
//!
//! Armed with a marker, it forwards the client's bytes that contain the marker to Redis, gives Redis
//! time to run them, then closes that connection on both sides without passing the reply on: the
//! request ran, and the client cannot know. No outage of the server itself produces this failure
//! (a killed server runs nothing, a paused one runs nothing until it answers), so the proxy makes it.
//! Every other byte, on every connection, is passed through unchanged.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long Redis gets to run the request before its connection is cut.
const RUN_TIME: Duration = Duration::from_millis(300);

/// The proxy; its threads end with the process.
pub struct CutProxy {
    /// Where clients connect.
    pub port: u16,
    /// The marker of the request whose reply is to be lost, and how long Redis's replies on its
    /// connection are held back before the cut; taken by the cut.
    armed: Arc<Mutex<Option<Armed>>>,
    /// Connections cut so far.
    cuts: Arc<AtomicUsize>,
}

impl CutProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let armed: Arc<Mutex<Option<Armed>>> = Arc::default();
        let cuts: Arc<AtomicUsize> = Arc::default();
        let (a, c) = (armed.clone(), cuts.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue; // Redis is down: the client sees its connection close
                };
                pair(client, server, a.clone(), c.clone());
            }
        });
        CutProxy { port, armed, cuts }
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Loses the reply to the next request whose bytes contain `marker`: its connection is cut
    /// once Redis has had time to run it.
    pub fn arm(&self, marker: &[u8]) {
        self.stall(marker, RUN_TIME);
    }

    /// Like [`arm`](Self::arm), but the connection stays open and silent for `hold` first: Redis runs
    /// the request and its client hears nothing (a server that stopped answering).
    pub fn stall(&self, marker: &[u8], hold: Duration) {
        *self.armed.lock().unwrap() = Some(Armed {
            marker: marker.to_vec(),
            hold,
        });
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// A lost reply to come.
struct Armed {
    marker: Vec<u8>,
    hold: Duration,
}

/// Forwards one connection both ways until either side closes or the cut.
fn pair(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<Mutex<Option<Armed>>>,
    cuts: Arc<AtomicUsize>,
) {
    let cut = Arc::new(AtomicBool::new(false));
    let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut s_in, mut c_out) = (server, client);
    let cut_up = cut.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        // The last bytes seen, so a marker split across two reads is still found.
        let mut window: Vec<u8> = Vec::new();
        loop {
            let n = match c_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            window.extend_from_slice(&buf[..n]);
            let hit = {
                let mut armed = armed.lock().unwrap();
                let found = armed
                    .as_ref()
                    .is_some_and(|a| window.windows(a.marker.len()).any(|w| w == &a.marker[..]));
                if found {
                    armed.take().map(|a| a.hold)
                } else {
                    None
                }
            };
            let keep = window.len().saturating_sub(256);
            window.drain(..keep);
            if hit.is_some() {
                // Set before the request goes on, so its reply is never passed back.
                cut_up.store(true, Ordering::SeqCst);
            }
            if s_out.write_all(&buf[..n]).is_err() {
                break;
            }
            if let Some(hold) = hit {
                thread::sleep(hold);
                cuts.fetch_add(1, Ordering::SeqCst);
                let _ = c_in.shutdown(Shutdown::Both);
                let _ = s_out.shutdown(Shutdown::Both);
                break;
            }
        }
        let _ = s_out.shutdown(Shutdown::Write);
    });
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match s_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if cut.load(Ordering::SeqCst) {
                return; // the reply is lost; the other direction closes the connection
            }
            if c_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c_out.shutdown(Shutdown::Write);
    });
}
