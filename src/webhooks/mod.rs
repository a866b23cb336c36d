//! The webhook dispatcher: takes the events the shards and the bridge decide, holds the "gone" ones
//! for a grace, batches per target, signs and posts them, on a thread of its own.
//!
//! Nothing upstream ever waits for it: [`Dispatcher::emit`] pushes into a bounded lock-free queue
//! (full: the event is dropped and counted) and wakes the thread. The grace: `channel_vacated`,
//! `member_removed` and `user_offline` wait `grace`; the matching `channel_occupied`,
//! `member_added` or `user_online` arriving within it cancels both, so a page reload sends nothing.
//! Every decision reaching the dispatcher is already the cluster's (see `shards::webhooks`), and all
//! the events of one channel or user come from one producer, in order.

mod body;
mod post;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use metrics::counter;
use serde_json::Value;
use shards::{
    pusher::signature::webhook_signature,
    webhooks::{Hook, WebhookSink},
};
use tokio::sync::Notify;

use crate::config::{Config, webhooks::parse_url};

/// Who a target is and how its bodies are signed.
#[derive(Clone, Debug)]
enum Signer {
    /// A Pusher app's target: Pusher's format, `X-Pusher-Key` and `X-Pusher-Signature`.
    Pusher {
        app_id: String,
        key: String,
        secret: String,
    },
    /// A protocol v1 target: `X-Gateway-Signature`.
    Gateway { secret: String },
}

/// One place webhooks go.
#[derive(Clone, Debug)]
struct Target {
    host: String,
    port: u16,
    path: String,
    /// The events wanted; `None`: all.
    events: Option<Vec<String>>,
    signer: Signer,
}

impl Target {
    /// The event `hook` is for this target, as its name and JSON; `None`: not this target's.
    fn event(&self, hook: &Hook) -> Option<(&'static str, Value)> {
        match &self.signer {
            Signer::Pusher { app_id, .. } => {
                let app = match hook {
                    Hook::ChannelOccupied { channel }
                    | Hook::ChannelVacated { channel }
                    | Hook::MemberAdded { channel, .. }
                    | Hook::MemberRemoved { channel, .. }
                    | Hook::ClientEvent { channel, .. } => {
                        shards::pusher::names::external(channel)?.0
                    }
                    Hook::UserOnline { .. } | Hook::UserOffline { .. } => return None,
                };
                if app != app_id {
                    return None;
                }
                body::pusher_event(hook)
            }
            Signer::Gateway { .. } => body::gateway_event(hook),
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|e| e.iter().any(|x| x == name))
    }

    /// The POST of `events`.
    fn request(&self, events: &[Value]) -> post::Request {
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let body = body::body(time_ms, events);
        let headers = match &self.signer {
            Signer::Pusher { key, secret, .. } => vec![
                ("x-pusher-key", key.clone()),
                ("x-pusher-signature", webhook_signature(secret, &body)),
            ],
            Signer::Gateway { secret } => {
                vec![("x-gateway-signature", webhook_signature(secret, &body))]
            }
        };
        post::Request {
            host: self.host.clone(),
            port: self.port,
            path: self.path.clone(),
            headers,
            body: Bytes::from(body),
        }
    }
}

/// Grace and batching bounds.
#[derive(Clone, Copy, Debug)]
struct Settings {
    grace: Duration,
    batch: Duration,
    retry_for: Duration,
}

/// The dispatcher's shared side: what [`WebhookSink::emit`] pushes into.
pub struct Dispatcher {
    /// Events, each with whether the dispatcher applies the grace to it.
    queue: ArrayQueue<(Hook, bool)>,
    notify: Notify,
    client_events: AtomicBool,
}

impl WebhookSink for Dispatcher {
    fn emit(&self, hook: Hook) {
        self.push(hook, true);
    }

    fn emit_decided(&self, hook: Hook) {
        self.push(hook, false);
    }

    fn wants_client_events(&self) -> bool {
        self.client_events.load(Ordering::Relaxed)
    }
}

impl Dispatcher {
    fn push(&self, hook: Hook, graced: bool) {
        if self.queue.push((hook, graced)).is_err() {
            counter!("gateway_webhooks_dropped_total").increment(1);
            return;
        }
        self.notify.notify_one();
    }
}

