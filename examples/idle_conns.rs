//! Measures the gateway's resident memory per idle, identified connection.
//!
//! Usage: `cargo run --release --example idle_conns -- <ws addr> <gateway pid> <connections>`
//! Reads the gateway's VmRSS from /proc before and after opening the connections (each identified as a
//! distinct user and then left idle), prints the difference per connection, and holds the connections
//! for a few seconds so the figure settles. Also prints the kernel's slab growth per socket (/proc/meminfo
//! Slab delta over 2 sockets per connection, since both ends live on this machine on loopback). Uses source addresses 127.0.0.2.. round-robin so ephemeral
//! ports never run out on loopback.

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use tungstenite::{Message, client::client, stream::MaybeTlsStream};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("gateway pid");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Kernel slab memory (SReclaimable + SUnreclaim), in KiB, from /proc/meminfo.
fn slab_kib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("Slab")
}

fn connect(addr: SocketAddr, i: usize) -> tungstenite::WebSocket<MaybeTlsStream<TcpStream>> {
    let src: SocketAddr = format!("127.0.0.{}:0", 2 + i % 200).parse().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&src.into()).unwrap();
    sock.connect(&addr.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (ws, _) =
        client(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(stream)).expect("handshake");
    ws
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args.get(1).expect("ws addr").parse().unwrap();
    let pid: u32 = args.get(2).expect("gateway pid").parse().unwrap();
    let n: usize = args.get(3).map_or(10_000, |s| s.parse().unwrap());
    let before = rss_kib(pid);
    let slab_before = slab_kib();
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut ws = connect(addr, i);
        ws.send(Message::text(format!(
            r#"{{"op":"identify","user":"idle{i}"}}"#
        )))
        .unwrap();
        loop {
            match ws.read().unwrap() {
                Message::Text(t) if t.contains("\"ready\"") => break,
                Message::Text(t) => panic!("unexpected {t}"),
                _ => {}
            }
        }
        conns.push(ws);
    }
    let opened = start.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(pid);
    let slab_after = slab_kib();
    let per_conn = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    // On loopback both ends are sockets of this machine: the slab delta covers 2 sockets per connection.
    let slab_per_socket = (slab_after.saturating_sub(slab_before) * 1024) as f64 / (2 * n) as f64;
    println!(
        "connections={n} opened_in={:.1}s rss_before={before}KiB rss_after={after}KiB per_connection={per_conn:.0}B \
         slab_delta={}KiB kernel_per_socket={slab_per_socket:.0}B",
        opened.as_secs_f64(),
        slab_after.saturating_sub(slab_before)
    );
}
