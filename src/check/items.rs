//! One function per checked item: each takes the values it judges (already parsed from `/proc` or the
//! process limits) and returns a table row, so a test can judge any host without reading this one.

use super::{
    BACKLOG, FILE_MAX, GATEWAY_BYTES_PER_CONN, GLOMMIO_MIN_MEMLOCK, IO_MEMORY_MIN, Item,
    KERNEL_BYTES_PER_CONN, Kind, MEMINFO, NETDEV, NETDEV_BACKLOG, NR_OPEN, PORT_RANGE, RINGS,
    Status, Target,
    render::{bytes, conns, count},
};

/// RLIMIT_NOFILE: the hard limit decides, since the gateway raises its soft limit to it.
pub fn open_files(soft: u64, hard: u64, t: Target) -> Item {
    let capacity = hard.saturating_sub(t.reserve());
    Item {
        name: "open files soft/hard (RLIMIT_NOFILE)",
        kind: Kind::Limit,
        current: format!("{} / {}", count(soft), count(hard)),
        needed: count(t.fds()),
        allows: conns(capacity),
        status: verdict(capacity >= t.connections, Kind::Limit),
        capacity: Some(capacity),
        note: format!(
            "the hard limit {} leaves {} connections after the gateway's reserve of {} (64 + 16 × {} \
             shards); raise it to at least {}: LimitNOFILE= in the unit, nofile in limits.d, \
             --ulimit nofile= in Docker",
            count(hard),
            count(capacity),
            t.reserve(),
            t.shards,
            count(t.fds())
        ),
    }
}

/// `fs.nr_open`: no process can raise RLIMIT_NOFILE above it.
pub fn nr_open(value: Option<u64>, t: Target) -> Item {
    let name = "fs.nr_open";
    let Some(v) = value else {
        return Item::unknown(name, Kind::Limit, NR_OPEN);
    };
    let capacity = v.saturating_sub(t.reserve());
    Item {
        name,
        kind: Kind::Limit,
        current: count(v),
        needed: count(t.fds()),
        allows: conns(capacity),
        status: verdict(capacity >= t.connections, Kind::Limit),
        capacity: Some(capacity),
        note: format!(
            "RLIMIT_NOFILE cannot go above fs.nr_open ({}); sysctl fs.nr_open={} or more",
            count(v),
            t.fds()
        ),
    }
}

/// `fs.file-max`: open files of the whole system; `in_use` is the first field of `fs.file-nr`.
pub fn file_max(max: Option<u64>, in_use: Option<u64>, t: Target) -> Item {
    let name = "fs.file-max (in use)";
    let Some(max) = max else {
        return Item::unknown(name, Kind::Limit, FILE_MAX);
    };
    let used = in_use.unwrap_or(0);
    let capacity = max.saturating_sub(used).saturating_sub(t.reserve());
    Item {
        name,
        kind: Kind::Limit,
        current: format!("{} ({})", count(max), count(used)),
        needed: count(t.fds().saturating_add(used)),
        allows: conns(capacity),
        status: verdict(capacity >= t.connections, Kind::Limit),
        capacity: Some(capacity),
        note: format!(
            "{} files are open system-wide of at most {}; sysctl fs.file-max={} or more (systemd \
             240 and later sets the maximum at boot)",
            count(used),
            count(max),
            t.fds().saturating_add(used)
        ),
    }
}

/// RLIMIT_MEMLOCK against the pinned io_memory (each shard registers `io_memory` with three rings)
/// and each shard's own ring.
pub fn memlock(limit: Option<u64>, io_memory: u64, t: Target) -> Item {
    let shards = t.shards.max(1) as u64;
    let rings = shards * shard_ring_memlock();
    let needed = GLOMMIO_MIN_MEMLOCK.max(RINGS * IO_MEMORY_MIN * shards) + rings;
    let ok = limit.is_none_or(|l| l >= needed);
    Item {
        name: "locked memory (RLIMIT_MEMLOCK)",
        kind: Kind::Limit,
        current: limit.map_or("unlimited".into(), bytes),
        needed: bytes(needed),
        allows: format!("io_memory {}/shard", bytes(io_memory)),
        status: verdict(ok, Kind::Limit),
        capacity: None,
        note: format!(
            "glommio refuses to start below {} and each of {} shards pins 3 × io_memory (at least \
             3 × {}), plus {} for its own ring and buffer ring; LimitMEMLOCK=infinity in the unit, \
             memlock in limits.d, --ulimit memlock=-1:-1 in Docker",
            bytes(GLOMMIO_MIN_MEMLOCK),
            shards,
            bytes(IO_MEMORY_MIN),
            bytes(shard_ring_memlock()),
        ),
    }
}

