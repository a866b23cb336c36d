//! Shared start-up for the peer echo servers: flag parsing, the tokio runtime and the listener.
//!
//! The peers exist only to be measured against the gateway (`benches/peers/run.sh`), so they share
//! one way to start: the same flags, the same worker-thread count, the same listen backlog as the
//! gateway (65535, capped by `net.core.somaxconn`), and the same `listening <addr>` line on stdout.

use std::io::Write;
use std::net::SocketAddr;

/// Flags common to every peer server, plus the tungstenite-only ones.
#[derive(Debug, Clone)]
pub struct Args {
    /// Address to listen on (`--listen`, default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// Tokio worker threads (`--threads`, default 2).
    pub threads: usize,
    /// Read and write buffer size for tungstenite (`--read-buffer`, default 4096).
    pub read_buffer: usize,
    /// Use tungstenite's default configuration (128 KiB buffers) instead (`--defaults`).
    pub defaults: bool,
}

impl Args {
    /// Parses `std::env::args`; `tungstenite_flags` says whether `--read-buffer` and `--defaults` are accepted.
    /// Prints usage and exits 2 on a bad flag.
    pub fn parse(name: &str, tungstenite_flags: bool) -> Args {
        let usage = if tungstenite_flags {
            format!(
                "usage: {name} [--listen ADDR] [--threads N] [--read-buffer BYTES] [--defaults]"
            )
        } else {
            format!("usage: {name} [--listen ADDR] [--threads N]")
        };
        let fail = |msg: String| -> ! {
            eprintln!("{name}: {msg}\n{usage}");
            std::process::exit(2)
        };
        let mut args = Args {
            listen: "127.0.0.1:0".parse().expect("valid default address"),
            threads: 2,
            read_buffer: 4096,
            defaults: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .unwrap_or_else(|| fail(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--listen" => {
                    let v = value();
                    args.listen = v
                        .parse()
                        .unwrap_or_else(|e| fail(format!("--listen {v}: {e}")));
                }
                "--threads" => {
                    let v = value();
                    args.threads = match v.parse() {
                        Ok(n) if n > 0 => n,
                        _ => fail(format!("--threads {v}: expected a positive integer")),
                    };
                }
                "--read-buffer" if tungstenite_flags => {
                    let v = value();
                    args.read_buffer = match v.parse() {
                        Ok(n) if n > 0 => n,
                        _ => fail(format!("--read-buffer {v}: expected a positive integer")),
                    };
                }
                "--defaults" if tungstenite_flags => args.defaults = true,
                "-h" | "--help" => {
                    println!("{usage}");
                    std::process::exit(0)
                }
                other => fail(format!("unknown argument {other}")),
            }
        }
        args
    }

    /// A multi-thread tokio runtime with `threads` workers.
    pub fn runtime(&self) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .enable_io()
            .enable_time()
            .build()
            .expect("tokio runtime")
    }
}

/// Binds `addr` with the gateway's backlog and prints `listening <addr>` (flushed).
/// Must run inside the runtime.
pub fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(65535)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {}", listener.local_addr()?)?;
    out.flush()?;
    Ok(listener)
}

/// The next accepted connection with TCP_NODELAY set; accept errors (EMFILE, …) are logged and retried
/// after 10 ms, so every server keeps serving the same way under load.
pub async fn accept(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
