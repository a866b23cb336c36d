//! Channel occupancy and v1 user presence for webhooks, decided across the cluster (see
//! [`crate::cluster::occupancy`]): this node's first-and-last transitions go to Redis in order, a
//! first anywhere is sent at once, a last anywhere is held for the grace and sent only if nobody came
//! back anywhere meanwhile, and a dead node's holdings are swept by the survivor that finds them.
//! Tracked only when webhooks are configured.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use shards::webhooks::{Hook, WebhookSink};

use crate::cluster::occupancy::{Decision, Kind, Occupancy};

/// Transitions kept while Redis cannot be written.
const MAX_QUEUED: usize = 1 << 16;

/// A going held for the grace.
struct Going {
    at: Instant,
    kind: Kind,
    name: Arc<str>,
    token: String,
}

/// What the bridge tracks between batches.
#[derive(Default)]
pub struct Tracker {
    /// Tracking is on (webhooks are configured).
    pub enabled: bool,
    /// How long a going is held.
    pub grace: Duration,
    /// This node's transitions not yet written, in order.
    changes: VecDeque<(Kind, Arc<str>, bool)>,
    /// Goings waiting for their grace to end.
    going: Vec<Going>,
    /// Makes tokens unique within this process (with the node id).
    next_token: u64,
}

impl Tracker {
    /// Queues a transition of this node (`came`: first holder here; else last gone).
    pub fn record(&mut self, kind: Kind, name: &Arc<str>, came: bool) {
        if !self.enabled {
            return;
        }
        if self.changes.len() >= MAX_QUEUED {
            // Redis has been down for long: the oldest transitions go (their webhooks are lost).
            self.changes.pop_front();
            metrics::counter!("gateway_webhooks_dropped_total").increment(1);
        }
        self.changes.push_back((kind, name.clone(), came));
    }

    /// When the next held going's grace ends.
    pub fn due(&self) -> Option<Instant> {
        self.going.iter().map(|g| g.at).min()
    }

    /// Writes the queued transitions; sends what is decided now, holds the goings.
    pub async fn apply(
        &mut self,
        store: &mut Occupancy,
        node_id: &str,
        hooks: Option<&dyn WebhookSink>,
    ) -> redis::RedisResult<()> {
        while let Some((kind, name, came)) = self.changes.front().cloned() {
            self.next_token += 1;
            let token = format!("{node_id}:{}", self.next_token);
            let marker_ms = (self.grace.as_millis() as u64) * 3 + 1000;
            let decision =
                super::timed(store.change(kind, &name, came, (&token, marker_ms))).await?;
            self.changes.pop_front();
            match decision {
                Decision::Came => emit(hooks, kind, name, true),
                Decision::Going => self.going.push(Going {
                    at: Instant::now() + self.grace,
                    kind,
                    name,
                    token,
                }),
                Decision::Nothing => {}
            }
        }
        Ok(())
    }

    /// Confirms the goings whose grace ended (`all`: every one, at shutdown); sends those that still
    /// hold.
    pub async fn confirm_due(
        &mut self,
        store: &mut Occupancy,
        hooks: Option<&dyn WebhookSink>,
        all: bool,
    ) -> redis::RedisResult<()> {
        let now = if all {
            Instant::now() + self.grace
        } else {
            Instant::now()
        };
        while let Some(i) = self.going.iter().position(|g| g.at <= now) {
            let g = &self.going[i];
            let holds = super::timed(store.confirm(g.kind, &g.name, &g.token)).await?;
            let g = self.going.swap_remove(i);
            if holds {
                emit(hooks, g.kind, g.name, false);
            }
        }
        Ok(())
    }
}

/// The occupancy name of a presence member.
pub fn member_name(channel: &str, member: &str) -> Arc<str> {
    Arc::from(format!("{channel}\n{member}"))
}

/// Sweeps dead `node`'s channels and users: sends vacated/offline for those left with no holder.
pub async fn sweep(
    store: &mut Occupancy,
    node: &str,
    hooks: Option<&dyn WebhookSink>,
) -> redis::RedisResult<()> {
    for kind in Occupancy::kinds() {
        for name in super::timed(store.sweep(kind, node)).await? {
            emit(hooks, kind, Arc::from(name), false);
        }
    }
    Ok(())
}

/// Sends a decided event (its grace, if any, already applied here).
fn emit(hooks: Option<&dyn WebhookSink>, kind: Kind, name: Arc<str>, came: bool) {
    let Some(hooks) = hooks else {
        return;
    };
    hooks.emit_decided(match (kind, came) {
        (Kind::Channel, true) => Hook::ChannelOccupied { channel: name },
        (Kind::Channel, false) => Hook::ChannelVacated { channel: name },
        (Kind::User, true) => Hook::UserOnline { user: name },
        (Kind::User, false) => Hook::UserOffline { user: name },
        (Kind::Member, came) => {
            let Some((channel, member)) = name.split_once('\n') else {
                return;
            };
            let (channel, member) = (Arc::from(channel), Arc::from(member));
            if came {
                Hook::MemberAdded { channel, member }
            } else {
                Hook::MemberRemoved { channel, member }
            }
        }
    });
}
