//! The parent side of a run: plan, start the workers, keep them in step, merge, report.
//!
//! The coordinator never holds connections itself (unless the plan has one process, in which case
//! its single worker runs in this process). It waits until every worker has set up (`connected`),
//! starts them together (`go`, with a shared CLOCK_MONOTONIC epoch), relays a ramp's first failure as
//! `halt` to the others, samples the server's RSS while the connections are still open, then stops
//! everyone. The whole run is cut off at `--duration` + 120 s: whatever has not reported by then is
//! dropped (worker processes are killed) and the report says `deadline`.

use std::{collections::BTreeMap, time::Duration};

use serde_json::json;
use tokio::{sync::mpsc, time::Instant};

use crate::{
    cli::{DEFAULT_PUSHER_CHANNELS, Options, Protocol, Scenario, Target},
    control::{self, Cmd, Endpoint, Event, Snapshot, Task},
    planner::{self, Overrides, Plan},
    progress::Progress,
    report::{Latency, Merged, Report},
    scenarios::WINDOW,
    stats::{WorkerResult, now_us},
};

/// Slack on top of `--duration` before the run is cut off.
const DEADLINE_SLACK: Duration = Duration::from_secs(120);

/// What the coordinator knows about its workers.
struct State {
    /// Worker `w` finished set-up.
    connected: Vec<bool>,
    /// Worker `w`'s result.
    done: Vec<Option<WorkerResult>>,
    /// Worker `w` ended (its report stream closed).
    gone: Vec<bool>,
    /// Latest counters of worker `w`.
    snaps: Vec<Snapshot>,
    /// ramp: the first failure reported.
    first_failure: Option<String>,
    /// When `go` was sent.
    go_at: Option<Instant>,
    /// The servers' CPU time (clock ticks) when `go` was sent.
    cpu_at_go: Option<u64>,
    /// Each measured process at `go`.
    servers: Vec<crate::servers::Server>,
    /// The kernel's memory at `go`.
    kernel_at_go: Option<crate::servers::Kernel>,
}

impl State {
    fn totals(&self) -> Snapshot {
        let mut t = Snapshot::default();
        for s in &self.snaps {
            t.connected += s.connected;
            t.failed += s.failed;
            t.sent += s.sent;
            t.received += s.received;
        }
        t
    }
}

/// How many connections to plan for, and in what unit they split over processes.
fn sizing(s: Scenario, opts: &Options) -> (u64, u64, u64) {
    let n = opts.connections(s);
    match s {
        s if s.pairs() => (n - n % 2, 2, n - n % 2),
        Scenario::Fanout => (n, 1, n + 1),
        Scenario::Churn => {
            // Each cycle is short-lived, but its port may linger (TIME_WAIT) for up to a minute.
            let ports = (opts.rate(s) * opts.duration.min(60.0)).ceil() as u64;
            (n, 1, ports.min(n).max(1))
        }
        _ => (n, 1, n),
    }
}

/// The tasks of the workers.
fn tasks(s: Scenario, opts: &Options, targets: &[Target], plan: &Plan, run: &str) -> Vec<Task> {
    let (total, unit, _) = sizing(s, opts);
    let p = plan.processes;
    let share = |v: f64| v / p as f64;
    let slices = if s == Scenario::Churn {
        let each = if total == u64::MAX {
            u64::MAX
        } else {
            total.div_ceil(p as u64)
        };
        (0..p as u64)
            .map(|w| w * 1_000_000_000_000..w * 1_000_000_000_000 + each.min(1 << 39))
            .collect()
    } else {
        plan.slices(total, unit)
    };
    slices
        .into_iter()
        .enumerate()
        .map(|(w, r)| Task {
            scenario: s,
            opts: opts.clone(),
            targets: targets.to_vec(),
            worker: w,
            first: r.start,
            count: r.end - r.start,
            publisher: s == Scenario::Fanout && w == 0,
            sources: plan.sources,
            connect_rate: share(opts.connect_rate),
            rate: if matches!(s, Scenario::Churn | Scenario::Ramp) {
                share(opts.rate(s))
            } else {
                opts.rate(s)
            },
            deadline_s: opts.duration + DEADLINE_SLACK.as_secs_f64(),
            run: run.to_string(),
        })
        .collect()
}

