//! User routing: a user's connections registered with its owner shard, direct messages to a user,
//! and the resume of a user's stream. Kept apart so one user's path reads end to end in one place.

use std::sync::Arc;

use bytes::Bytes;

use super::{presence::report_presence, reply, to_owner};
use crate::{
    ids::{ConnId, owner_of},
    messages::{Ack, HistoryMsg, Origin, ShardMsg, UserMsg},
    protocol::encode,
    shard::{Shard, ShardState},
};

/// Handles a users message: every step a user's messages take at a shard starts here.
pub fn handle(shard: &Shard, st: &mut ShardState, msg: UserMsg, now: u64) {
    match msg {
        UserMsg::DirAdd {
            user,
            shard: holder,
            admit,
        } => {
            st.users.directory.add(user.clone(), holder);
            if st.users.directory.connections(&user) == 1 {
                crate::webhooks::emit::online(shard, &user, true);
            }
            // Reports the presence change itself (with the confirmation, in cluster mode).
            crate::admit::decide::at_owner(shard, st, &user, holder, admit, now);
        }
        UserMsg::Admitted { conn, verdict } => {
            crate::admit::decide::on_verdict(shard, st, conn, verdict, now)
        }
        UserMsg::DirRemove {
            user,
            shard: holder,
        } => {
            st.users.directory.remove(&user, holder);
            if st.users.directory.connections(&user) == 0 {
                crate::webhooks::emit::online(shard, &user, false);
            }
            report_presence(shard, st, &user);
        }
        UserMsg::Route {
            to,
            frame,
            reply,
            local_only: false,
            ..
        } => route_user_at_owner(shard, st, to, frame, reply, now),
        UserMsg::Route {
            to,
            frame,
            reply,
            local_only: true,
            seq,
        } => {
            // From the bridge: numbered (or not) already; this node's connections only.
            let conns = deliver_to_holders(shard, st, &to, &frame, seq, now);
            let status = if conns > 0 { "delivered" } else { "offline" };
            answer(shard, st, reply, Ack { status, conns }, now);
        }
        UserMsg::Deliver { to, frame, seq } => deliver_user_local(shard, st, &to, &frame, seq, now),
        UserMsg::Resume { user, req } => resume_at_owner(shard, st, user, req, now),
    }
}

/// A connection of `user` is now identified on this shard; the owner answers with its verdict on
/// the connection ([`crate::admit`]).
pub fn user_connected(
    shard: &Shard,
    st: &mut ShardState,
    user: &Arc<str>,
    conn: ConnId,
    admit: crate::admit::Admit,
    now: u64,
) {
    st.users.local.add(user.clone(), conn);
    let owner = owner_of(user, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        UserMsg::DirAdd {
            user: user.clone(),
            shard: shard.id,
            admit,
        },
        now,
    );
}

/// A connection of `user` on this shard is gone: local tables, then the owners.
pub fn conn_gone(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    user: Arc<str>,
    subs: thin_vec::ThinVec<Arc<str>>,
    now: u64,
) {
    for channel in subs {
        super::channels::leave_channel(shard, st, channel, user.clone(), conn, now);
    }
    st.users.local.remove(&user, conn);
    st.history.resuming.forget(conn);
    let owner = owner_of(&user, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        UserMsg::DirRemove {
            user,
            shard: shard.id,
        },
        now,
    );
}

/// Entry of a direct message: to the recipient's owner shard.
pub fn send_to_user(
    shard: &Shard,
    st: &mut ShardState,
    to: Arc<str>,
    frame: Bytes,
    reply: Origin,
    now: u64,
) {
    let owner = owner_of(&to, shard.config.shards);
    to_owner(
        shard,
        st,
        owner,
        UserMsg::Route {
            to,
            frame,
            reply,
            local_only: false,
            seq: 0,
        },
        now,
    );
}

/// Owner step of a direct message. With history on, a single node numbers and keeps the message here
/// and acks `stored` when no connection got it; in cluster mode the bridge numbers it in Redis and
/// delivers it everywhere (with Redis down: delivered here, unnumbered, and acked as degraded).
pub(super) fn route_user_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    to: Arc<str>,
    frame: Bytes,
    reply_to: Origin,
    now: u64,
) {
    let history = shard.config.history.enabled();
    let Some(link) = &shard.config.cluster else {
        let (frame, seq) = if history {
            st.history.users.append(&to, &frame, now)
        } else {
            (frame, 0)
        };
        let conns = deliver_to_holders(shard, st, &to, &frame, seq, now);
        let status = match (conns, seq) {
            (0, 0) => "offline",
            (0, _) => "stored",
            _ => "delivered",
        };
        return answer(shard, st, reply_to, Ack { status, conns }, now);
    };
    let (frame, reply_to) = if history {
        let here = st
            .users
            .directory
            .holders(&to)
            .is_some_and(|h| !h.is_empty());
        match link.sequence_user(to.clone(), frame, here, reply_to) {
            Ok(()) => return,
            Err(back) => back,
        }
    } else {
        (frame, reply_to)
    };
    // No history, or Redis down: this node's connections now, then the link forwards to the other
    // nodes (or, Redis being down, answers with this node's count).
    let conns = deliver_to_holders(shard, st, &to, &frame, 0, now);
    link.forward_user(to, frame, conns, reply_to);
}

