//! The node's control messages at a shard: invocations, shutdown, stop accepting, drain.

use tracing::info;

use super::{Shard, ShardState};
use crate::{messages::NodeMsg, ws::CloseReason};

/// Handles a control message from the node.
pub fn handle(shard: &Shard, st: &mut ShardState, msg: NodeMsg, now: u64) {
    match msg {
        NodeMsg::Invoke(f) => f(shard, st, now),
        NodeMsg::Shutdown => begin_shutdown(shard, st, now),
        NodeMsg::StopAccepting => shard.stop_accepting.fire(),
        NodeMsg::Drain(plan) => crate::drain::run::start(shard, st, plan, now),
        NodeMsg::Probe(_) => {}
    }
}

/// Begins this shard's shutdown: stop accepting, close everyone with 1001, finish by the deadline.
pub fn begin_shutdown(shard: &Shard, st: &mut ShardState, now: u64) {
    if st.lifecycle.shutdown_deadline_ms.is_some() {
        return;
    }
    st.lifecycle.shutdown_deadline_ms =
        Some(now + shard.config.close_grace.as_millis() as u64 + 1000);
    shard.stop_accepting.fire();
    for id in st.conns.ids() {
        st.conns.close(id, CloseReason::GoingAway, now);
    }
    info!(
        shard = shard.id,
        connections = st.conns.len(),
        "shutting down"
    );
}
