//! A client's request, from parsed frame to effect: the protocol's rules for one connection.
//!
//! Called from the connection's task with the shard state borrowed. Every outcome is a frame queued to
//! the connection (reply, ack or error) or a close; nothing a client sends can panic the shard.

use std::sync::Arc;

use simd_json::BorrowedValue;

use crate::{
    access::rules::ChannelOp,
    authorize,
    history::{Position, ResumeRequest},
    ids::ConnId,
    messages::{Origin, ReplyTo},
    protocol::{ErrorCode, Request, RequestError, encode, parse::ResumeFrom, parse_value},
    route,
    shard::{Shard, ShardState},
    ws::CloseReason,
};

/// Handles one complete data message (text or binary) from `conn`.
pub fn on_message(shard: &Shard, st: &mut ShardState, conn: ConnId, payload: &mut [u8], now: u64) {
    let Some(c) = st.conns.get_mut(conn) else {
        return;
    };
    if !c.bucket.take(now) {
        shard.metrics.rate_limited.increment(1);
        let frame = encode::error(
            None,
            ErrorCode::RateLimited,
            "message rate over the limit; frame dropped",
        );
        st.conns.enqueue(conn, frame, now);
        return;
    }
    let value = match parse_value(payload) {
        Ok(v) => v,
        Err(e) => return refuse(st, conn, &e, now),
    };
    let (id, request) = match Request::from_value(&value) {
        Ok(r) => r,
        Err(e) => return refuse(st, conn, &e, now),
    };
    let user = st.conns.get(conn).and_then(|c| c.user.clone());
    let Some(user) = user else {
        if request.allowed_anonymous() {
            return anonymous(shard, st, conn, id, request, now);
        }
        let e = RequestError::new(id, ErrorCode::NotIdentified, "identify first");
        return refuse(st, conn, &e, now);
    };
    let reply_to = || ReplyTo {
        shard: shard.id,
        conn,
        id: id.map(Arc::from),
    };
    match request {
        Request::Identify { .. } => refuse(
            st,
            conn,
            &RequestError::new(id, ErrorCode::BadRequest, "already identified"),
            now,
        ),
        Request::Ping => {
            st.conns.enqueue(conn, encode::pong(id), now);
        }
        Request::Send { to, data } => {
            if !authorize::send(shard, st, conn, id, to, now) {
                return;
            }
            let frame = encode::direct_message(&user, data);
            route::send_to_user(
                shard,
                st,
                Arc::from(to),
                frame,
                Origin::Conn(reply_to()),
                now,
            );
        }
        Request::Publish { channel, data } => {
            let op = (id, ChannelOp::Publish);
            if authorize::channel(shard, st, conn, &user, op, channel, None, now) {
                publish(shard, st, &user, channel, data, reply_to(), now)
            }
        }
        Request::Subscribe {
            channel,
            since,
            token,
        } => {
            let allowed = |st: &mut ShardState, op| {
                authorize::channel(shard, st, conn, &user, (id, op), channel, token, now)
            };
            if allowed(st, ChannelOp::Subscribe)
                && (since.is_none() || allowed(st, ChannelOp::History))
            {
                subscribe(shard, st, conn, user.clone(), (id, since), channel, now)
            }
        }
        Request::Unsubscribe { channel } => {
            let subscribed = st.conns.get_mut(conn).and_then(|c| {
                let pos = c.subs.iter().position(|s| &**s == channel)?;
                Some(c.subs.swap_remove(pos))
            });
            if let Some(channel) = subscribed {
                route::unsubscribed(shard, st, channel, user, conn, now);
            }
            st.conns
                .enqueue(conn, encode::ack(id, "unsubscribed", None), now);
        }
        Request::PresenceUsers { users } => {
            let users = users.into_iter().map(Arc::from).collect();
            route::presence_users(shard, st, users, reply_to(), now);
        }
        Request::PresenceChannel { channel, token } => {
            let op = (id, ChannelOp::Presence);
            if authorize::channel(shard, st, conn, &user, op, channel, token, now) {
                route::presence_channel(shard, st, Arc::from(channel), reply_to(), now)
            }
        }
        Request::Refresh { token } => authorize::refresh(shard, st, conn, &user, (id, token), now),
    }
}

