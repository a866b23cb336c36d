//! What each measured server process and the kernel hold when the measuring phase starts (every
//! connection set up, subscribed, nothing sent yet), and each process's CPU over the phase.
//!
//! A run over several nodes (or a node and its Redis) needs the figures per process: memory per
//! connection per node, and the CPU each process spent per delivery. The kernel's share of a
//! connection is read from /proc/meminfo (slab, where socket structures live) and /proc/net/sockstat
//! (TCP buffer pages), machine-wide: divide by the sockets open (`tcp_inuse`), both ends on loopback.

use serde::{Deserialize, Serialize};

use crate::report::{clock_ticks_per_s, cpu_ticks, rss_kib};

/// One server process (`--pid`, `--cpu-pid`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Server {
    pub pid: u32,
    /// VmRSS at `go` (KiB).
    pub rss_at_go_kib: Option<u64>,
    /// User + system CPU from `go` to the end of the phase, seconds.
    pub cpu_s: Option<f64>,
    #[serde(skip)]
    ticks_at_go: Option<u64>,
}

/// The kernel's memory at `go`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Kernel {
    /// `Slab:` of /proc/meminfo (KiB).
    pub slab_kib: Option<u64>,
    /// `TCP: ... mem` of /proc/net/sockstat: pages of TCP buffers.
    pub tcp_mem_pages: Option<u64>,
    /// `TCP: inuse`: TCP sockets open.
    pub tcp_inuse: Option<u64>,
}

/// Reads every process at `go`.
pub fn at_go(pids: &[u32]) -> Vec<Server> {
    pids.iter()
        .map(|&pid| Server {
            pid,
            rss_at_go_kib: rss_kib(pid),
            cpu_s: None,
            ticks_at_go: cpu_ticks(&[pid]),
        })
        .collect()
}

/// Fills in each process's CPU since `go`.
pub fn finish(servers: &mut [Server]) {
    for s in servers {
        s.cpu_s = match (s.ticks_at_go, cpu_ticks(&[s.pid])) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / clock_ticks_per_s()),
            _ => None,
        };
    }
}

/// The kernel's figures now.
pub fn kernel() -> Kernel {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let (tcp_inuse, tcp_mem_pages) = parse_sockstat(&sockstat);
    Kernel {
        slab_kib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("Slab:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok()),
        tcp_mem_pages,
        tcp_inuse,
    }
}

/// `(inuse, mem)` of the `TCP:` line.
fn parse_sockstat(text: &str) -> (Option<u64>, Option<u64>) {
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("TCP:")) else {
        return (None, None);
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1)?.parse().ok())
    };
    (field("inuse"), field("mem"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_tcp_line_is_read() {
        let text =
            "sockets: used 190\nTCP: inuse 12 orphan 0 tw 3 alloc 14 mem 5\nUDP: inuse 1 mem 0\n";
        assert_eq!(parse_sockstat(text), (Some(12), Some(5)));
        assert_eq!(parse_sockstat("UDP: inuse 1"), (None, None));
    }

    #[test]
    fn this_process_is_read() {
        let me = std::process::id();
        let mut s = at_go(&[me]);
        assert!(s[0].rss_at_go_kib.unwrap_or(0) > 0);
        finish(&mut s);
        assert!(s[0].cpu_s.is_some());
        assert!(kernel().tcp_inuse.is_some());
    }
}
