//! Unit tests of `gateway check` on fake hosts: one that allows N, one per blocker, and the output.

use std::collections::BTreeMap;

use super::*;

/// A host with room for a million connections on 16 shards: every limit and sysctl as TUNING.md sets it.
fn big_host() -> Snapshot {
    let files = [
        (NR_OPEN, "1048576\n"),
        (FILE_MAX, "9223372036854775807\n"),
        (FILE_NR, "2048\t0\t9223372036854775807\n"),
        (SOMAXCONN, "65535\n"),
        (SYN_BACKLOG, "65535\n"),
        (PORT_RANGE, "1024\t65535\n"),
        (TCP_MEM, "1572864\t2097152\t3145728\n"),
        (TCP_RMEM, "4096\t16384\t4194304\n"),
        (TCP_WMEM, "4096\t16384\t4194304\n"),
        (NETDEV, "16384\n"),
        (
            MEMINFO,
            "MemTotal:       32768000 kB\nMemFree:        30000000 kB\n",
        ),
    ];
    Snapshot {
        nofile_soft: 1_048_576,
        nofile_hard: 1_048_576,
        memlock: None,
        page_size: 4096,
        files: files
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// This development box: 20,000 open files, 8 MiB memlock, default sysctls, conntrack loaded.
fn small_host() -> Snapshot {
    let mut s = big_host();
    s.nofile_soft = 20_000;
    s.nofile_hard = 20_000;
    s.memlock = Some(8 << 20);
    for (p, c) in [
        (FILE_MAX, "2466177\n"),
        (FILE_NR, "1118\t0\t2466177\n"),
        (SOMAXCONN, "4096\n"),
        (SYN_BACKLOG, "2048\n"),
        (PORT_RANGE, "32768\t60999\n"),
        (TCP_MEM, "287901\t383868\t575802\n"),
        (TCP_RMEM, "4096\t131072\t33554432\n"),
        (NETDEV, "1000\n"),
        (CONNTRACK_MAX, "262144\n"),
        (MEMINFO, "MemTotal:       24684092 kB\n"),
    ] {
        s.files.insert(p.into(), c.into());
    }
    s
}

fn target(connections: u64, shards: usize) -> Target {
    Target {
        connections,
        shards,
    }
}

fn blockers(r: &Report) -> Vec<&'static str> {
    r.items
        .iter()
        .filter(|i| i.status == Status::Blocks)
        .map(|i| i.name)
        .collect()
}

fn item<'a>(r: &'a Report, prefix: &str) -> &'a Item {
    r.items.iter().find(|i| i.name.starts_with(prefix)).unwrap()
}

#[test]
fn a_tuned_host_allows_a_million() {
    let r = evaluate(&big_host(), target(1_000_000, 16));
    assert!(r.reachable(), "{}", render(&r));
    // Only the load-generator note remains: one source address has 64,512 ports.
    let not_ok: Vec<_> = r.items.iter().filter(|i| i.status != Status::Ok).collect();
    assert_eq!(not_ok.len(), 1, "{}", render(&r));
    assert_eq!(not_ok[0].name, "net.ipv4.ip_local_port_range");
    assert_eq!(not_ok[0].needed, "16 source addr");
    // 1,048,576 - (64 + 16 × 16) = 1,048,256: open files and nr_open set the cap.
    assert_eq!(r.capacity().unwrap().0, 1_048_256);
    assert_eq!(item(&r, "net.netfilter").current, "not loaded");
    assert_eq!(item(&r, "fs.file-max").current, "unlimited (2,048)");
}

#[test]
fn the_small_box_allows_fifteen_thousand_but_not_a_million() {
    let r = evaluate(&small_host(), target(15_000, 2));
    assert!(r.reachable(), "{}", render(&r));
    // Advice is given, but does not block.
    assert_eq!(item(&r, "net.core.somaxconn").status, Status::Advice);
    assert_eq!(r.capacity().unwrap().0, 20_000 - 96);

    let r = evaluate(&small_host(), target(1_000_000, 2));
    assert!(!r.reachable());
    assert_eq!(
        blockers(&r),
        [
            "open files soft/hard (RLIMIT_NOFILE)",
            "net.netfilter.nf_conntrack_max"
        ]
    );
    let text = render(&r);
    assert!(text.contains("NOT REACHABLE: 1,000,000 connections, stopped by open files"));
    assert!(
        text.contains("Today this host allows 19,904 connections, limited by open files"),
        "{text}"
    );
}