/// The one request allowed before identify: identify itself.
fn anonymous(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    id: Option<&str>,
    request: Request<'_>,
    now: u64,
) {
    let Request::Identify {
        user,
        token,
        resume,
    } = request
    else {
        return;
    };
    match shard.config.auth.identify(user, token) {
        Ok(identity) => {
            let user: Arc<str> = Arc::from(identity.user.as_str());
            let session = shard.new_session(st);
            if let Some(c) = st.conns.get_mut(conn) {
                c.user = Some(user.clone());
                c.session = session;
            }
            authorize::identified(st, conn, identity, now);
            // Before the connection is registered: registering can apply messages already in this
            // shard's inbox (the owner's catch-up), and live messages for a connection that waits for
            // its replay or its admission must be held from the first one on.
            if resume.is_some() {
                st.history.resuming.start(conn, id.map(Arc::from), now);
            } else {
                st.history
                    .resuming
                    .start_ready(conn, id.map(Arc::from), now);
            }
            // `ready` always waits for the owner's verdict: once the client has it, whatever reaches
            // the owner next (an HTTP send handled on the owner's own shard, a message from a client
            // told out of band) finds the connection counted.
            let admit = crate::admit::Admit {
                conn,
                ready: resume.is_none(),
            };
            route::user_connected(shard, st, &user, conn, admit, now);
            if let Some(from) = resume {
                // `ready` goes out with the replay, once the owner has answered.
                tracing::debug!(user = %user, previous_session = ?from.session, seq = from.seq, "resume");
                let req = ResumeRequest {
                    shard: shard.id,
                    conn,
                    from: Position {
                        epoch: from.epoch.map(Arc::from),
                        seq: from.seq,
                    },
                };
                route::resume_user(shard, st, user, req, now);
            }
        }
        Err(e) => {
            let message = e.to_string();
            if e.client_code() == ErrorCode::BadRequest.as_str() {
                // A malformed identify: the client may correct it and retry.
                st.conns.enqueue(
                    conn,
                    encode::error(id, ErrorCode::BadRequest, &message),
                    now,
                );
            } else {
                st.conns.enqueue(
                    conn,
                    encode::error(id, ErrorCode::Unauthorized, &message),
                    now,
                );
                st.conns.close(conn, CloseReason::Policy, now);
            }
        }
    }
}

/// Subscribes `conn` to `channel` (idempotent), within the per-connection cap; with `since`, the
/// channel's publications after that position are replayed first.
fn subscribe(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    user: Arc<str>,
    (id, since): (Option<&str>, Option<ResumeFrom<'_>>),
    channel: &str,
    now: u64,
) {
    let max = shard.config.max_subscriptions;
    let Some(c) = st.conns.get_mut(conn) else {
        return;
    };
    if c.subs.iter().any(|s| &**s == channel) {
        if since.is_some() {
            // A replay into a live subscription would interleave with it: leave and subscribe again.
            let e = RequestError::new(
                id,
                ErrorCode::BadRequest,
                "already subscribed: unsubscribe before subscribing with \"since\"",
            );
            return refuse(st, conn, &e, now);
        }
        st.conns
            .enqueue(conn, encode::ack(id, "subscribed", None), now);
        return;
    }
    if c.subs.len() >= max {
        let e = RequestError::new(id, ErrorCode::BadRequest, "subscription limit reached");
        return refuse(st, conn, &e, now);
    }
    let channel: Arc<str> = Arc::from(channel);
    c.subs.push(channel.clone());
    let ack = ReplyTo {
        shard: shard.id,
        conn,
        id: id.map(Arc::from),
    };
    let since = since.map(|from| Position {
        epoch: from.epoch.map(Arc::from),
        seq: from.seq,
    });
    route::subscribed(shard, st, channel, (user, None), ack, since, now);
}

/// Publishes `data` on `channel`, encoded once here.
fn publish(
    shard: &Shard,
    st: &mut ShardState,
    user: &str,
    channel: &str,
    data: &BorrowedValue<'_>,
    reply_to: ReplyTo,
    now: u64,
) {
    let frame = encode::channel_message(channel, user, data);
    route::publish(
        shard,
        st,
        Arc::from(channel),
        frame,
        Origin::Conn(reply_to),
        now,
    );
}

/// Queues the error frame for a refused request.
fn refuse(st: &mut ShardState, conn: ConnId, e: &RequestError<'_>, now: u64) {
    st.conns
        .enqueue(conn, encode::error(e.id, e.code, &e.message), now);
}
