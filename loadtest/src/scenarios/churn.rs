//! The connection generators: churn (connect → identify → close, over and over; pusher: connect →
//! subscribe → close) and ramp (add connections until something fails).
//!
//! Both start at `go` and pace new connections at the worker's share of `--rate`. churn counts each
//! cycle as one message sent (started) and received (completed), its latency the whole cycle. ramp
//! keeps what it opens; its first failure (a refused connect, a 1013 close, a held connection lost)
//! halts it and is reported at once, so the parent can halt the other workers too.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use tokio::{
    task::JoinSet,
    time::{Instant, sleep_until},
};

use crate::{
    net,
    stats::now_us,
    worker::{Alive, Ctx, Pacer},
};

/// How long in-flight attempts may take to settle after the generator stops.
const SETTLE: Duration = Duration::from_secs(15);

/// Waits until the next connection is due; false if that is after `end_at` or the worker halted.
async fn pace(ctx: &Ctx, pacer: &mut Pacer, end_at: Instant) -> bool {
    if pacer.due() == 0 {
        let at = pacer.next_at();
        if at >= end_at {
            return false;
        }
        sleep_until(at).await;
    }
    if Instant::now() >= end_at || ctx.halted.load(Relaxed) {
        return false;
    }
    pacer.take(1);
    true
}

/// churn's generator.
pub async fn churn(ctx: Arc<Ctx>, end_at: Instant) {
    let mut pacer = Pacer::new(ctx.task.rate);
    let mut cycles = JoinSet::new();
    let mut k = 0;
    while k < ctx.task.count && pace(&ctx, &mut pacer, end_at).await {
        cycles.spawn(cycle(ctx.clone(), ctx.task.first + k));
        k += 1;
        while cycles.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(SETTLE, async {
        while cycles.join_next().await.is_some() {}
    })
    .await;
}

/// One churn cycle: connect, identify, close cleanly.
async fn cycle(ctx: Arc<Ctx>, i: u64) {
    let key = i as usize;
    ctx.attempted.fetch_add(1, Relaxed);
    ctx.sent.fetch_add(1, Relaxed);
    ctx.rec.sent(key, 1);
    let t0 = now_us();
    let user = (!ctx.task.opts.raw).then(|| ctx.user("churn", i));
    let outcome = match super::open_held(&ctx, i, user.as_deref()).await {
        Ok(ws) => net::close_checked(ws).await,
        Err(f) => Err(f),
    };
    match outcome {
        Ok(()) => {
            ctx.ready.fetch_add(1, Relaxed);
            ctx.received.fetch_add(1, Relaxed);
            ctx.rec.received(key, now_us().saturating_sub(t0));
        }
        Err(f) => {
            ctx.failed.fetch_add(1, Relaxed);
            ctx.errors.add(f.0);
        }
    }
}

/// ramp's generator.
pub async fn ramp(ctx: Arc<Ctx>, end_at: Instant) {
    let mut pacer = Pacer::new(ctx.task.rate);
    let mut k = 0;
    while k < ctx.task.count && pace(&ctx, &mut pacer, end_at).await {
        let c = ctx.clone();
        let i = ctx.task.first + k;
        tokio::spawn(async move { held(c, i).await });
        k += 1;
    }
    let give_up = Instant::now() + SETTLE;
    while ctx.settled.load(Relaxed) < k && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Without a failure (or a halt), what is held once the last attempts have settled.
    ctx.halt();
}

/// One ramp connection, held until `stop`.
async fn held(ctx: Arc<Ctx>, i: u64) {
    let _alive = Alive::new(&ctx);
    ctx.attempted.fetch_add(1, Relaxed);
    let t0 = now_us();
    let user = (!ctx.task.opts.raw).then(|| ctx.user("ramp", i));
    let mut ws = match super::open_held(&ctx, i, user.as_deref()).await {
        Ok(ws) => ws,
        Err(f) => {
            ctx.failed.fetch_add(1, Relaxed);
            ctx.settled.fetch_add(1, Relaxed);
            return ctx.ramp_failure(f.0);
        }
    };
    ctx.held.fetch_add(1, Relaxed);
    ctx.ready.fetch_add(1, Relaxed);
    ctx.settled.fetch_add(1, Relaxed);
    ctx.rec.received(i as usize, now_us().saturating_sub(t0));
    match ctx.hold(&mut ws, None).await {
        Ok(()) => net::close(ws).await,
        Err(f) => {
            ctx.held.fetch_sub(1, Relaxed);
            ctx.ramp_failure(format!("drop_{}", f.0));
        }
    }
}
