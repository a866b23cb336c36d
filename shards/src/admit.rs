//! Admission of an identified connection: when its `ready` may go out, or why it is refused.
//!
//! `ready` (or a Pusher sign-in's `signin_success`) waits for the user's owner shard, the one place
//! that counts the user's connections on this node, so that whatever reaches the owner after the
//! client read `ready` (an HTTP send handled on the owner's own shard, a message from a client told
//! out of band) finds the connection counted. On a single node with no per-user cap that is one hop
//! between shards. Besides:
//! - with `limits.max_connections_per_user`, the owner refuses a connection past the cap (error
//!   `too_many_connections`, close 1008);
//! - in cluster mode, the owner hands the connection to the bridge, which answers once the user's
//!   presence, written after this connection's `DirAdd`, is in Redis. So a message sent to the user
//!   from any node after the client read `ready` finds this node in the user's presence and is
//!   delivered live. With Redis down the bridge (or the link, failing fast) answers at once and
//!   `ready` says `"cluster":"degraded"`.
//!
//! While it waits, the connection is registered (live messages flow to it), so its live messages are
//! held in the shard's [`crate::history::resume::Resuming`] table, as a resuming connection's are,
//! and go out right after `ready`, in order. A wait that never ends (a lost answer) is answered
//! degraded after [`crate::history::resume::RESUME_WAIT_MS`].

use crate::{
    ids::ConnId,
    protocol::{ErrorCode, encode},
    shard::{Shard, ShardState},
    ws::CloseReason,
};
use std::sync::Arc;

/// What the owner shard is asked to decide about a new connection (carried in `DirAdd`).
#[derive(Clone, Copy, Debug)]
pub struct Admit {
    /// The identifying connection, on the `DirAdd`'s shard.
    pub conn: ConnId,
    /// Answer with [`Verdict::Ready`] once admitted; false when a resume's replay brings `ready`
    /// instead (only a refusal is sent then).
    pub ready: bool,
}

/// Where the cluster stands for a connection's `ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// The connection's presence is in Redis.
    Confirmed,
    /// Redis could not be reached: this node serves the connection alone for now.
    Degraded,
}

impl ClusterState {
    /// The `cluster` field of `ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Confirmed => "ok",
            ClusterState::Degraded => "degraded",
        }
    }
}

/// The owner's answer about a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Past `limits.max_connections_per_user` on this node.
    TooMany,
    /// Admitted: `ready` goes out (`cluster`: `None` on a single node).
    Ready { cluster: Option<ClusterState> },
}

/// Where the bridge answers a presence confirmation: the connection and its shard.
#[derive(Clone, Copy, Debug)]
pub struct ReadyRequest {
    /// The shard holding the connection.
    pub shard: usize,
    /// The identifying connection.
    pub conn: ConnId,
}

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
