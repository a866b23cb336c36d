//! One worker's life: set up its connections, wait for `go`, measure, report, wait for `stop`, close.
//!
//! The same code runs in-process (a run that fits one process) and in `loadtest worker` processes;
//! [`crate::control`] carries its [`Event`]s and [`Cmd`]s. Every connection is its own task, which
//! reads continuously (so server pings are answered) from the moment it is ready until `stop`. The
//! shared [`Ctx`] holds the counters those tasks update and the phase they watch.

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use crate::{
    cli::{Protocol, Target},
    control::{Cmd, Event, Snapshot, Task},
    net::{self, Data, Failure, Ws},
    planner, pusher, scenarios,
    stats::{Errors, Recorder, WorkerResult},
};

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Connecting.
    Setup,
    /// Measuring until `end_at`.
    Go {
        /// End of the measuring phase.
        end_at: Instant,
    },
    /// Closing.
    Stop,
}

/// How long after the measuring phase receivers wait for what is still in flight.
pub const DRAIN: Duration = Duration::from_secs(5);

/// State shared by a worker's tasks.
pub struct Ctx {
    /// The worker's task.
    pub task: Task,
    /// Latencies and the timeline.
    pub rec: Recorder,
    /// Failures by kind.
    pub errors: Errors,
    /// Connections attempted (churn: cycles started).
    pub attempted: AtomicU64,
    /// Connections ready (churn: cycles completed).
    pub ready: AtomicU64,
    /// Connections that failed during set-up.
    pub failed: AtomicU64,
    /// Set-up units done (ready or failed).
    pub settled: AtomicU64,
    /// Measuring units done.
    pub finished: AtomicU64,
    /// Connection tasks still running.
    pub alive: AtomicU64,
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages received.
    pub received: AtomicU64,
    /// Messages lost.
    pub lost: AtomicU64,
    /// Messages duplicated.
    pub duplicated: AtomicU64,
    /// Messages out of order.
    pub out_of_order: AtomicU64,
    /// ramp: connections held now.
    pub held: AtomicU64,
    /// ramp: stop adding connections.
    pub halted: AtomicBool,
    /// ramp: held connections when the ramp stopped, and this worker's first failure.
    pub ramp_stop: Mutex<(Option<u64>, Option<String>)>,
    /// pusher fanout: the publisher's probes this worker's subscribers have seen.
    pub probes_seen: AtomicU64,
    /// The phase, as tasks see it.
    pub phase: watch::Receiver<Phase>,
    /// Reports to the parent.
    pub events: mpsc::UnboundedSender<Event>,
}

impl Ctx {
    /// The source address of global connection `i`.
    pub fn source(&self, i: u64) -> Option<IpAddr> {
        let s = self.task.sources.max(1) as u64;
        Some(IpAddr::V4(planner::source_addr((i % s) as usize)))
    }

    /// The server global connection `i` talks to (crossnode: its node, see [`scenarios::node_of`]).
    pub fn target(&self, i: u64) -> &Target {
        let nodes = &self.task.targets;
        &nodes[scenarios::node_of(i, nodes.len())]
    }

    /// A user name unique to this run.
    pub fn user(&self, role: &str, i: u64) -> String {
        format!("{role}-{}-{i}", self.task.run)
    }

    /// A connection failed during set-up.
    pub fn setup_failed(&self, f: Failure) {
        self.errors.add(f.0);
        self.failed.fetch_add(1, Relaxed);
        self.settled.fetch_add(1, Relaxed);
        self.finished.fetch_add(1, Relaxed);
    }

    /// A connection was lost before `stop`: an error `drop_<kind>` (nothing once stopping).
    pub fn dropped(&self, f: &Failure) {
        if !self.stopping() && f.0 != "stopped" {
            self.errors.add(format!("drop_{}", f.0));
        }
    }

    /// True once `stop` came.
    pub fn stopping(&self) -> bool {
        *self.phase.borrow() == Phase::Stop
    }

