//! How many processes and source addresses a run needs, worked out from the machine's limits.
//!
//! Tens of thousands of loopback connections hit two limits before anything else: each socket is a
//! file descriptor (RLIMIT_NOFILE caps them per process), and each connection from one source address
//! to the one server address needs its own ephemeral port (ip_local_port_range caps them per source).
//! [`plan`] is a pure function of those limits so it can be tested; [`raise_nofile`] and
//! [`read_port_range`] read the real ones. Connections are spread round-robin over the source
//! addresses 127.0.0.2, 127.0.0.3, ... (all of 127.0.0.0/8 is loopback on Linux), and each socket is
//! bound with IP_BIND_ADDRESS_NO_PORT so the kernel picks the port at connect time, per destination.

use std::{io, net::Ipv4Addr, ops::Range};

use serde::{Deserialize, Serialize};

/// File descriptors a process keeps back from connections: the runtime (epoll, eventfd), stdio, the
/// pipes to worker processes, and sockets that are still closing.
pub const FD_RESERVE: u64 = 1024;

/// Share of the ephemeral port range one source address is planned to use: 0.8 of one half. Linux's
/// connect() searches the ports of one parity first; once that half is taken, every further connect
/// scans it in vain before trying the other half. Measured on a 28,232-port range: 14,000 connections
/// from one source connect in ~1 ms (p99 3 ms), 18,000 take up to seconds each (6 s of system time
/// against 2 s) and some fail with EADDRNOTAVAIL. The other 20% is headroom for TIME_WAIT and other
/// programs.
pub const PORT_SHARE: f64 = 0.4;

/// The first source address; the next ones count up from it.
pub const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// What the command line forces, instead of the planned values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--processes`.
    pub processes: Option<usize>,
    /// `--sources`.
    pub sources: Option<usize>,
}

/// The chosen layout of a run, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Connections the run holds at once.
    pub connections: u64,
    /// Soft open-file limit per process.
    pub nofile: u64,
    /// Connections one process may hold (`nofile` minus the reserve).
    pub per_process: u64,
    /// Processes (1: everything in this process; more: worker processes).
    pub processes: usize,
    /// The kernel's ephemeral port range, inclusive.
    pub port_range: (u16, u16),
    /// Ports planned per source address.
    pub ports_per_source: u64,
    /// Source addresses, from [`FIRST_SOURCE`] up.
    pub sources: usize,
    /// One line per decision, for the operator.
    pub reasons: Vec<String>,
}

/// Plans `n` simultaneous connections under the limits `nofile` and `port_range`.
pub fn plan(n: u64, nofile: u64, port_range: (u16, u16), overrides: Overrides) -> Plan {
    let mut reasons = Vec::new();
    let per_process = nofile.saturating_sub(FD_RESERVE).max(nofile / 2).max(1);
    let needed = n.div_ceil(per_process).max(1) as usize;
    let processes = match overrides.processes {
        Some(p) => {
            let p = p.max(1);
            reasons.push(format!(
                "processes: {p} (--processes; the limits call for {needed})"
            ));
            if (p as u64).saturating_mul(per_process) < n {
                reasons.push(format!(
                    "warning: {p} process(es) × {per_process} descriptors < {n} connections: \
                     expect too_many_open_files"
                ));
            }
            p
        }
        None => {
            reasons.push(format!(
                "processes: {needed} = ceil({n} connections / {per_process} per process \
                 (RLIMIT_NOFILE {nofile} - reserve {FD_RESERVE}))"
            ));
            needed
        }
    };
    let (lo, hi) = port_range;
    let range = u64::from(hi.saturating_sub(lo)) + 1;
    let ports_per_source = ((range as f64 * PORT_SHARE) as u64).max(1);
    let needed = n.div_ceil(ports_per_source).max(1) as usize;
    let sources = match overrides.sources {
        Some(s) => {
            let s = s.max(1);
            reasons.push(format!(
                "sources: {s} (--sources; the port range calls for {needed})"
            ));
            s
        }
        None => {
            reasons.push(format!(
                "sources: {needed} = ceil({n} connections / {ports_per_source} ports per source \
                 ({PORT_SHARE} × {range} ports in {lo}-{hi}))"
            ));
            needed
        }
    };
    reasons.push(format!(
        "source addresses: {}..={} round-robin, bound with IP_BIND_ADDRESS_NO_PORT",
        source_addr(0),
        source_addr(sources - 1)
    ));
    Plan {
        connections: n,
        nofile,
        per_process,
        processes,
        port_range,
        ports_per_source,
        sources,
        reasons,
    }
}