/// The settings a report states.
fn settings(
    s: Scenario,
    opts: &Options,
    targets: &[Target],
    run: &str,
) -> BTreeMap<String, serde_json::Value> {
    let mut m = BTreeMap::new();
    m.insert("run".into(), json!(run));
    m.insert("duration".into(), json!(opts.duration));
    m.insert("connect_rate".into(), json!(opts.connect_rate));
    m.insert("raw".into(), json!(opts.raw));
    let pusher = opts.protocol == Protocol::Pusher;
    if pusher {
        m.insert("protocol".into(), json!("pusher"));
        m.insert("pusher_app_id".into(), json!(opts.pusher_app_id));
        m.insert("pusher_key".into(), json!(opts.pusher_key));
    }
    let subscribes = matches!(s, Scenario::Idle | Scenario::Churn | Scenario::Ramp);
    if subscribes && opts.channel_of(0).is_some() {
        let n = opts.channels.unwrap_or(DEFAULT_PUSHER_CHANNELS);
        m.insert("channels".into(), json!(n));
        m.insert("channel_prefix".into(), json!(opts.channel));
    }
    let rate = opts.rate(s);
    match s {
        Scenario::Idle => {}
        Scenario::Echo => {
            m.insert("size".into(), json!(opts.size));
            m.insert("window".into(), json!(opts.window));
            let mode = if opts.raw {
                if opts.text {
                    "raw text frames"
                } else {
                    "raw binary frames"
                }
            } else {
                "protocol: send to self, data = payload string (text frames)"
            };
            m.insert("mode".into(), json!(mode));
        }
        Scenario::Dm | Scenario::Crossnode | Scenario::Fanout => {
            let key = if s.pairs() {
                "rate_per_sender"
            } else {
                "publish_rate"
            };
            m.insert(key.into(), json!(rate));
            m.insert("window_unacked".into(), json!(WINDOW));
            if s == Scenario::Fanout {
                m.insert("channel".into(), json!(opts.channel));
                if let Some(n) = opts.channels.filter(|_| !pusher) {
                    m.insert("channels".into(), json!(n));
                    m.insert(
                        "spread".into(),
                        json!("subscriber i on <channel>-<i mod channels>, message k to <channel>-<k mod channels>"),
                    );
                }
            }
            if pusher {
                m.remove("window_unacked");
                let api = opts
                    .api_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", targets[0].addr));
                m.insert("api".into(), json!(api));
                m.insert(
                    "publisher".into(),
                    json!("signed HTTP API triggers, one request per connection, the next once the previous is answered"),
                );
                return m;
            }
            let mut assumes =
                "gateway per-connection rate limit off (GATEWAY_LIMITS_RATE_LIMIT_PER_SEC=0)"
                    .to_string();
            if s == Scenario::Crossnode || targets.len() > 1 {
                let urls: Vec<&str> = targets.iter().map(|t| t.url.as_str()).collect();
                m.insert("nodes".into(), json!(urls));
            }
            if s == Scenario::Crossnode {
                m.insert("pairing".into(), json!(crate::scenarios::PAIRING));
                assumes += "; every node on the same Redis";
            }
            m.insert("assumes".into(), json!(assumes));
        }
        Scenario::Churn | Scenario::Ramp => {
            m.insert("rate".into(), json!(rate));
            let max = opts.connections(s);
            let max = (max != u64::MAX).then_some(max);
            m.insert("max_connections".into(), json!(max));
        }
    }
    m
}