/// Starts the dispatcher for the webhooks `config` names; `None` when there is none.
pub fn spawn(config: &Config) -> std::io::Result<Option<Arc<Dispatcher>>> {
    let targets = targets(config);
    if targets.is_empty() {
        return Ok(None);
    }
    let d = &config.webhook_delivery;
    let settings = Settings {
        grace: Duration::from_millis(d.grace_ms),
        batch: Duration::from_millis(d.batch_ms.max(1)),
        retry_for: Duration::from_millis(d.retry_for_ms),
    };
    let client_events = targets
        .iter()
        .any(|t| matches!(t.signer, Signer::Pusher { .. }) && t.wants("client_event"));
    let dispatcher = Arc::new(Dispatcher {
        queue: ArrayQueue::new(d.queue_capacity.max(1)),
        notify: Notify::new(),
        client_events: AtomicBool::new(client_events),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let shared = dispatcher.clone();
    std::thread::Builder::new()
        .name("webhooks".into())
        .spawn(move || runtime.block_on(run(shared, targets, settings)))?;
    Ok(Some(dispatcher))
}

/// Every target of `config`, in order: the v1 ones, then each app's.
fn targets(config: &Config) -> Vec<Target> {
    let mut out = Vec::new();
    let mut add = |url: &str, events: &Option<Vec<String>>, signer: Signer| {
        if let Some((host, port, path)) = parse_url(url) {
            out.push(Target {
                host,
                port,
                path,
                events: events.clone(),
                signer,
            });
        }
    };
    for hook in &config.webhooks {
        let signer = Signer::Gateway {
            secret: hook.secret.clone(),
        };
        add(&hook.url, &hook.events, signer);
    }
    for app in &config.pusher.apps {
        for hook in &app.webhooks {
            let signer = Signer::Pusher {
                app_id: app.id.clone(),
                key: app.key.clone(),
                secret: app.secret.clone(),
            };
            add(&hook.url, &hook.events, signer);
        }
    }
    out
}

/// The key a "gone" event and its "back" event share, and whether `name` is the "gone" one.
fn grace_key(hook: &Hook) -> Option<(String, bool)> {
    Some(match hook {
        Hook::ChannelOccupied { channel } => (format!("c\n{channel}"), false),
        Hook::ChannelVacated { channel } => (format!("c\n{channel}"), true),
        Hook::MemberAdded { channel, member } => (format!("m\n{channel}\n{member}"), false),
        Hook::MemberRemoved { channel, member } => (format!("m\n{channel}\n{member}"), true),
        Hook::UserOnline { user } => (format!("u\n{user}"), false),
        Hook::UserOffline { user } => (format!("u\n{user}"), true),
        Hook::ClientEvent { .. } => return None,
    })
}

/// The dispatcher's loop.
async fn run(shared: Arc<Dispatcher>, targets: Vec<Target>, settings: Settings) {
    // "Gone" events held for the grace: (target, key) → when it ends, and the event.
    let mut held: HashMap<(usize, String), (Instant, Value)> = HashMap::new();
    let mut batches: Vec<Vec<Value>> = vec![Vec::new(); targets.len()];
    let mut flush_at: Option<Instant> = None;
    loop {
        let next_grace = held.values().map(|(at, _)| *at).min();
        let wake = [next_grace, flush_at].into_iter().flatten().min();
        match wake {
            Some(at) => {
                tokio::select! {
                    _ = shared.notify.notified() => {}
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => shared.notify.notified().await,
        }
        let now = Instant::now();
        while let Some((hook, graced)) = shared.queue.pop() {
            let key = grace_key(&hook).filter(|_| graced);
            for (i, target) in targets.iter().enumerate() {
                let Some((name, event)) = target.event(&hook) else {
                    continue;
                };
                match &key {
                    Some((k, true)) if target.wants(name) => {
                        held.insert((i, k.clone()), (now + settings.grace, event));
                    }
                    Some((_, true)) => {}
                    Some((k, false)) if held.remove(&(i, k.clone())).is_some() => {
                        // Back within the grace: neither event is sent.
                    }
                    _ if target.wants(name) => batches[i].push(event),
                    _ => {}
                }
            }
        }
        let expired: Vec<(usize, String)> = held
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some((_, event)) = held.remove(&k) {
                batches[k.0].push(event);
            }
        }
        let pending = batches.iter().any(|b| !b.is_empty());
        match flush_at {
            None if pending => flush_at = Some(now + settings.batch),
            Some(at) if at <= now => {
                flush_at = None;
                for (i, batch) in batches.iter_mut().enumerate() {
                    if batch.is_empty() {
                        continue;
                    }
                    let events = std::mem::take(batch);
                    // Pusher's receivers take at most 100 events per POST: split larger batches.
                    for chunk in events.chunks(100) {
                        let req = targets[i].request(chunk);
                        tokio::spawn(post::deliver(req, settings.retry_for));
                    }
                }
            }
            _ => {}
        }
    }
}