/// Hands `frame` to every shard holding `to` (this one in place); returns the connections reached.
pub(super) fn deliver_to_holders(
    shard: &Shard,
    st: &mut ShardState,
    to: &Arc<str>,
    frame: &Bytes,
    seq: u64,
    now: u64,
) -> u64 {
    let holders = st.users.directory.holders(to).cloned().unwrap_or_default();
    let mut conns = 0u64;
    for &(holder, n) in &holders {
        conns += n as u64;
        let holder = holder as usize;
        if holder == shard.id {
            deliver_user_local(shard, st, to, frame, seq, now);
        } else {
            shard.metrics.routed_cross.increment(1);
            st.mesh.send(
                holder,
                UserMsg::Deliver {
                    to: to.clone(),
                    frame: frame.clone(),
                    seq,
                },
            );
        }
    }
    conns
}

/// Owner step of a resume (after the connection's `DirAdd`, so every later message reaches it live):
/// read from this shard's history, or from Redis through the bridge.
pub(super) fn resume_at_owner(
    shard: &Shard,
    st: &mut ShardState,
    user: Arc<str>,
    req: crate::history::ResumeRequest,
    now: u64,
) {
    let (outcome, frames) = match &shard.config.cluster {
        _ if !shard.config.history.enabled() => {
            (crate::history::Outcome::unavailable(), Vec::new())
        }
        Some(link) => match link.resume_user(user, req) {
            Ok(()) => return,
            Err(req) => {
                return send_resumed(
                    shard,
                    st,
                    req,
                    crate::history::Outcome::unavailable(),
                    Vec::new(),
                    now,
                );
            }
        },
        None => st.history.users.resume(&user, &req.from, now),
    };
    send_resumed(shard, st, req, outcome, frames, now);
}

/// Sends a resume's answer to the connection's shard (in place when it is this one).
fn send_resumed(
    shard: &Shard,
    st: &mut ShardState,
    req: crate::history::ResumeRequest,
    outcome: crate::history::Outcome,
    frames: Vec<Bytes>,
    now: u64,
) {
    if req.shard == shard.id {
        crate::history::resume::finish(shard, st, req.conn, outcome, frames, now);
    } else {
        st.mesh.send(
            req.shard,
            HistoryMsg::UserResumed {
                conn: req.conn,
                outcome,
                frames,
            },
        );
    }
}

/// A connection of `user` on this shard resumes its stream: the owner answers once it has
/// registered the connection (the request follows the `DirAdd` on the same path).
pub fn resume_user(
    shard: &Shard,
    st: &mut ShardState,
    user: Arc<str>,
    req: crate::history::ResumeRequest,
    now: u64,
) {
    let owner = owner_of(&user, shard.config.shards);
    to_owner(shard, st, owner, UserMsg::Resume { user, req }, now);
}

/// Answers a routed message's origin from outside the shards (the bridge): an ack frame is pushed
/// into the origin connection's shard inbox, an external sink is called directly.
pub fn answer_from_outside(
    origin: Origin,
    ack: Ack,
    inboxes: &[std::sync::Arc<crate::inbox::Inbox>],
) {
    match origin {
        Origin::Conn(reply_to) => {
            let frame = encode::ack(reply_to.id.as_deref(), ack.status, Some(ack.conns));
            if let Some(inbox) = inboxes.get(reply_to.shard) {
                let _ = inbox.send(ShardMsg::ToConn {
                    conn: reply_to.conn,
                    frame,
                });
            }
        }
        Origin::External(sink) | Origin::Skip { then: sink, .. } => sink(ack),
        Origin::Silent(_) => {}
    }
}

/// Sends a routed message's ack where it belongs: an ack frame to a connection, or the values to an
/// external sink.
pub(super) fn answer(shard: &Shard, st: &mut ShardState, origin: Origin, ack: Ack, now: u64) {
    match origin {
        Origin::Conn(reply_to) => {
            let frame = encode::ack(reply_to.id.as_deref(), ack.status, Some(ack.conns));
            reply(shard, st, &reply_to, frame, now);
        }
        Origin::External(sink) | Origin::Skip { then: sink, .. } => sink(ack),
        Origin::Silent(_) => {}
    }
}

/// Holder step of a direct message: every local connection of `to` (a resuming one holds it until
/// its replay is out).
pub(super) fn deliver_user_local(
    shard: &Shard,
    st: &mut ShardState,
    to: &str,
    frame: &Bytes,
    seq: u64,
    now: u64,
) {
    let ShardState {
        users,
        conns,
        history,
        ..
    } = st;
    for &conn in users.local.get(to) {
        shard.metrics.routed_local.increment(1);
        let bound = shard.config.outbound_queue_bytes;
        let copy = crate::history::resume::deliver(
            &mut history.resuming,
            conns,
            bound,
            conn,
            seq,
            frame.clone(),
            now,
        );
        if copy {
            shard.metrics.resume_duplicates.increment(1);
        }
    }
}
