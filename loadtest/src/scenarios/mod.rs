//! The scenarios: what each connection does, and the generators of churn and ramp.
//!
//! idle, echo, dm, crossnode and fanout open all their connections during set-up, one task per
//! connection in a [`Role`], paced at the worker's share of `--connect-rate`; the measuring phase starts
//! for all of them at `go`. churn and ramp have no set-up: their generator starts at `go` and opens
//! connections itself.

mod churn;
mod crossnode;
mod echo;
mod publish;
mod stream;

pub use crossnode::{PAIRING, node_of};
pub use stream::WINDOW;

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use tokio::{sync::Semaphore, task::JoinHandle, time::Instant};

use crate::{
    cli::{Protocol, Scenario},
    net::{self, Failure, Ws},
    pusher,
    stats::now_us,
    worker::{Alive, Ctx, DRAIN, Pacer},
};

/// How long past [`DRAIN`] a connection's role may take before it counts as stalled.
pub(crate) const STALL: Duration = Duration::from_secs(5);

/// Handshakes a worker has in progress at most while connecting.
const MAX_PENDING: usize = 2048;

/// What one connection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Holds the connection.
    Idle,
    /// Round trips checked for content and order.
    Echo,
    /// dm, crossnode: sends numbered messages to the receiver of pair `.0`.
    Sender(u64),
    /// dm, crossnode: checks the stream from the sender of pair `.0`.
    Receiver(u64),
    /// fanout: checks the publisher's stream.
    Subscriber,
    /// fanout: publishes numbered messages.
    Publisher,
}

impl Role {
    /// The role of global connection `i`.
    fn of(s: Scenario, i: u64) -> Role {
        match s {
            Scenario::Echo => Role::Echo,
            s if s.pairs() && i.is_multiple_of(2) => Role::Sender(i / 2),
            s if s.pairs() => Role::Receiver(i / 2),
            Scenario::Fanout => Role::Subscriber,
            _ => Role::Idle,
        }
    }

    /// The user connection `i` identifies as.
    fn user(self, ctx: &Ctx, i: u64) -> String {
        match self {
            Role::Idle => ctx.user("idle", i),
            Role::Echo => ctx.user("echo", i),
            Role::Sender(p) => ctx.user("dm-s", p),
            Role::Receiver(p) => ctx.user("dm-r", p),
            Role::Subscriber => ctx.user("fan", i),
            Role::Publisher => ctx.user("fanpub", 0),
        }
    }
}

/// Starts set-up; returns how many units (connections) it involves.
pub fn setup(ctx: &Arc<Ctx>) -> u64 {
    let t = &ctx.task;
    if matches!(t.scenario, Scenario::Churn | Scenario::Ramp) {
        return 0;
    }
    let mut roles = Vec::with_capacity(t.count as usize + 1);
    if t.publisher {
        roles.push((t.first + t.count, Role::Publisher));
    }
    roles.extend((t.first..t.first + t.count).map(|i| (i, Role::of(t.scenario, i))));
    let units = roles.len() as u64;
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut pacer = Pacer::new(ctx.task.connect_rate);
        let pending = Arc::new(Semaphore::new(MAX_PENDING));
        for (i, role) in roles {
            pacer.tick().await;
            let permit = pending.clone().acquire_owned().await.expect("never closed");
            let ctx = ctx.clone();
            if role == Role::Publisher && ctx.task.opts.protocol == Protocol::Pusher {
                tokio::spawn(publish::publisher(ctx, i, permit));
            } else {
                tokio::spawn(async move { connection(ctx, i, role, permit).await });
            }
        }
    });
    units
}

/// Starts the generator of churn and ramp at `go`.
pub fn start(ctx: &Arc<Ctx>, end_at: Instant) -> Option<JoinHandle<()>> {
    match ctx.task.scenario {
        Scenario::Churn => Some(tokio::spawn(churn::churn(ctx.clone(), end_at))),
        Scenario::Ramp => Some(tokio::spawn(churn::ramp(ctx.clone(), end_at))),
        _ => None,
    }
}

/// Opens connection `i`: v1, identified as `user` (none: raw); pusher, once
/// `pusher:connection_established` has come.
pub(crate) async fn open(ctx: &Ctx, i: u64, user: Option<&str>) -> Result<Ws, Failure> {
    match ctx.task.opts.protocol {
        Protocol::V1 => net::connect(ctx.target(i), ctx.source(i), user).await,
        Protocol::Pusher => pusher::connect(ctx.target(i), ctx.source(i)).await,
    }
}

/// Subscribes to `channel` and waits for the server's confirmation, in the run's protocol.
pub(crate) async fn subscribe(ctx: &Ctx, ws: &mut Ws, channel: &str) -> Result<(), Failure> {
    match ctx.task.opts.protocol {
        Protocol::V1 => stream::subscribe(ws, channel).await,
        Protocol::Pusher => pusher::subscribe(ws, channel).await,
    }
}

