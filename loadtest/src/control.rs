//! The conversation between the coordinating process and its workers.
//!
//! One process cannot hold more connections than its open-file limit, so a large run is split over
//! worker processes: the parent re-executes itself as `loadtest worker`, writes the worker's [`Task`]
//! as one JSON line on its stdin, then [`Cmd`] lines; the worker answers with [`Event`] lines on
//! stdout. A run that fits one process runs the same worker code in-process over channels, so both
//! paths share every step: connect, report `connected`, wait for `go`, measure, report `done`, wait for
//! `stop`, close. A worker whose stdin reaches end of file (its parent is gone) exits at once.

use std::{
    io::{BufRead, Write},
    process::Stdio,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

use crate::{
    cli::{Options, Scenario, Target},
    stats::WorkerResult,
};

/// What one worker does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Task {
    /// The scenario.
    pub scenario: Scenario,
    /// The command line.
    pub opts: Options,
    /// The servers, one per node (only crossnode has several; [`crate::worker::Ctx::target`] picks).
    pub targets: Vec<Target>,
    /// This worker's number.
    pub worker: usize,
    /// Its connections: global indexes `first..first + count`.
    pub first: u64,
    /// How many.
    pub count: u64,
    /// fanout: this worker also runs the publisher.
    pub publisher: bool,
    /// Source addresses of the run (connection `i` uses source `i % sources`).
    pub sources: usize,
    /// This worker's share of `--connect-rate` (0: unpaced).
    pub connect_rate: f64,
    /// This worker's share of `--rate` for churn and ramp; dm/fanout use `--rate` as is.
    pub rate: f64,
    /// Seconds after which the worker gives up whatever happens.
    pub deadline_s: f64,
    /// Tag of this run, part of every user name (so concurrent runs do not share users).
    pub run: String,
}

/// Parent to worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Cmd {
    /// Start measuring; `epoch_us` is the shared start ([`crate::stats::now_us`]).
    Go {
        /// Start of the measuring phase.
        epoch_us: u64,
    },
    /// ramp: another worker failed; stop adding connections.
    Halt,
    /// Close everything and exit.
    Stop,
}

/// Counters for the progress bar.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Connections ready (or churn cycles done).
    pub connected: u64,
    /// Connections failed.
    pub failed: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
}

/// Worker to parent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Set-up finished: every connection is ready or failed.
    Connected(Snapshot),
    /// Counters so far.
    Progress(Snapshot),
    /// ramp: this worker's first failure.
    Failure {
        /// Connections it held at that moment.
        held: u64,
        /// What failed.
        kind: String,
    },
    /// The measuring phase is over.
    Done(Box<WorkerResult>),
    /// The worker ended without finishing (made up by the parent).
    Gone {
        /// Why.
        reason: String,
    },
}

/// The parent's handle on one worker.
pub struct Endpoint {
    /// Commands to the worker.
    pub cmds: mpsc::UnboundedSender<Cmd>,
    /// The worker process, when it is one.
    pub child: Option<Child>,
}

/// Events from all workers, tagged with the worker's number.
pub type Events = mpsc::UnboundedSender<(usize, Event)>;

/// Runs `task` in this process.
pub fn spawn_local(task: Task, events: Events) -> Endpoint {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let w = task.worker;
    tokio::spawn(crate::worker::run(task, ev_tx, cmd_rx));
    tokio::spawn(async move {
        while let Some(ev) = ev_rx.recv().await {
            if events.send((w, ev)).is_err() {
                return;
            }
        }
        let _ = events.send((
            w,
            Event::Gone {
                reason: "worker ended".into(),
            },
        ));
    });
    Endpoint {
        cmds: cmd_tx,
        child: None,
    }
}

/// Runs `task` in a new process: this executable, `loadtest worker`.
pub fn spawn_process(task: Task, events: Events) -> std::io::Result<Endpoint> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<Cmd>();
    let w = task.worker;
    let first = serde_json::to_string(&task).expect("task serialises");
    tokio::spawn(async move {
        let mut line = first;
        loop {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                return;
            }
            match cmd_rx.recv().await {
                Some(cmd) => line = serde_json::to_string(&cmd).expect("cmd serialises"),
                // The parent dropped its handle: closing stdin tells the worker to quit.
                None => return,
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let reason = loop {
            match lines.next_line().await {
                Ok(Some(line)) => match serde_json::from_str::<Event>(&line) {
                    Ok(ev) => {
                        if events.send((w, ev)).is_err() {
                            return;
                        }
                    }
                    Err(e) => break format!("bad report from worker: {e}"),
                },
                Ok(None) => break "worker exited".to_string(),
                Err(e) => break format!("reading worker: {e}"),
            }
        };
        let _ = events.send((w, Event::Gone { reason }));
    });
    Ok(Endpoint {
        cmds: cmd_tx,
        child: Some(child),
    })
}

/// Waits for a worker process to exit after `stop`, killing it if it takes too long.
pub async fn reap(ep: &mut Endpoint, patience: Duration) {
    if let Some(child) = ep.child.as_mut()
        && tokio::time::timeout(patience, child.wait()).await.is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Reads stdin lines on a thread of its own (tokio's stdin is not enabled in this crate); at end of
/// file (the parent is gone, or done with us) the process exits.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
        std::process::exit(0);
    });
    rx
}

/// Writes one event as a JSON line on stdout.
fn write_event(ev: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_string(ev).expect("event serialises");
    line.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.flush()
}

/// `loadtest worker`: reads the task from stdin, runs it, reports on stdout.
pub async fn child_main() -> i32 {
    let mut lines = stdin_lines();
    let task: Task = match lines.recv().await.map(|l| serde_json::from_str(&l)) {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            eprintln!("loadtest worker: bad task: {e}");
            return 2;
        }
        None => return 2,
    };
    let _ = crate::planner::raise_nofile();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(task.deadline_s);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            match serde_json::from_str::<Cmd>(&line) {
                Ok(cmd) => {
                    if cmd_tx.send(cmd).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("loadtest worker: bad command: {e}"),
            }
        }
    });
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let mut worker = tokio::spawn(crate::worker::run(task, ev_tx, cmd_rx));
    let pump = async {
        loop {
            tokio::select! {
                biased;
                ev = ev_rx.recv() => match ev {
                    Some(ev) => write_event(&ev)?,
                    None => return Ok::<(), std::io::Error>(()),
                },
                _ = &mut worker => {
                    while let Ok(ev) = ev_rx.try_recv() {
                        write_event(&ev)?;
                    }
                    return Ok(());
                }
            }
        }
    };
    match tokio::time::timeout_at(deadline, pump).await {
        Ok(Ok(())) => 0,
        Ok(Err(_)) => 1,
        Err(_) => {
            eprintln!("loadtest worker: deadline reached");
            3
        }
    }
}
