//! The owner shard's decision about a new connection, and its answer at the connection's shard.

use std::sync::Arc;

use super::{Admit, ClusterState, ReadyRequest, Verdict};
use crate::{
    ids::ConnId,
    protocol::{ErrorCode, encode},
    shard::{Shard, ShardState},
    ws::CloseReason,
};

/// Owner step, right after the connection's `DirAdd` was counted: the cap, then the confirmation.
pub fn at_owner(
    shard: &Shard,
    st: &mut ShardState,
    user: &Arc<str>,
    holder: usize,
    admit: Admit,
    now: u64,
) {
    let cap = shard.config.max_connections_per_user;
    let conns = st.users.directory.connections(user);
    if cap > 0 && conns > u64::from(cap) {
        crate::route::report_presence(shard, st, user);
        return answer(shard, st, holder, admit.conn, Verdict::TooMany, now);
    }
    if !admit.ready {
        crate::route::report_presence(shard, st, user);
        return; // a resume: its replay brings `ready`
    }
    let cluster = match &shard.config.cluster {
        None => None,
        Some(link) => {
            // The presence change and the request to confirm it travel as one report, so the
            // bridge cannot see the one without the other.
            let req = ReadyRequest {
                shard: holder,
                conn: admit.conn,
            };
            match link.confirm_presence(user, conns, req) {
                Ok(()) => return,
                Err(_) => Some(ClusterState::Degraded),
            }
        }
    };
    answer(
        shard,
        st,
        holder,
        admit.conn,
        Verdict::Ready { cluster },
        now,
    );
}

/// Sends `verdict` to the connection's shard (in place when it is this one).
fn answer(
    shard: &Shard,
    st: &mut ShardState,
    holder: usize,
    conn: ConnId,
    verdict: Verdict,
    now: u64,
) {
    if holder == shard.id {
        on_verdict(shard, st, conn, verdict, now);
    } else {
        st.mesh
            .send(holder, crate::messages::UserMsg::Admitted { conn, verdict });
    }
}

/// At the connection's shard: sends `ready` (then the live messages held meanwhile), or refuses.
pub fn on_verdict(shard: &Shard, st: &mut ShardState, conn: ConnId, verdict: Verdict, now: u64) {
    match verdict {
        Verdict::TooMany => {
            let id = st.history.resuming.refuse(conn);
            if st.conns.get(conn).is_none_or(|c| c.is_closing()) {
                return;
            }
            shard.metrics.too_many_connections.increment(1);
            let max = shard.config.max_connections_per_user;
            let message = format!("this user already holds {max} connections on this node");
            let pusher = st.conns.get(conn).is_some_and(|c| c.pusher.is_some());
            let frame = if pusher {
                crate::pusher::frames::error(Some(4009), &message)
            } else {
                encode::error(id.as_deref(), ErrorCode::TooManyConnections, &message)
            };
            st.conns.enqueue(conn, frame, now);
            st.conns.close(conn, CloseReason::Policy, now);
        }
        Verdict::Ready { cluster } => finish_ready(shard, st, conn, cluster, now),
    }
}

/// Sends `ready` to a waiting connection, then what was held for it.
pub fn finish_ready(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    cluster: Option<ClusterState>,
    now: u64,
) {
    let Some(waiting) = st.history.resuming.take_ready(conn) else {
        return; // closed meanwhile, or refused
    };
    // A Pusher sign-in waits the same way; its answer is `pusher:signin_success`.
    let signin = st
        .conns
        .get_mut(conn)
        .and_then(|c| c.pusher.as_mut())
        .and_then(|p| p.signin.take());
    let frame = match signin {
        Some(frame) => *frame,
        None => match ready_frame(shard, st, conn, waiting.id.as_deref(), cluster) {
            Some(frame) => frame,
            None => return,
        },
    };
    if cluster == Some(ClusterState::Degraded) {
        shard.metrics.ready_degraded.increment(1);
    }
    st.conns.enqueue(conn, frame, now);
    for (_, held) in waiting.into_held() {
        st.conns.enqueue(conn, held, now);
    }
}

/// The `ready` frame of an identified connection (`None` when it is gone or not identified).
pub fn ready_frame(
    shard: &Shard,
    st: &ShardState,
    conn: ConnId,
    id: Option<&str>,
    cluster: Option<ClusterState>,
) -> Option<bytes::Bytes> {
    let c = st.conns.get(conn)?;
    let user = c.user.as_deref()?;
    let session = format!("{:016x}", c.session);
    let heartbeat_ms = shard.config.heartbeat_interval.as_millis() as u64;
    let (node, at) = (&*shard.config.node_id, shard.id);
    let cluster = cluster.map(ClusterState::as_str);
    Some(encode::ready(
        id,
        user,
        &session,
        node,
        (at, heartbeat_ms),
        cluster,
    ))
}
