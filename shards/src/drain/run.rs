//! The drain's handlers: a shard starts its share of the plan, and its tick steps it.

use tracing::info;

use super::{Drain, DrainPlan};
use crate::{
    shard::{Shard, ShardState},
    ws::{CloseReason, close::restart_reason, encode::close_frame_with},
};

/// Starts this shard's drain (once; a second plan, or one after a shutdown began, is ignored): stops
/// accepting at once, first batch after one interval.
pub fn start(shard: &Shard, st: &mut ShardState, plan: DrainPlan, now: u64) {
    if st.lifecycle.drain.is_some() || st.lifecycle.shutdown_deadline_ms.is_some() {
        return;
    }
    shard.stop_accepting.fire();
    info!(
        shard = shard.id,
        connections = st.conns.len(),
        batch = plan.batch,
        interval_ms = plan.interval.as_millis() as u64,
        window_ms = plan.window.as_millis() as u64,
        "draining"
    );
    st.lifecycle.drain = Some(Drain::new(plan, now, shard.id as u64));
    shard.drain_started.fire();
}

/// One tick of the drain: a batch when one is due (never more than one per interval, even after a
/// late tick), everything at the window's end; then the shard finishes like a shutdown.
pub fn step(shard: &Shard, st: &mut ShardState, now: u64) {
    let Some(drain) = st.lifecycle.drain.as_mut() else {
        return;
    };
    if st.lifecycle.shutdown_deadline_ms.is_some() {
        return;
    }
    let Some((max, last)) = drain.due(now) else {
        return;
    };
    let ids = st.conns.open_ids(max);
    for &id in &ids {
        let hint = drain.hint();
        let frame = close_frame_with(CloseReason::Restart, &restart_reason(hint));
        st.conns
            .close_with(id, CloseReason::Restart, Some(frame), now);
    }
    info!(shard = shard.id, closed = ids.len(), "drain batch");
    if last || st.conns.open_ids(1).is_empty() {
        // Everything is closing: finish like a shutdown once the close handshakes are done.
        st.lifecycle.shutdown_deadline_ms =
            Some(now + shard.config.close_grace.as_millis() as u64 + 1000);
        info!(shard = shard.id, deadline_reached = last, "drain done");
    }
}