/// Locked memory of one shard's own io_uring: its queues and its buffer ring's entries at the default
/// `runtime.recv_buffers` (the buffers themselves are not locked).
pub fn shard_ring_memlock() -> u64 {
    let buffers = gateway_default_recv_buffers();
    (shards::uring::Uring::memlock_bytes()
        + shards::uring::bufring::BufRing::memlock_bytes(buffers)) as u64
}

/// `runtime.recv_buffers` by default.
fn gateway_default_recv_buffers() -> u16 {
    crate::config::RuntimeSection::default().recv_buffers
}

/// `nf_conntrack_max`, when the conntrack module is loaded: a full table drops new connections.
pub fn conntrack(max: Option<u64>, t: Target) -> Item {
    let name = "net.netfilter.nf_conntrack_max";
    let Some(max) = max else {
        return Item {
            name,
            kind: Kind::Limit,
            current: "not loaded".into(),
            needed: "-".into(),
            allows: "no limit".into(),
            status: Status::Ok,
            capacity: None,
            note: String::new(),
        };
    };
    Item {
        name,
        kind: Kind::Limit,
        current: count(max),
        needed: count(t.connections),
        allows: conns(max),
        status: verdict(max >= t.connections, Kind::Limit),
        capacity: Some(max),
        note: format!(
            "conntrack is loaded and its table holds {} entries, one per tracked connection; NOTRACK \
             the listen port (TUNING.md, Conntrack) or sysctl net.netfilter.nf_conntrack_max={} or more",
            count(max),
            t.connections
        ),
    }
}

/// RAM against the kernel's slab and the gateway's own memory per idle connection, plus pinned memory.
pub fn memory(total: Option<u64>, pinned: u64, t: Target) -> Item {
    let name = "memory (MemTotal)";
    let Some(total) = total else {
        return Item::unknown(name, Kind::Limit, MEMINFO);
    };
    let per_conn = KERNEL_BYTES_PER_CONN + GATEWAY_BYTES_PER_CONN;
    let needed = t
        .connections
        .saturating_mul(per_conn)
        .saturating_add(pinned);
    let capacity = total.saturating_sub(pinned) / per_conn;
    Item {
        name,
        kind: Kind::Limit,
        current: bytes(total),
        needed: bytes(needed),
        allows: conns(capacity),
        status: verdict(needed <= total, Kind::Limit),
        capacity: Some(capacity),
        note: format!(
            "each idle connection costs about {} B of kernel slab and {} B of gateway memory; {} \
             connections need {} before any message is in flight: add RAM or spread over nodes",
            count(KERNEL_BYTES_PER_CONN),
            count(GATEWAY_BYTES_PER_CONN),
            count(t.connections),
            bytes(needed)
        ),
    }
}

/// An accept-queue sysctl against the gateway's backlog of 65,535 (advice). `effect` says what the
/// value does, with `{v}` standing for it.
pub fn backlog(name: &'static str, value: Option<u64>, effect: &str) -> Item {
    let Some(v) = value else {
        return Item::unknown(name, Kind::Advice, name);
    };
    Item {
        name,
        kind: Kind::Advice,
        current: count(v),
        needed: count(BACKLOG),
        allows: format!("backlog {}", count(v.min(BACKLOG))),
        status: verdict(v >= BACKLOG, Kind::Advice),
        capacity: None,
        note: format!(
            "{}; a reconnect storm overflows it: sysctl {name}={BACKLOG}",
            effect.replace("{v}", &count(v))
        ),
    }
}

