//! The shard's side of authorization: each client request checked against [`crate::access`] on the
//! connection's own shard, refusals answered and counted, and the token lifetime (expiry, `refresh`).
//!
//! A refused request gets `{"op":"error","code":"forbidden",...}` and the connection stays open. A
//! JWT-mode connection is closed with 4011 when its token's `exp` passes, unless a `refresh` with a
//! valid token for the same user came first; the check rides the connection's existing timer-wheel
//! visit ([`expired`]), with its next visit brought forward to the expiry.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{
    access::{ConnAuth, Refusal, rules::ChannelOp, verify_subscription},
    auth::Identity,
    conn::Conn,
    ids::ConnId,
    protocol::{ErrorCode, encode},
    shard::{Shard, ShardState},
};

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Records what a JWT-mode identity carries on its connection and schedules the expiry check.
pub fn identified(st: &mut ShardState, conn: ConnId, identity: Identity, now: u64) {
    let Some(exp) = identity.exp else {
        return; // dev mode: nothing to keep
    };
    let exp_ms = ConnAuth::deadline(exp, now, unix_ms());
    if let Some(c) = st.conns.get_mut(conn) {
        c.auth = Some(Box::new(ConnAuth {
            exp_ms,
            grants: identity.grants,
        }));
    }
    st.conns.schedule_by(conn, exp_ms);
}

/// True when `conn`'s token has expired by `now` (the timer visit then closes it with 4011); the
/// expiry, if any, is folded into its next visit `next`.
pub fn expired(conn: &Conn, now: u64, next: &mut u64) -> bool {
    match &conn.auth {
        Some(a) if now >= a.exp_ms => true,
        Some(a) => {
            *next = (*next).min(a.exp_ms);
            false
        }
        None => false,
    }
}

/// Checks `op` on `channel` for the connection; with a refusal, answers `forbidden` and returns
/// false. `token`: a subscription token that can grant the channel when its rule is `grant`.
#[allow(clippy::too_many_arguments)]
pub fn channel(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    user: &str,
    (id, op): (Option<&str>, ChannelOp),
    channel: &str,
    token: Option<&str>,
    now: u64,
) -> bool {
    let decided = shard
        .config
        .access
        .channel(op, channel, user, grants_of(st, conn));
    let refusal = match decided {
        Ok(()) => return true,
        Err(r) => r,
    };
    if refusal == Refusal::NoGrant
        && let (Some(token), Some(verifier)) = (token, shard.config.auth.verifier())
    {
        match verify_subscription(verifier, token, user, channel) {
            Ok(()) => return true,
            Err(e) => {
                let message = format!("subscription token refused: {e}");
                forbid(shard, st, conn, id, op.label(), &message, now);
                return false;
            }
        }
    }
    forbid(shard, st, conn, id, op.label(), refusal.message(), now);
    false
}

/// Checks a direct message to `to`; with a refusal, answers `forbidden` and returns false.
pub fn send(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    id: Option<&str>,
    to: &str,
    now: u64,
) -> bool {
    match shard.config.access.send(to, grants_of(st, conn)) {
        Ok(()) => true,
        Err(r) => {
            forbid(shard, st, conn, id, "send", r.message(), now);
            false
        }
    }
}

/// `refresh`: a valid token for the same user replaces the connection's expiry and grants.
pub fn refresh(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    user: &str,
    (id, token): (Option<&str>, &str),
    now: u64,
) {
    let reply = match shard.config.auth.verifier() {
        None => encode::error(
            id,
            ErrorCode::BadRequest,
            "refresh needs JWT mode; this node has no JWT key",
        ),
        Some(verifier) => match verifier.verify_identity(token) {
            Ok(identity) if identity.user == user => {
                identified(st, conn, identity, now);
                encode::ack(id, "refreshed", None)
            }
            Ok(_) => encode::error(
                id,
                ErrorCode::Unauthorized,
                "refresh token is for another user; the current token stays",
            ),
            Err(e) => encode::error(
                id,
                ErrorCode::Unauthorized,
                &format!("refresh refused, the current token stays: {e}"),
            ),
        },
    };
    st.conns.enqueue(conn, reply, now);
}

/// What `conn`'s token grants (`None` in dev mode).
fn grants_of(st: &ShardState, conn: ConnId) -> Option<&crate::access::grants::Grants> {
    st.conns.get(conn)?.auth.as_deref().map(|a| &a.grants)
}

/// Answers a refused request and counts it.
fn forbid(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    id: Option<&str>,
    op: &str,
    message: &str,
    now: u64,
) {
    shard.metrics.forbidden(op);
    let frame = encode::error(id, ErrorCode::Forbidden, message);
    st.conns.enqueue(conn, frame, now);
}