#[test]
fn each_limit_blocks_on_its_own() {
    let t = target(1_000_000, 16);
    let mut s = big_host();
    s.nofile_soft = 1024;
    assert!(
        evaluate(&s, t).reachable(),
        "the soft limit is raised to the hard one"
    );
    s.nofile_hard = 500_000;
    assert_eq!(
        blockers(&evaluate(&s, t)),
        ["open files soft/hard (RLIMIT_NOFILE)"]
    );

    let mut s = big_host();
    s.files.insert(NR_OPEN.into(), "524288\n".into());
    assert_eq!(blockers(&evaluate(&s, t)), ["fs.nr_open"]);

    let mut s = big_host();
    s.files.insert(FILE_MAX.into(), "1200000\n".into());
    s.files
        .insert(FILE_NR.into(), "300000\t0\t1200000\n".into());
    assert_eq!(blockers(&evaluate(&s, t)), ["fs.file-max (in use)"]);

    let mut s = big_host();
    s.memlock = Some(1 << 20); // 16 shards need 3 × 64 KiB each: 3 MiB.
    assert_eq!(
        blockers(&evaluate(&s, t)),
        ["locked memory (RLIMIT_MEMLOCK)"]
    );
    s.memlock = Some(256 << 10); // below glommio's floor, even for one shard
    assert_eq!(
        blockers(&evaluate(&s, target(10, 1))),
        ["locked memory (RLIMIT_MEMLOCK)"]
    );

    let mut s = big_host();
    s.files.insert(CONNTRACK_MAX.into(), "262144\n".into());
    assert_eq!(
        blockers(&evaluate(&s, t)),
        ["net.netfilter.nf_conntrack_max"]
    );
    s.files.insert(CONNTRACK_MAX.into(), "2097152\n".into());
    assert!(evaluate(&s, t).reachable());

    let mut s = big_host();
    s.files
        .insert(MEMINFO.into(), "MemTotal:        4000000 kB\n".into());
    let r = evaluate(&s, t);
    assert_eq!(blockers(&r), ["memory (MemTotal)"]);
    // 4,096,000,000 B less 16 shards' pinned memory (3 × 1 MiB io_memory, and each shard's own ring:
    // 64 KiB of submission entries, 72 KiB of completion ring, 16 KiB of buffer ring entries), over
    // 4,900 + 375 B per connection.
    assert_eq!(item(&r, "memory").capacity, Some(766_479));
}

#[test]
fn advice_never_blocks_and_unreadable_files_are_reported() {
    let mut s = small_host();
    s.nofile_hard = 2_000_000;
    s.files.remove(CONNTRACK_MAX);
    s.files.remove(NETDEV);
    let r = evaluate(&s, target(1_000_000, 2));
    assert!(r.reachable(), "{}", render(&r));
    for name in [
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_mem",
    ] {
        assert_eq!(item(&r, name).status, Status::Advice, "{name}");
    }
    assert_eq!(item(&r, "net.core.netdev").status, Status::Unknown);
    // 28,232 ports per source address: 36 addresses for a million.
    assert_eq!(item(&r, "net.ipv4.ip_local").needed, "36 source addr");
    // A million sockets at 4 KiB + 4 KiB: 2,000,000 pages, over tcp_mem high.
    assert_eq!(item(&r, "net.ipv4.tcp_mem").needed, "2,000,000 high");
    let text = render(&r);
    assert!(text.contains("Not checked:\n  - net.core.netdev_max_backlog: could not read"));
    assert!(text.starts_with("gateway check: 1,000,000 connections, 2 shards (fd reserve 96)"));
}

#[test]
fn parsing_and_formatting() {
    assert_eq!(
        mem_total("MemFree: 1 kB\nMemTotal:  2048 kB\n"),
        Some(2 << 20)
    );
    assert_eq!(mem_total("nothing"), None);
    let mut s = big_host();
    s.files.insert(SOMAXCONN.into(), "garbage\n".into());
    assert_eq!(s.number(SOMAXCONN), None);
    assert_eq!(s.numbers(PORT_RANGE), Some(vec![1024, 65535]));
    assert_eq!(count(0), "0");
    assert_eq!(count(999), "999");
    assert_eq!(count(1000), "1,000");
    assert_eq!(count(1_048_576), "1,048,576");
    assert_eq!(count(u64::MAX), "unlimited");
    assert_eq!(bytes(512), "512 B");
    assert_eq!(bytes(8 << 20), "8 MiB");
    assert_eq!(bytes(699_050), "683 KiB");
    assert_eq!(bytes(70_000), "68.4 KiB");
    assert_eq!(bytes(3 << 29), "1.5 GiB");
}

#[test]
fn the_table_lines_up_and_separates_limits_from_advice() {
    let text = render(&evaluate(&small_host(), target(1_000_000, 2)));
    let limits = text.find("Limits (").unwrap();
    let advice = text.find("Advice (").unwrap();
    let blocks = text.find("Blocks 1,000,000:").unwrap();
    let notes = text.find("\nAdvice:").unwrap();
    assert!(limits < advice && advice < blocks && blocks < notes);
    assert!(text.contains(
        "\nNOT REACHABLE: 1,000,000 connections, stopped by open files soft/hard (RLIMIT_NOFILE) = \
         20,000 / 20,000; net.netfilter.nf_conntrack_max = 262,144.\n"
    ));
    // Every row of both tables has its columns at the same offsets as the header.
    let table: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("  - "))
        .collect();
    let header = table[0];
    let status_col = header.find("status").unwrap();
    for row in &table {
        let status = row.get(status_col..).unwrap_or("");
        assert!(
            ["status", "ok", "BLOCKS", "advice", "unknown"].contains(&status.trim_end()),
            "{row:?}"
        );
    }
    let open_files = table.iter().find(|l| l.contains("RLIMIT_NOFILE")).unwrap();
    assert!(open_files.contains("20,000 / 20,000"));
    assert!(open_files.contains("1,000,096"));
    assert!(open_files.contains("19,904 conns"));
    assert!(open_files.ends_with("BLOCKS"));
}
