//! The run's report: merged from the workers' results, printed for people, written as JSON.
//!
//! The JSON object (`--json FILE`, and the `RESULT {...}` last line of stdout) is what scripts read;
//! its keys are fixed by the loadtest contract. The exit status follows from it: 0 ok, 1 when messages
//! were lost, duplicated or reordered or connections failed (ramp expects a failure and only fails on
//! the deadline).

use std::{collections::BTreeMap, fmt::Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::{self, Bin, WorkerResult};

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Highest.
    pub max: f64,
    /// Samples.
    pub count: u64,
}

impl Latency {
    /// The percentiles of a histogram in µs.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            count: h.len(),
        }
    }
}

/// One second of the measuring phase.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Point {
    /// Seconds since `go`.
    pub t: u64,
    /// Messages sent in that second.
    pub sent: u64,
    /// Messages received in that second (churn: cycles, ramp: connections).
    pub received: u64,
    /// Median latency of that second, ms.
    pub p50_ms: f64,
    /// 99th percentile latency of that second, ms.
    pub p99_ms: f64,
}

/// Everything the workers reported, added up.
#[derive(Default)]
pub struct Merged {
    /// Sum of the workers' counts (histogram fields unused).
    pub totals: WorkerResult,
    /// All latencies.
    pub latency: Option<Histogram<u64>>,
    /// The timeline.
    pub bins: Vec<Bin>,
    /// ramp: connections held when the ramp stopped.
    pub held: Option<u64>,
}

impl Merged {
    /// Adds one worker's result.
    pub fn add(&mut self, r: &WorkerResult) {
        let t = &mut self.totals;
        t.attempted += r.attempted;
        t.connected += r.connected;
        t.sent += r.sent;
        t.received += r.received;
        t.lost += r.lost;
        t.duplicated += r.duplicated;
        t.out_of_order += r.out_of_order;
        for (k, v) in &r.errors {
            *t.errors.entry(k.clone()).or_default() += v;
        }
        if let Some(h) = r.held {
            self.held = Some(self.held.unwrap_or(0) + h);
        }
        match stats::decode_hist(&r.latency) {
            Ok(h) => match &mut self.latency {
                Some(all) => all.add(&h).expect("same bounds"),
                None => self.latency = Some(h),
            },
            Err(e) => *t.errors.entry(format!("bad_histogram: {e}")).or_default() += 1,
        }
        let mut bins = Vec::with_capacity(r.timeline.len());
        for b in &r.timeline {
            let hist = stats::decode_hist(&b.hist).unwrap_or_else(|_| stats::histogram(2));
            bins.push(Bin {
                sent: b.sent,
                received: b.received,
                hist,
            });
        }
        stats::merge_bins(&mut self.bins, &bins);
    }

    /// Counts one failure of `kind` that no worker reported (a worker gone, the deadline).
    pub fn error(&mut self, kind: &str) {
        *self.totals.errors.entry(kind.to_string()).or_default() += 1;
    }
}

/// The report of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Connections asked for (churn: cycles started; fanout: subscribers + the publisher).
    pub connections: u64,
    /// Connections that reached ready (churn: cycles completed).
    pub connected: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Seconds from `go` to the last worker's result.
    pub duration_s: f64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// `messages_received / duration_s`.
    pub msg_per_s: f64,
    /// Latency percentiles (echo: round trip; dm, crossnode, fanout: delivery; idle, ramp: connect +
    /// identify; churn: the whole cycle).
    pub latency_ms: Latency,
    /// Messages lost.
    pub lost: u64,
    /// Messages duplicated.
    pub duplicated: u64,
    /// Messages out of order.
    pub out_of_order: u64,
    /// Server VmRSS before connecting (KiB).
    pub server_rss_before_kib: Option<u64>,
    /// Server VmRSS at the end, connections still open (KiB).
    pub server_rss_after_kib: Option<u64>,
    /// `(after - before) / connected`, bytes.
    pub rss_per_conn_bytes: Option<f64>,
    /// CPU time (user + system) of the server processes (`--pid`, `--cpu-pid`) from `go` to the
    /// last worker's result, seconds.
    pub server_cpu_s: Option<f64>,
    /// `messages_received / server_cpu_s`: deliveries per server CPU-second.
    pub received_per_server_cpu_s: Option<f64>,
    /// Each server process (`--pid`, then every `--cpu-pid`): RSS at `go`, CPU over the phase.
    #[serde(default)]
    pub servers: Vec<crate::servers::Server>,
    /// The kernel's memory at `go` (machine-wide).
    #[serde(default)]
    pub kernel_at_go: Option<crate::servers::Kernel>,
    /// The settings the run used or assumed.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Processes used.
    pub processes: usize,
    /// Source addresses used.
    pub sources: usize,
    /// `completed`, or `deadline` when the hard cap cut the run short.
    pub stop_reason: String,
    /// ramp: connections held when the first failure came (or when it stopped without one).
    pub held_at_first_failure: Option<u64>,
    /// ramp: the kind of the first failure.
    pub first_failure: Option<String>,
    /// Per second of the measuring phase.
    pub timeline: Vec<Point>,
}

impl Report {
    /// The process exit status the contract asks for.
    pub fn exit_code(&self) -> i32 {
        if self.stop_reason != "completed" {
            return 1;
        }
        if self.scenario == "ramp" {
            return 0;
        }
        let bad_messages = self.lost + self.duplicated + self.out_of_order > 0;
        let bad_conns = !self.errors.is_empty() || self.connected < self.connections;
        i32::from(bad_messages || bad_conns)
    }