/// `ip_local_port_range`: connections one load-generator address can open to one `ip:port` (advice).
pub fn port_range(range: Option<Vec<u64>>, t: Target) -> Item {
    let name = "net.ipv4.ip_local_port_range";
    let Some([lo, hi]) = range.as_deref().and_then(|r| <[u64; 2]>::try_from(r).ok()) else {
        return Item::unknown(name, Kind::Advice, PORT_RANGE);
    };
    let ports = (hi + 1).saturating_sub(lo).max(1);
    let sources = t.connections.div_ceil(ports);
    Item {
        name,
        kind: Kind::Advice,
        current: format!("{lo}-{hi}"),
        needed: format!("{} source addr", count(sources)),
        allows: format!("{}/source addr", conns(ports)),
        status: verdict(sources <= 1, Kind::Advice),
        capacity: None,
        note: format!(
            "for a load generator on this host: {} ports per source address and gateway ip:port, so \
             {} connections need {} source (or destination) addresses; widen to 1024 65535 and add \
             addresses (TUNING.md, Ports and load generators)",
            count(ports),
            count(t.connections),
            count(sources)
        ),
    }
}

/// `tcp_mem` (pages) against every socket holding its minimum receive and send buffer (advice: idle
/// sockets hold none, a burst to all of them does). Socket slab is not counted in `tcp_mem`.
pub fn tcp_mem(
    mem: Option<Vec<u64>>,
    rmem_min: Option<u64>,
    wmem_min: Option<u64>,
    page_size: u64,
    t: Target,
) -> Item {
    let name = "net.ipv4.tcp_mem (pages)";
    let (Some([low, pressure, high]), Some(r), Some(w)) = (
        mem.as_deref().and_then(|m| <[u64; 3]>::try_from(m).ok()),
        rmem_min,
        wmem_min,
    ) else {
        return Item::unknown(name, Kind::Advice, "tcp_mem, tcp_rmem or tcp_wmem");
    };
    let per_socket = (r + w).max(1);
    let needed_pages = t
        .connections
        .saturating_mul(per_socket)
        .div_ceil(page_size.max(1));
    let capacity = high.saturating_mul(page_size) / per_socket;
    Item {
        name,
        kind: Kind::Advice,
        current: format!("{low} {pressure} {high}"),
        needed: format!("{} high", count(needed_pages)),
        allows: format!("{} in a burst", conns(capacity)),
        status: verdict(needed_pages <= high, Kind::Advice),
        capacity: None,
        note: format!(
            "a burst to all {} sockets at their minimum buffers (tcp_rmem {r} + tcp_wmem {w} B) needs \
             {} of socket buffers; above tcp_mem high ({}) the kernel refuses them and sends stall. \
             Size tcp_mem to the host (TUNING.md, TCP memory)",
            count(t.connections),
            bytes(needed_pages.saturating_mul(page_size)),
            bytes(high.saturating_mul(page_size))
        ),
    }
}

/// `netdev_max_backlog`: the per-CPU queue of received packets (advice).
pub fn netdev_backlog(value: Option<u64>) -> Item {
    let name = "net.core.netdev_max_backlog";
    let Some(v) = value else {
        return Item::unknown(name, Kind::Advice, NETDEV);
    };
    Item {
        name,
        kind: Kind::Advice,
        current: count(v),
        needed: count(NETDEV_BACKLOG),
        allows: "-".into(),
        status: verdict(v >= NETDEV_BACKLOG, Kind::Advice),
        capacity: None,
        note: format!(
            "received packets queue per CPU up to {} before TCP sees them; reconnect storms overflow \
             it first; sysctl {name}={NETDEV_BACKLOG}",
            count(v)
        ),
    }
}

/// Ok, or the failing status of `kind`.
fn verdict(ok: bool, kind: Kind) -> Status {
    match (ok, kind) {
        (true, _) => Status::Ok,
        (false, Kind::Limit) => Status::Blocks,
        (false, Kind::Advice) => Status::Advice,
    }
}
