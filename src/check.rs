//! `gateway check`: can this host hold N connections, and if not, what stops it?
//!
//! Going to a million connections fails on limits that are easy to miss (a hard `nofile` of 1024 or
//! 20,000, a conntrack table of 262,144, `somaxconn` silently cutting the backlog). This module reads
//! them all once, compares each with what N connections need, and prints one table: the current value,
//! the value N needs, and what the host allows today. Limits that make N impossible are reported apart
//! from advice (settings that only hurt under bursts), and only the former make the exit status non-zero.
//!
//! Reading is separated from judging: [`Snapshot::read`] collects the process limits and the raw text of
//! the `/proc` files, and [`evaluate`] works on a [`Snapshot`] alone, so tests feed it fake hosts.

use std::{collections::BTreeMap, process::ExitCode};

use shards::runtime::{allowed_cpus, io_memory_for};

use crate::{cli::CheckArgs, limits};

mod items;
mod render;

pub use items::{
    backlog, conntrack, file_max, memlock, memory, netdev_backlog, nr_open, open_files, port_range,
    tcp_mem,
};
pub use render::{bytes, count, render};

/// Kernel memory per idle TCP socket (slab: socket, TCP state, inode, file), measured on a 2-vCPU box
/// (`tuning/TUNING.md`, "The budget").
pub const KERNEL_BYTES_PER_CONN: u64 = 4_900;
/// Gateway resident memory per idle identified connection, measured with `examples/idle_conns.rs`
/// (`docs/ARCHITECTURE.md`).
pub const GATEWAY_BYTES_PER_CONN: u64 = 375;
/// The listen backlog the gateway asks for (config `backlog`, default).
const BACKLOG: u64 = 65_535;
/// glommio refuses to start an executor below this RLIMIT_MEMLOCK.
const GLOMMIO_MIN_MEMLOCK: u64 = 512 << 10;
/// Smallest io_memory the gateway gives a shard (`shards::runtime::io_memory_for`).
const IO_MEMORY_MIN: u64 = 64 << 10;
/// io_uring rings per glommio executor; each registration of io_memory is charged to RLIMIT_MEMLOCK.
const RINGS: u64 = 3;
/// Suggested `net.core.netdev_max_backlog` (`tuning/sysctl.d/99-gateway.conf`).
const NETDEV_BACKLOG: u64 = 16_384;
/// Values at or above this (2^62) are shown as "unlimited": RLIM_INFINITY, `fs.file-max` = LONG_MAX,
/// and what is left of them after a subtraction.
const UNLIMITED: u64 = 1 << 62;

/// The files read, by path; `/proc/sys/net/netfilter/nf_conntrack_max` exists only with conntrack loaded.
const FILES: [&str; 12] = [
    NR_OPEN,
    FILE_MAX,
    FILE_NR,
    SOMAXCONN,
    SYN_BACKLOG,
    PORT_RANGE,
    TCP_MEM,
    TCP_RMEM,
    TCP_WMEM,
    NETDEV,
    CONNTRACK_MAX,
    MEMINFO,
];
const NR_OPEN: &str = "/proc/sys/fs/nr_open";
const FILE_MAX: &str = "/proc/sys/fs/file-max";
const FILE_NR: &str = "/proc/sys/fs/file-nr";
const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";
const SYN_BACKLOG: &str = "/proc/sys/net/ipv4/tcp_max_syn_backlog";
const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const TCP_MEM: &str = "/proc/sys/net/ipv4/tcp_mem";
const TCP_RMEM: &str = "/proc/sys/net/ipv4/tcp_rmem";
const TCP_WMEM: &str = "/proc/sys/net/ipv4/tcp_wmem";
const NETDEV: &str = "/proc/sys/net/core/netdev_max_backlog";
const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const MEMINFO: &str = "/proc/meminfo";

/// Everything the check looks at, read once.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Soft RLIMIT_NOFILE of this process (`u64::MAX` or more than [`UNLIMITED`]: unlimited).
    pub nofile_soft: u64,
    /// Hard RLIMIT_NOFILE: what the gateway raises the soft limit to at start-up.
    pub nofile_hard: u64,
    /// Soft RLIMIT_MEMLOCK in bytes; `None` when unlimited.
    pub memlock: Option<u64>,
    /// Page size in bytes (the unit of `tcp_mem`).
    pub page_size: u64,
    /// Raw contents of each file in [`FILES`] that could be read, by path.
    pub files: BTreeMap<String, String>,
}

impl Snapshot {
    /// Reads this process's limits and the files the check needs; an unreadable file is left out.
    pub fn read() -> std::io::Result<Snapshot> {
        let nofile = limits::getrlimit(libc::RLIMIT_NOFILE)?;
        let memlock = limits::getrlimit(libc::RLIMIT_MEMLOCK)?;
        // SAFETY: sysconf only reads a configuration value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let files = FILES
            .iter()
            .filter_map(|p| Some((p.to_string(), std::fs::read_to_string(p).ok()?)))
            .collect();
        Ok(Snapshot {
            nofile_soft: nofile.rlim_cur,
            nofile_hard: nofile.rlim_max,
            memlock: (memlock.rlim_cur != libc::RLIM_INFINITY).then_some(memlock.rlim_cur),
            page_size: if page > 0 { page as u64 } else { 4096 },
            files,
        })
    }