/// Handles one event; relays a ramp's first failure as `halt`.
fn handle(st: &mut State, eps: &[Endpoint], w: usize, ev: Event, bar: &Progress) {
    match ev {
        Event::Connected(s) => {
            st.connected[w] = true;
            st.snaps[w] = s;
        }
        Event::Progress(s) => st.snaps[w] = s,
        Event::Failure { kind, .. } => {
            if st.first_failure.is_none() {
                st.first_failure = Some(kind);
                for (i, ep) in eps.iter().enumerate() {
                    if i != w {
                        let _ = ep.cmds.send(Cmd::Halt);
                    }
                }
            }
        }
        Event::Done(r) => st.done[w] = Some(*r),
        Event::Gone { reason } => {
            if !st.gone[w] && st.done[w].is_none() {
                bar.println(&format!("loadtest: worker {w} ended early: {reason}"));
            }
            st.gone[w] = true;
        }
    }
}

/// Runs the workers through set-up and measurement.
async fn drive(
    st: &mut State,
    eps: &[Endpoint],
    events: &mut mpsc::UnboundedReceiver<(usize, Event)>,
    opts: &Options,
    bar: &Progress,
) {
    let p = eps.len();
    while (0..p).any(|w| !st.connected[w] && !st.gone[w]) {
        let Some((w, ev)) = events.recv().await else {
            return;
        };
        handle(st, eps, w, ev, bar);
        let t = st.totals();
        bar.set(format!(
            "connecting: {} ready, {} failed",
            t.connected, t.failed
        ));
    }
    let epoch_us = now_us();
    for ep in eps {
        let _ = ep.cmds.send(Cmd::Go { epoch_us });
    }
    let go_at = Instant::now();
    st.go_at = Some(go_at);
    st.cpu_at_go = crate::report::cpu_ticks(&cpu_pids(opts));
    st.servers = crate::servers::at_go(&cpu_pids(opts));
    st.kernel_at_go = Some(crate::servers::kernel());
    while (0..p).any(|w| st.done[w].is_none() && !st.gone[w]) {
        let Some((w, ev)) = events.recv().await else {
            return;
        };
        handle(st, eps, w, ev, bar);
        let t = st.totals();
        bar.set(format!(
            "measuring {:.0}/{:.0} s: {} ready, {} failed, {} sent, {} received",
            go_at.elapsed().as_secs_f64(),
            opts.duration,
            t.connected,
            t.failed,
            t.sent,
            t.received
        ));
    }
}

/// The server processes whose CPU time is measured: `--pid` and every `--cpu-pid`.
fn cpu_pids(opts: &Options) -> Vec<u32> {
    opts.pid.iter().chain(&opts.cpu_pid).copied().collect()
}