    /// Counters for the progress bar.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connected: self.ready.load(Relaxed),
            failed: self.failed.load(Relaxed),
            sent: self.sent.load(Relaxed),
            received: self.received.load(Relaxed),
        }
    }

    /// ramp: stop adding connections; remembers the held count the first time.
    pub fn halt(&self) {
        self.halted.store(true, Relaxed);
        let mut s = self.ramp_stop.lock().expect("ramp lock");
        if s.0.is_none() {
            s.0 = Some(self.held.load(Relaxed));
        }
    }

    /// ramp: a connection failed; the first one halts the ramp and is reported at once.
    pub fn ramp_failure(&self, kind: String) {
        self.errors.add(kind.clone());
        let mut s = self.ramp_stop.lock().expect("ramp lock");
        if s.1.is_none() {
            let held = self.held.load(Relaxed);
            s.1 = Some(kind.clone());
            if s.0.is_none() {
                s.0 = Some(held);
            }
            self.halted.store(true, Relaxed);
            let _ = self.events.send(Event::Failure { held, kind });
        }
    }

    /// The next data frame on `ws`. v1: as [`net::recv`]. pusher: `pusher:ping` is answered and a fanout
    /// publisher's probe counted in [`Ctx::probes_seen`], both skipped.
    pub async fn recv(&self, ws: &mut Ws) -> Result<Data, Failure> {
        if self.task.opts.protocol == Protocol::V1 {
            return net::recv(ws).await;
        }
        loop {
            let data = net::recv(ws).await?;
            match pusher::control(data.bytes()) {
                pusher::Control::Ping => net::send_text(ws, pusher::PONG.to_string()).await?,
                pusher::Control::Probe => {
                    self.probes_seen.fetch_add(1, Relaxed);
                }
                pusher::Control::None => return Ok(data),
            }
        }
    }

    /// Waits for `go` while reading `ws` (answering pings); returns the end of the measuring phase and
    /// the data frames that arrived meanwhile (another task or process may have started first).
    pub async fn wait_go(&self, ws: &mut Ws) -> Result<(Instant, Vec<Data>), Failure> {
        let mut phase = self.phase.clone();
        let mut early = Vec::new();
        loop {
            match *phase.borrow_and_update() {
                Phase::Setup => {}
                Phase::Go { end_at } => return Ok((end_at, early)),
                Phase::Stop => return Err(Failure::new("stopped")),
            }
            tokio::select! {
                r = self.recv(ws) => early.push(r?),
                c = phase.changed() => if c.is_err() { return Err(Failure::new("stopped")) },
            }
        }
    }

    /// Reads `ws` until `until` (or `stop`); fails if the connection is lost before then.
    pub async fn hold(&self, ws: &mut Ws, until: Option<Instant>) -> Result<(), Failure> {
        let mut phase = self.phase.clone();
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            if *phase.borrow_and_update() == Phase::Stop {
                return Ok(());
            }
            tokio::select! {
                r = self.recv(ws) => if let Err(f) = r {
                    return if self.stopping() { Ok(()) } else { Err(f) };
                },
                c = phase.changed() => if c.is_err() { return Ok(()) },
                _ = tokio::time::sleep_until(until.unwrap_or(far)) => return Ok(()),
            }
        }
    }

    /// Everything to report at the end.
    fn result(&self) -> WorkerResult {
        let (held, first_failure) = self.ramp_stop.lock().expect("ramp lock").clone();
        let mut r = WorkerResult {
            attempted: self.attempted.load(Relaxed),
            connected: self.ready.load(Relaxed),
            errors: self.errors.snapshot(),
            sent: self.sent.load(Relaxed),
            received: self.received.load(Relaxed),
            lost: self.lost.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            out_of_order: self.out_of_order.load(Relaxed),
            held,
            first_failure,
            ..Default::default()
        };
        r.set_latency(&self.rec);
        r
    }
}

/// Counts a connection task as alive while it exists.
pub struct Alive(Arc<Ctx>);

impl Alive {
    /// Marks one more task alive.
    pub fn new(ctx: &Arc<Ctx>) -> Self {
        ctx.alive.fetch_add(1, Relaxed);
        Alive(ctx.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Relaxed);
    }
}