    /// The numbers in `path`, whitespace-separated; `None` if it was not read or does not parse.
    fn numbers(&self, path: &str) -> Option<Vec<u64>> {
        let text = self.files.get(path)?;
        let v: Option<Vec<u64>> = text.split_whitespace().map(|w| w.parse().ok()).collect();
        v.filter(|v| !v.is_empty())
    }

    /// The first number in `path`.
    fn number(&self, path: &str) -> Option<u64> {
        self.numbers(path)?.first().copied()
    }
}

/// `MemTotal` from the text of `/proc/meminfo`, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether an item can stop N, or is advice only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Below what N needs, N cannot be reached.
    Limit,
    /// Below the suggestion, bursts suffer; N is still reachable.
    Advice,
}

/// The verdict on one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Enough for N.
    Ok,
    /// N cannot be reached with this value.
    Blocks,
    /// Worth changing; does not stop N.
    Advice,
    /// The value could not be read.
    Unknown,
}

impl Status {
    /// The status column.
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Blocks => "BLOCKS",
            Status::Advice => "advice",
            Status::Unknown => "unknown",
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Item {
    /// What is checked.
    pub name: &'static str,
    /// Limit or advice.
    pub kind: Kind,
    /// The value now.
    pub current: String,
    /// The value N connections need.
    pub needed: String,
    /// What the host allows today (connections, where the item limits them).
    pub allows: String,
    /// The verdict.
    pub status: Status,
    /// Connections this item allows, when it limits them (for the summary).
    pub capacity: Option<u64>,
    /// Why, and what to change; printed for blockers and advice.
    pub note: String,
}

impl Item {
    /// A row whose value could not be read.
    fn unknown(name: &'static str, kind: Kind, what: &str) -> Item {
        Item {
            name,
            kind,
            current: "unreadable".into(),
            needed: "-".into(),
            allows: "-".into(),
            status: Status::Unknown,
            capacity: None,
            note: format!("could not read {what}"),
        }
    }
}

/// What is asked: N connections on a node of `shards` shards.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Connections the node should hold.
    pub connections: u64,
    /// Shards of the node.
    pub shards: usize,
}

impl Target {
    /// Descriptors the gateway keeps for itself (`limits::fd_reserve`).
    fn reserve(&self) -> u64 {
        limits::fd_reserve(self.shards)
    }

    /// Descriptors N connections need, reserve included.
    fn fds(&self) -> u64 {
        self.connections.saturating_add(self.reserve())
    }
}

/// The result of a check.
#[derive(Clone, Debug)]
pub struct Report {
    /// What was asked.
    pub target: Target,
    /// Every item, limits first.
    pub items: Vec<Item>,
}

impl Report {
    /// True when no item blocks N.
    pub fn reachable(&self) -> bool {
        self.items.iter().all(|i| i.status != Status::Blocks)
    }

    /// The most connections any limit allows, and the item that sets it.
    pub fn capacity(&self) -> Option<(u64, &Item)> {
        self.items
            .iter()
            .filter(|i| i.kind == Kind::Limit)
            .filter_map(|i| Some((i.capacity?, i)))
            .min_by_key(|(c, _)| *c)
    }
}

/// Judges `snap` for `target`.
pub fn evaluate(snap: &Snapshot, target: Target) -> Report {
    let io_memory = io_memory_for(snap.memlock, target.shards) as u64;
    let pinned = (RINGS * io_memory + items::shard_ring_memlock()) * target.shards as u64;
    let items = vec![
        open_files(snap.nofile_soft, snap.nofile_hard, target),
        nr_open(snap.number(NR_OPEN), target),
        file_max(snap.number(FILE_MAX), snap.number(FILE_NR), target),
        memlock(snap.memlock, io_memory, target),
        conntrack(snap.number(CONNTRACK_MAX), target),
        memory(
            snap.files.get(MEMINFO).and_then(|m| mem_total(m)),
            pinned,
            target,
        ),
        backlog(
            "net.core.somaxconn",
            snap.number(SOMAXCONN),
            "every listen backlog is cut to {v} (the gateway asks for 65,535)",
        ),
        backlog(
            "net.ipv4.tcp_max_syn_backlog",
            snap.number(SYN_BACKLOG),
            "at most {v} half-open connections per listener",
        ),
        port_range(snap.numbers(PORT_RANGE), target),
        tcp_mem(
            snap.numbers(TCP_MEM),
            snap.number(TCP_RMEM),
            snap.number(TCP_WMEM),
            snap.page_size,
            target,
        ),
        netdev_backlog(snap.number(NETDEV)),
    ];
    Report { target, items }
}

/// `gateway check`: prints the report; exit status 0 when N fits, 1 when something blocks it, 2 when
/// the limits cannot be read.
pub fn run(args: CheckArgs) -> ExitCode {
    let snap = match Snapshot::read() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gateway check: cannot read process limits: {e}");
            return ExitCode::from(2);
        }
    };
    let shards = match args.shards {
        Some(n) if n > 0 => n,
        _ => allowed_cpus().len().max(1),
    };
    let report = evaluate(
        &snap,
        Target {
            connections: args.connections,
            shards,
        },
    );
    print!("{}", render(&report));
    if report.reachable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests;