    /// The timeline from merged bins.
    pub fn timeline(bins: &[Bin]) -> Vec<Point> {
        bins.iter()
            .enumerate()
            .map(|(t, b)| {
                let l = Latency::of(&b.hist);
                Point {
                    t: t as u64,
                    sent: b.sent,
                    received: b.received,
                    p50_ms: l.p50,
                    p99_ms: l.p99,
                }
            })
            .collect()
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "loadtest {}: {} of {} connections ready, {} process(es), {} source address(es), {:.1} s measured, {}",
            self.scenario,
            self.connected,
            self.connections,
            self.processes,
            self.sources,
            self.duration_s,
            self.stop_reason
        );
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "  settings: {}", settings.join(" "));
        let _ = writeln!(
            s,
            "  throughput: {} sent, {} received, {:.0} msg/s",
            self.messages_sent, self.messages_received, self.msg_per_s
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "  latency ms ({} samples): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.count, l.p50, l.p90, l.p99, l.p999, l.max
        );
        let _ = writeln!(
            s,
            "  lost {}  duplicated {}  out of order {}",
            self.lost, self.duplicated, self.out_of_order
        );
        let errors = if self.errors.is_empty() {
            "none".to_string()
        } else {
            let e: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            e.join(" ")
        };
        let _ = writeln!(s, "  errors: {errors}");
        if let (Some(b), Some(a)) = (self.server_rss_before_kib, self.server_rss_after_kib) {
            let per = self
                .rss_per_conn_bytes
                .map_or("-".to_string(), |v| format!("{v:.0}"));
            let _ = writeln!(
                s,
                "  server RSS: {b} KiB before, {a} KiB after, {per} bytes per connection"
            );
        }
        if let (Some(cpu), Some(per)) = (self.server_cpu_s, self.received_per_server_cpu_s) {
            let _ = writeln!(
                s,
                "  server CPU: {cpu:.2} s while measuring, {per:.0} received per server CPU-second"
            );
        }
        if self.scenario == "ramp" {
            let _ = writeln!(
                s,
                "  ramp: {} connections held when it stopped; first failure: {}",
                self.held_at_first_failure.unwrap_or(0),
                self.first_failure.as_deref().unwrap_or("none")
            );
        }
        s
    }

    /// `RESULT <json>`.
    pub fn result_line(&self) -> String {
        format!(
            "RESULT {}",
            serde_json::to_string(self).expect("report serialises")
        )
    }
}

/// The CPU time (user + system, all threads) of `pids` together, in clock ticks, from
/// /proc/PID/stat; `None` without pids or when one cannot be read.
pub fn cpu_ticks(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold(0u64, |sum, pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command (which may hold spaces) in parentheses: state is the first,
        // utime the 12th, stime the 13th.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
        Some(sum + utime + stime)
    })
}

/// Clock ticks per second of /proc/PID/stat (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf only reads a system constant; it has no preconditions and touches no memory of
    // ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// The server's VmRSS in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::encode_hist;

    fn report(scenario: &str) -> Report {
        Report {
            scenario: scenario.into(),
            connections: 10,
            connected: 10,
            errors: BTreeMap::new(),
            duration_s: 1.0,
            messages_sent: 5,
            messages_received: 5,
            msg_per_s: 5.0,
            latency_ms: Latency::default(),
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            server_rss_before_kib: None,
            server_rss_after_kib: None,
            rss_per_conn_bytes: None,
            server_cpu_s: None,
            received_per_server_cpu_s: None,
            servers: Vec::new(),
            kernel_at_go: None,
            settings: BTreeMap::new(),
            processes: 1,
            sources: 1,
            stop_reason: "completed".into(),
            held_at_first_failure: None,
            first_failure: None,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(report("dm").exit_code(), 0);
        let mut r = report("dm");
        r.out_of_order = 1;
        assert_eq!(r.exit_code(), 1);
        let mut r = report("idle");
        r.connected = 9;
        assert_eq!(r.exit_code(), 1);
        let mut r = report("ramp");
        r.errors.insert("close_1013".into(), 1);
        assert_eq!(r.exit_code(), 0);
        r.stop_reason = "deadline".into();
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn the_result_line_is_one_line_of_json() {
        let line = report("echo").result_line();
        assert!(line.starts_with("RESULT {") && !line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line[7..]).unwrap();
        for key in [
            "scenario",
            "connections",
            "connected",
            "errors",
            "duration_s",
            "messages_sent",
            "messages_received",
            "msg_per_s",
            "latency_ms",
            "lost",
            "duplicated",
            "out_of_order",
            "server_rss_before_kib",
            "server_rss_after_kib",
            "rss_per_conn_bytes",
            "settings",
            "processes",
            "sources",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert!(v["latency_ms"].get("p999").is_some());
    }

    #[test]
    fn cpu_time_of_this_process() {
        let me = std::process::id();
        assert!(cpu_ticks(&[me]).is_some());
        assert_eq!(cpu_ticks(&[]), None);
        assert_eq!(cpu_ticks(&[me, u32::MAX]), None);
        assert!(clock_ticks_per_s() > 0.0);
    }

    #[test]
    fn merging_adds_counts_and_histograms() {
        let mut h = stats::histogram(3);
        h.record(1000).unwrap();
        let w = WorkerResult {
            attempted: 2,
            connected: 2,
            sent: 3,
            latency: encode_hist(&h),
            errors: [("refused".to_string(), 1)].into(),
            held: Some(4),
            ..Default::default()
        };
        let mut m = Merged::default();
        m.add(&w);
        m.add(&w);
        assert_eq!((m.totals.connected, m.totals.sent), (4, 6));
        assert_eq!(m.totals.errors["refused"], 2);
        assert_eq!(m.held, Some(8));
        let l = Latency::of(m.latency.as_ref().unwrap());
        assert_eq!(l.count, 2);
        assert!((l.p50 - 1.0).abs() < 0.01);
    }
}