/// Paces work at `rate` per second from its creation (0: no pacing).
pub struct Pacer {
    rate: f64,
    start: Instant,
    issued: u64,
}

impl Pacer {
    /// A pacer starting now.
    pub fn new(rate: f64) -> Self {
        Pacer {
            rate,
            start: Instant::now(),
            issued: 0,
        }
    }

    /// How many more are due now (the first is due at once).
    pub fn due(&self) -> u64 {
        if self.rate <= 0.0 {
            return u64::MAX;
        }
        let due = (self.start.elapsed().as_secs_f64() * self.rate) as u64 + 1;
        due.saturating_sub(self.issued)
    }

    /// Notes `n` issued.
    pub fn take(&mut self, n: u64) {
        self.issued += n;
    }

    /// When the next one falls due.
    pub fn next_at(&self) -> Instant {
        if self.rate <= 0.0 {
            return Instant::now();
        }
        self.start + Duration::from_secs_f64(self.issued as f64 / self.rate)
    }

    /// Waits until the next one is due, and takes it.
    pub async fn tick(&mut self) {
        if self.due() == 0 {
            tokio::time::sleep_until(self.next_at()).await;
        }
        self.take(1);
    }
}

/// Polls `cond` every few milliseconds, handling commands meanwhile; false if told to stop.
async fn wait_for(
    ctx: &Ctx,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    cond: impl Fn() -> bool,
) -> bool {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        if cond() {
            return true;
        }
        tokio::select! {
            _ = tick.tick() => {}
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Halt) => ctx.halt(),
                Some(Cmd::Go { .. }) => {}
                Some(Cmd::Stop) | None => return false,
            },
        }
    }
}

/// Runs a worker until `stop` (or its parent goes away).
pub async fn run(
    task: Task,
    events: mpsc::UnboundedSender<Event>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let duration = Duration::from_secs_f64(task.opts.duration);
    let ctx = Arc::new(Ctx {
        task,
        rec: Recorder::default(),
        errors: Errors::default(),
        attempted: AtomicU64::new(0),
        ready: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        settled: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        alive: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        duplicated: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        held: AtomicU64::new(0),
        halted: AtomicBool::new(false),
        ramp_stop: Mutex::new((None, None)),
        probes_seen: AtomicU64::new(0),
        phase: phase_rx,
        events: events.clone(),
    });
    let progress = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                if ctx.events.send(Event::Progress(ctx.snapshot())).is_err() {
                    return;
                }
            }
        })
    };
    let units = scenarios::setup(&ctx);
    let c = ctx.clone();
    let stopped = 'run: {
        if !wait_for(&ctx, &mut cmds, || c.settled.load(Relaxed) >= units).await {
            break 'run true;
        }
        let _ = events.send(Event::Connected(ctx.snapshot()));
        let epoch_us = loop {
            match cmds.recv().await {
                Some(Cmd::Go { epoch_us }) => break epoch_us,
                Some(Cmd::Halt) => ctx.halt(),
                Some(Cmd::Stop) | None => break 'run true,
            }
        };
        ctx.rec.start(epoch_us);
        let end_at = Instant::now() + duration;
        let _ = phase_tx.send(Phase::Go { end_at });
        let generator = scenarios::start(&ctx, end_at);
        let finished = wait_for(&ctx, &mut cmds, || {
            c.finished.load(Relaxed) >= units && generator.as_ref().is_none_or(|g| g.is_finished())
        })
        .await;
        if !finished {
            break 'run true;
        }
        let _ = events.send(Event::Done(Box::new(ctx.result())));
        false
    };
    if !stopped {
        while let Some(cmd) = cmds.recv().await {
            match cmd {
                Cmd::Halt | Cmd::Go { .. } => {}
                Cmd::Stop => break,
            }
        }
    }
    progress.abort();
    let _ = phase_tx.send(Phase::Stop);
    let give_up = Instant::now() + Duration::from_secs(5);
    while ctx.alive.load(Relaxed) > 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