/// Opens connection `i` as idle, churn and ramp do: [`open`], then subscribed to its channel
/// ([`crate::cli::Options::channel_of`]) if it has one, all within the set-up timeout.
pub(crate) async fn open_held(ctx: &Ctx, i: u64, user: Option<&str>) -> Result<Ws, Failure> {
    let set_up = async {
        let mut ws = open(ctx, i, user).await?;
        if let Some(channel) = ctx.task.opts.channel_of(i) {
            subscribe(ctx, &mut ws, &channel).await?;
        }
        Ok(ws)
    };
    tokio::time::timeout(net::SETUP_TIMEOUT * 2, set_up)
        .await
        .unwrap_or_else(|_| Err(Failure::new("timeout")))
}

/// fanout: how many channels the publisher publishes to (`--channels`, v1; else one).
fn fanout_channels(ctx: &Ctx) -> u64 {
    match ctx.task.opts.protocol {
        Protocol::V1 => ctx.task.opts.channels.unwrap_or(1).max(1),
        Protocol::Pusher => 1,
    }
}

/// fanout: the channel of subscriber `i` (and of the publisher's message `i`), and its share of the
/// publisher's messages when there are several channels.
fn fanout_channel(ctx: &Ctx, i: u64) -> (String, Option<stream::Share>) {
    let n = fanout_channels(ctx);
    if n == 1 {
        return (ctx.task.opts.channel.clone(), None);
    }
    let c = i % n;
    let channel = format!("{}-{c}", ctx.task.opts.channel);
    (channel, Some(stream::Share { n, c }))
}

/// One connection's life in idle, echo, dm, crossnode and fanout.
async fn connection(ctx: Arc<Ctx>, i: u64, role: Role, permit: tokio::sync::OwnedSemaphorePermit) {
    let _alive = Alive::new(&ctx);
    ctx.attempted.fetch_add(1, Relaxed);
    let user = (!ctx.task.opts.raw).then(|| role.user(&ctx, i));
    let t0 = now_us();
    let set_up = async {
        if role == Role::Idle {
            return open_held(&ctx, i, user.as_deref()).await;
        }
        let mut ws = open(&ctx, i, user.as_deref()).await?;
        match role {
            Role::Subscriber => {
                let (channel, _) = fanout_channel(&ctx, i);
                subscribe(&ctx, &mut ws, &channel).await?
            }
            Role::Sender(p) if ctx.task.scenario == Scenario::Crossnode => {
                crossnode::probe(&mut ws, &Role::Receiver(p).user(&ctx, i + 1)).await?;
            }
            _ => {}
        }
        Ok::<_, Failure>(ws)
    };
    let set_up = tokio::time::timeout(net::SETUP_TIMEOUT * 2, set_up);
    let mut ws = match set_up.await {
        Ok(Ok(ws)) => ws,
        Ok(Err(f)) => return ctx.setup_failed(f),
        Err(_) => return ctx.setup_failed(Failure::new("timeout")),
    };
    drop(permit);
    if role == Role::Idle {
        ctx.rec
            .latency_only(i as usize, now_us().saturating_sub(t0));
    }
    ctx.ready.fetch_add(1, Relaxed);
    ctx.settled.fetch_add(1, Relaxed);
    let (end_at, early) = match ctx.wait_go(&mut ws).await {
        Ok(go) => go,
        Err(f) => {
            ctx.dropped(&f);
            ctx.finished.fetch_add(1, Relaxed);
            return;
        }
    };
    let key = i as usize;
    let role_run = async {
        match role {
            Role::Idle => ctx.hold(&mut ws, Some(end_at)).await,
            Role::Echo => echo::run(&ctx, &mut ws, key, user.as_deref(), end_at).await,
            Role::Sender(p) => {
                let to = Role::Receiver(p).user(&ctx, i + 1);
                let rate = ctx.task.opts.rate(ctx.task.scenario);
                stream::send_numbered(&ctx, &mut ws, key, p, end_at, rate, 1, |_, d| {
                    shards::protocol::client::send(None, &to, d)
                })
                .await
            }
            Role::Receiver(p) => {
                let from = Role::Sender(p).user(&ctx, i - 1);
                stream::receive_numbered(&ctx, &mut ws, key, &from, None, end_at, early).await
            }
            Role::Subscriber => {
                let from = match ctx.task.opts.protocol {
                    Protocol::V1 => Role::Publisher.user(&ctx, 0),
                    Protocol::Pusher => ctx.task.opts.channel.clone(),
                };
                let (_, share) = fanout_channel(&ctx, i);
                stream::receive_numbered(&ctx, &mut ws, key, &from, share, end_at, early).await
            }
            Role::Publisher => {
                let rate = ctx.task.opts.rate(Scenario::Fanout);
                let channels = fanout_channels(&ctx);
                stream::send_numbered(&ctx, &mut ws, key, 0, end_at, rate, channels, |seq, d| {
                    let (channel, _) = fanout_channel(&ctx, seq);
                    shards::protocol::client::publish(None, &channel, d)
                })
                .await
            }
        }
    };
    // Every role ends on its own by DRAIN after the measuring phase; this bounds a stalled socket.
    let outcome = tokio::time::timeout_at(end_at + DRAIN + STALL, role_run)
        .await
        .unwrap_or_else(|_| Err(Failure::new("stalled")));
    if let Err(f) = &outcome {
        ctx.dropped(f);
    }
    ctx.finished.fetch_add(1, Relaxed);
    if outcome.is_ok() {
        match ctx.hold(&mut ws, None).await {
            Ok(()) => net::close(ws).await,
            Err(f) => ctx.dropped(&f),
        }
    }
}
