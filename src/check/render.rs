//! The report as text: aligned tables of limits and advice, the notes on what to change, a verdict.

use std::fmt::Write as _;

use super::{Item, Kind, Report, Status, UNLIMITED};

/// `n` with thousands separators, or "unlimited".
pub fn count(n: u64) -> String {
    if n >= UNLIMITED {
        return "unlimited".into();
    }
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A connection count.
pub(super) fn conns(n: u64) -> String {
    format!("{} conns", count(n))
}

/// Bytes in binary units.
pub fn bytes(n: u64) -> String {
    if n >= UNLIMITED {
        return "unlimited".into();
    }
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The report as text: a table of limits, a table of advice, the notes, and a verdict line.
pub fn render(r: &Report) -> String {
    let t = r.target;
    let needed = format!("needed for {}", count(t.connections));
    let header = ["", "current", needed.as_str(), "allows today", "status"];
    let rows: Vec<[&str; 5]> = r
        .items
        .iter()
        .map(|i| [i.name, &i.current, &i.needed, &i.allows, i.status.label()])
        .collect();
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[&str; 5]| {
        let mut s = String::from("  ");
        for (cell, w) in cells.iter().zip(width) {
            let _ = write!(s, "{cell:<w$}  ");
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        "gateway check: {} connections, {} shards (fd reserve {}), limits of this process\n",
        count(t.connections),
        t.shards,
        t.reserve()
    );
    for (kind, title) in [
        (
            Kind::Limit,
            "Limits (below what N needs, N cannot be reached)",
        ),
        (
            Kind::Advice,
            "Advice (matters under bursts; does not stop N)",
        ),
    ] {
        let _ = writeln!(out, "{title}");
        line(&mut out, &header);
        for (item, row) in r.items.iter().zip(&rows) {
            if item.kind == kind {
                line(&mut out, row);
            }
        }
        out.push('\n');
    }
    for (status, title) in [
        (Status::Blocks, format!("Blocks {}:", count(t.connections))),
        (Status::Advice, "Advice:".to_string()),
        (Status::Unknown, "Not checked:".to_string()),
    ] {
        let notes: Vec<&Item> = r.items.iter().filter(|i| i.status == status).collect();
        if notes.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}");
        for i in notes {
            let _ = writeln!(out, "  - {}: {}", i.name, i.note);
        }
        out.push('\n');
    }
    if r.reachable() {
        let _ = writeln!(out, "OK: {} connections fit.", count(t.connections));
    } else {
        let blockers: Vec<String> = r
            .items
            .iter()
            .filter(|i| i.status == Status::Blocks)
            .map(|i| format!("{} = {}", i.name, i.current))
            .collect();
        let _ = writeln!(
            out,
            "NOT REACHABLE: {} connections, stopped by {}.",
            count(t.connections),
            blockers.join("; ")
        );
    }
    if let Some((c, item)) = r.capacity() {
        let _ = writeln!(
            out,
            "Today this host allows {} connections, limited by {}.",
            count(c),
            item.name
        );
    }
    out
}