/// Runs scenario `s` and returns its report.
pub async fn run(s: Scenario, opts: Options, targets: Vec<Target>) -> Report {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(opts.duration) + DEADLINE_SLACK;
    let nofile = planner::raise_nofile().unwrap_or(1024);
    let ports = planner::read_port_range().unwrap_or((32768, 60999));
    let overrides = Overrides {
        processes: opts.processes,
        sources: opts.sources,
    };
    let plan = planner::plan(sizing(s, &opts).2, nofile, ports, overrides);
    for r in &plan.reasons {
        println!("plan: {r}");
    }
    let run = format!("{:x}", std::process::id());
    let bar = Progress::new(!opts.quiet);
    let rss_before = opts.pid.and_then(crate::report::rss_kib);
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let mut eps = Vec::new();
    let mut merged = Merged::default();
    for task in tasks(s, &opts, &targets, &plan, &run) {
        if plan.processes == 1 {
            eps.push(control::spawn_local(task, ev_tx.clone()));
        } else {
            match control::spawn_process(task, ev_tx.clone()) {
                Ok(ep) => eps.push(ep),
                Err(e) => {
                    bar.println(&format!("loadtest: cannot start a worker process: {e}"));
                    merged.error("worker_spawn");
                }
            }
        }
    }
    drop(ev_tx);
    let p = eps.len();
    let mut st = State {
        connected: vec![false; p],
        done: vec![None; p],
        gone: vec![false; p],
        snaps: vec![Snapshot::default(); p],
        first_failure: None,
        go_at: None,
        cpu_at_go: None,
        servers: Vec::new(),
        kernel_at_go: None,
    };
    let in_time = tokio::time::timeout_at(deadline, drive(&mut st, &eps, &mut events, &opts, &bar))
        .await
        .is_ok();
    let duration_s = st.go_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let rss_after = opts.pid.and_then(crate::report::rss_kib);
    let cpu_after = crate::report::cpu_ticks(&cpu_pids(&opts));
    crate::servers::finish(&mut st.servers);
    for ep in &eps {
        let _ = ep.cmds.send(Cmd::Stop);
    }
    if in_time {
        bar.set("closing connections".into());
        let patience = Duration::from_secs(10);
        let _ = tokio::time::timeout(patience, async {
            while st.gone.iter().any(|g| !g) {
                match events.recv().await {
                    Some((w, ev)) => handle(&mut st, &eps, w, ev, &bar),
                    None => break,
                }
            }
        })
        .await;
        for ep in &mut eps {
            control::reap(ep, Duration::from_secs(2)).await;
        }
    } else {
        for ep in &mut eps {
            if let Some(child) = ep.child.as_mut() {
                let _ = child.start_kill();
            }
        }
        merged.error("deadline");
    }
    bar.finish();
    for (w, r) in st.done.iter().enumerate() {
        match r {
            Some(r) => merged.add(r),
            None => {
                // No result: count what its last progress report said.
                let s = st.snaps[w];
                merged.totals.connected += s.connected;
                merged.totals.sent += s.sent;
                merged.totals.received += s.received;
                if in_time {
                    merged.error(&format!("worker_{w}_no_result"));
                }
            }
        }
    }
    let t = &merged.totals;
    let connections = match s {
        Scenario::Churn | Scenario::Ramp => t.attempted,
        Scenario::Fanout => sizing(s, &opts).0 + 1,
        _ => sizing(s, &opts).0,
    };
    let rss_per_conn_bytes = match (rss_before, rss_after) {
        (Some(b), Some(a)) if t.connected > 0 => {
            Some((a as f64 - b as f64) * 1024.0 / t.connected as f64)
        }
        _ => None,
    };
    let latency = merged.latency.as_ref().map(Latency::of).unwrap_or_default();
    let server_cpu_s = match (st.cpu_at_go, cpu_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / crate::report::clock_ticks_per_s()),
        _ => None,
    };
    Report {
        scenario: s.name().into(),
        connections,
        connected: t.connected,
        errors: t.errors.clone(),
        duration_s,
        messages_sent: t.sent,
        messages_received: t.received,
        msg_per_s: if duration_s > 0.0 {
            t.received as f64 / duration_s
        } else {
            0.0
        },
        latency_ms: latency,
        lost: t.lost,
        duplicated: t.duplicated,
        out_of_order: t.out_of_order,
        server_rss_before_kib: rss_before,
        server_rss_after_kib: rss_after,
        rss_per_conn_bytes,
        server_cpu_s,
        received_per_server_cpu_s: server_cpu_s
            .filter(|&c| c > 0.0)
            .map(|c| t.received as f64 / c),
        servers: std::mem::take(&mut st.servers),
        kernel_at_go: st.kernel_at_go.take(),
        settings: settings(s, &opts, &targets, &run),
        processes: plan.processes,
        sources: plan.sources,
        stop_reason: if in_time { "completed" } else { "deadline" }.into(),
        held_at_first_failure: if s == Scenario::Ramp {
            merged.held
        } else {
            None
        },
        first_failure: st.first_failure.clone(),
        timeline: Report::timeline(&merged.bins),
    }
}