/// The `i`-th source address (127.0.0.2 + i, carrying into the higher octets).
pub fn source_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(FIRST_SOURCE).wrapping_add(i as u32))
}

impl Plan {
    /// Splits connection indexes `0..n` into one contiguous, balanced range per process, each boundary
    /// a multiple of `unit` (2 for sender/receiver pairs, which must stay in one process).
    pub fn slices(&self, n: u64, unit: u64) -> Vec<Range<u64>> {
        let unit = unit.max(1);
        let units = n / unit;
        let p = self.processes as u64;
        let mut out = Vec::with_capacity(self.processes);
        let mut start = 0;
        for i in 0..p {
            let take = units / p + u64::from(i < units % p);
            let mut end = start + take * unit;
            if i == p - 1 {
                end = n;
            }
            out.push(start..end);
            start = end;
        }
        out
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force afterwards.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// The ephemeral port range from /proc/sys/net/ipv4/ip_local_port_range.
pub fn read_port_range() -> io::Result<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    parse_port_range(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad ip_local_port_range"))
}

/// Parses "32768\t60999".
fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(|s| s.parse::<u16>());
    let lo = it.next()?.ok()?;
    let hi = it.next()?.ok()?;
    (lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: (u16, u16) = (32768, 60999);

    #[test]
    fn the_reserve_matters() {
        // 20,000 descriptors leave 18,976 for connections: 19,000 do not fit in one process.
        let p = plan(19_000, 20_000, RANGE, Overrides::default());
        assert_eq!((p.per_process, p.processes, p.sources), (18_976, 2, 2));
        assert_eq!(
            plan(18_976, 20_000, RANGE, Overrides::default()).processes,
            1
        );
        assert_eq!(
            plan(18_977, 20_000, RANGE, Overrides::default()).processes,
            2
        );
    }

    #[test]
    fn fifty_thousand_take_three_processes() {
        let p = plan(50_000, 20_000, RANGE, Overrides::default());
        assert_eq!(p.processes, 3);
        assert_eq!(p.sources, 5); // 11,292 ports per source
    }

    #[test]
    fn a_hundred_thousand_need_five_sources() {
        let p = plan(100_000, 1 << 20, RANGE, Overrides::default());
        assert_eq!(p.ports_per_source, 11_292);
        assert!(p.sources >= 5, "{p:?}");
        assert_eq!(p.sources, 9);
        assert_eq!(p.processes, 1);
        assert_eq!(source_addr(p.sources - 1), Ipv4Addr::new(127, 0, 0, 10));
    }

    #[test]
    fn small_runs_need_one_of_each() {
        let p = plan(1, 1024, RANGE, Overrides::default());
        assert_eq!((p.processes, p.sources), (1, 1));
        // A tiny limit still leaves half for connections rather than none.
        assert_eq!(p.per_process, 512);
        assert_eq!(
            plan(0, 20_000, (1000, 1000), Overrides::default()).sources,
            1
        );
    }

    #[test]
    fn overrides_win_and_warn() {
        let o = Overrides {
            processes: Some(1),
            sources: Some(7),
        };
        let p = plan(50_000, 20_000, RANGE, o);
        assert_eq!((p.processes, p.sources), (1, 7));
        assert!(p.reasons.iter().any(|r| r.starts_with("warning")));
    }

    #[test]
    fn slices_cover_everything_and_keep_pairs_together() {
        let mut p = plan(19_000, 20_000, RANGE, Overrides::default());
        assert_eq!(p.slices(19_000, 1), vec![0..9_500, 9_500..19_000]);
        p.processes = 3;
        let s = p.slices(1_002, 2);
        assert_eq!(s, vec![0..334, 334..668, 668..1_002]);
        assert!(s.iter().all(|r| r.start % 2 == 0));
        let s = p.slices(10, 1);
        assert_eq!(s.iter().map(|r| r.end - r.start).sum::<u64>(), 10);
        assert_eq!(s, vec![0..4, 4..7, 7..10]);
    }

    #[test]
    fn source_addresses_carry_over() {
        assert_eq!(source_addr(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(254), Ipv4Addr::new(127, 0, 1, 0));
    }

    #[test]
    fn port_range_parses() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some(RANGE));
        assert_eq!(parse_port_range("9 1"), None);
        assert_eq!(parse_port_range("x"), None);
    }
}
