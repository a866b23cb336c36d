//! pusher fanout: the publisher, which triggers numbered events through the signed HTTP API, and the
//! subscribers' reading of them.
//!
//! The publisher holds no WebSocket. During set-up it waits until this worker's subscribers are
//! subscribed, then triggers probe events ([`pusher::PROBE_EVENT`]) on the channel until one of them
//! arrives (across nodes: until the cluster routes the channel from the API's node to the subscribers'
//! node); only then is it ready, so `go` finds the whole path open. In the measuring phase it triggers
//! `[0, seq, send time µs]` at `--rate` (0: flat out), one request at a time: the next trigger is sent
//! once the previous one is answered, so the server sees them in order and any reordering is its own.
//! Then it triggers `{"end": total}`. A trigger that fails counts as an error of its kind
//! (`http_<status>`, `http_timeout`, ...); its number is still used, so a subscriber counts it lost.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use tokio::{
    sync::OwnedSemaphorePermit,
    time::{Instant, sleep, sleep_until},
};

use super::{STALL, stream::Numbered};
use crate::{
    cli::parse_api_url,
    net::{Data, Failure},
    pusher::{self, Api},
    stats::now_us,
    worker::{Alive, Ctx, DRAIN, Pacer, Phase},
};

/// How long the probes may take to reach a subscriber.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between probes.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// The HTTP API the run triggers through: `--api-url`, else the first `--url`'s host and port.
fn api(ctx: &Ctx) -> Api {
    let o = &ctx.task.opts;
    let addr = o
        .api_url
        .as_deref()
        .and_then(|u| parse_api_url(u).ok())
        .unwrap_or(ctx.task.targets[0].addr);
    Api {
        addr,
        app_id: o.pusher_app_id.clone(),
        key: o.pusher_key.clone(),
        secret: o.pusher_secret.clone(),
    }
}

/// Reads a delivered event of the publisher on `channel`; `None` for anything else.
pub(super) fn numbered(ctx: &Ctx, data: &Data, channel: &str) -> Option<Numbered> {
    let Some(frame) = pusher::parse(data.bytes()) else {
        ctx.errors.add("bad_frame");
        return None;
    };
    if let Some(f) = frame.refusal() {
        ctx.errors.add(f.0);
        return None;
    }
    if frame.event != pusher::EVENT || frame.channel.as_deref() != Some(channel) {
        return None;
    }
    let text = frame.data_str().unwrap_or_default();
    if let Ok((_sender, seq, t_us)) = serde_json::from_str::<(u64, u64, u64)>(text) {
        return Some(Numbered::Msg { seq, t_us });
    }
    #[derive(serde::Deserialize)]
    struct End {
        end: u64,
    }
    if let Ok(End { end }) = serde_json::from_str::<End>(text) {
        return Some(Numbered::End { total: end });
    }
    ctx.errors.add("bad_data");
    None
}

/// Waits until this worker's subscribers have settled, then probes; false (and the failure recorded)
/// if the probes never arrive or the worker stops.
async fn set_up(ctx: &Ctx, api: &Api, i: u64) -> Result<(), Failure> {
    while ctx.settled.load(Relaxed) < ctx.task.count {
        if ctx.stopping() {
            return Err(Failure::new("stopped"));
        }
        sleep(Duration::from_millis(10)).await;
    }
    if ctx.ready.load(Relaxed) == 0 {
        // No subscriber here to see a probe: nothing to wait for.
        return Ok(());
    }
    let channel = &ctx.task.opts.channel;
    let probing = async {
        for k in 0u64.. {
            let data = format!("{{\"probe\":{k}}}");
            api.trigger(ctx.source(i), pusher::PROBE_EVENT, channel, &data)
                .await?;
            let until = Instant::now() + PROBE_EVERY;
            while Instant::now() < until {
                if ctx.probes_seen.load(Relaxed) > 0 {
                    return Ok(());
                }
                sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(())
    };
    tokio::time::timeout(PROBE_TIMEOUT, probing)
        .await
        .unwrap_or_else(|_| Err(Failure::new("probe_timeout")))
}

/// The publisher's life (unit `i`, which is its source address's index and timeline key).
pub(super) async fn publisher(ctx: Arc<Ctx>, i: u64, permit: OwnedSemaphorePermit) {
    let _alive = Alive::new(&ctx);
    ctx.attempted.fetch_add(1, Relaxed);
    drop(permit);
    let api = api(&ctx);
    if let Err(f) = set_up(&ctx, &api, i).await {
        return ctx.setup_failed(f);
    }
    ctx.ready.fetch_add(1, Relaxed);
    ctx.settled.fetch_add(1, Relaxed);
    let mut phase = ctx.phase.clone();
    let end_at = loop {
        match *phase.borrow_and_update() {
            Phase::Setup => {}
            Phase::Go { end_at } => break Some(end_at),
            Phase::Stop => break None,
        }
        if phase.changed().await.is_err() {
            break None;
        }
    };
    if let Some(end_at) = end_at {
        let run = publish(&ctx, &api, i, end_at);
        let outcome = tokio::time::timeout_at(end_at + DRAIN + STALL, run)
            .await
            .unwrap_or_else(|_| Err(Failure::new("stalled")));
        if let Err(f) = outcome {
            ctx.dropped(&f);
        }
    }
    ctx.finished.fetch_add(1, Relaxed);
}

/// Triggers numbered events until `end_at` at `--rate`, one at a time, then the end marker.
async fn publish(ctx: &Ctx, api: &Api, i: u64, end_at: Instant) -> Result<(), Failure> {
    let key = i as usize;
    let source = ctx.source(i);
    let channel = &ctx.task.opts.channel;
    let mut pacer = Pacer::new(ctx.task.rate);
    let mut seq = 0u64;
    while Instant::now() < end_at {
        if pacer.due() == 0 {
            sleep_until(pacer.next_at().min(end_at)).await;
            continue;
        }
        pacer.take(1);
        let data = format!("[0,{seq},{}]", now_us());
        seq += 1;
        ctx.sent.fetch_add(1, Relaxed);
        ctx.rec.sent(key, 1);
        if let Err(f) = api.trigger(source, pusher::EVENT, channel, &data).await {
            ctx.errors.add(f.0);
        }
    }
    let end = format!("{{\"end\":{seq}}}");
    if let Err(f) = api.trigger(source, pusher::EVENT, channel, &end).await {
        ctx.errors.add(format!("end_{}", f.0));
    }
    Ok(())
}
