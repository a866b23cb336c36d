//! The end of a connection: its record leaves every table it is in, and it is counted.

use crate::{
    conn::Phase,
    ids::ConnId,
    shard::{Shard, ShardState},
    ws::CloseReason,
};

/// The reason recorded when a connection ends without completing its close.
pub fn abort_reason(phase: &Phase) -> CloseReason {
    match phase {
        Phase::Closing { reason, .. } => *reason,
        _ => CloseReason::PeerGone,
    }
}

/// Removes a finished connection from every table and counts it; returns its socket, for the ring to
/// cancel and close (`None` when `id` was already gone).
pub fn finish(
    shard: &Shard,
    st: &mut ShardState,
    id: ConnId,
    reason: CloseReason,
) -> Option<std::os::fd::RawFd> {
    let conn = st.conns.remove(id)?;
    let fd = conn.fd;
    shard.metrics.closed(reason);
    shard.metrics.connections_open.decrement(1.0);
    if conn.over_capacity {
        st.intake.rejecting -= 1;
    } else {
        shard.status.release();
    }
    if !st.intake.ip_keys.is_empty()
        && let Some(key) = st.intake.ip_keys.remove(&id)
    {
        shard.status.per_ip().release(key);
    }
    let now = shard.now_ms();
    if let Some(user) = conn.user {
        crate::route::conn_gone(shard, st, id, user, conn.subs, now);
    } else if let Some(pusher) = conn.pusher {
        crate::pusher::conn::gone(shard, st, id, *pusher, conn.subs, now);
    }
    Some(fd)
}
