//! `pusher:signin`: a socket proves who its user is (a signature over `socket_id::user::user_data`
//! from the app's backend) and becomes reachable as that user: events sent to the user (the HTTP
//! API's `#server-to-user-{id}`) reach every socket it has, on every node, through the same user
//! routing as protocol v1's send; and terminating the user's connections closes them all.

use std::sync::Arc;

use simd_json::{BorrowedValue, prelude::*};

use super::{names, signature};
use crate::{
    ids::ConnId,
    protocol::encode::write_json_str,
    route,
    shard::{Shard, ShardState},
    ws::encode::FrameBuilder,
};

/// Largest `user_data`.
const MAX_USER_DATA_BYTES: usize = 4096;

/// Signs the socket in as `data.user_data`'s `id`, or tells it why not.
pub fn signin(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    data: &BorrowedValue<'_>,
    now: u64,
) {
    let refuse = |st: &mut ShardState, message| {
        let frame = super::frames::error(Some(4009), message);
        st.conns.enqueue(conn, frame, now);
    };
    let user_data = data.get("user_data").and_then(|u| u.as_str()).unwrap_or("");
    let auth = data.get("auth").and_then(|a| a.as_str()).unwrap_or("");
    let socket_id = super::socket::socket_id(shard, conn);
    let Some(c) = st.conns.get_mut(conn) else {
        return;
    };
    let Some(p) = &mut c.pusher else {
        return;
    };
    if p.user.is_some() {
        return refuse(st, "already signed in");
    }
    let Some(id) = user_id(user_data) else {
        return refuse(st, "user_data must be a JSON object with a string id");
    };
    if !signature::verify_user_auth(&p.app.key, &p.app.secret, &socket_id, user_data, auth) {
        shard.metrics.forbidden("subscribe");
        return refuse(st, "invalid signin signature");
    }
    let user: Arc<str> = Arc::from(names::user(&p.app.id, &id));
    p.user = Some(user.clone());
    // As protocol v1's `ready`: the answer waits for the owner's verdict (in cluster mode, the
    // user's presence written to Redis), and what is sent to the user meanwhile is held after it.
    p.signin = Some(Box::new(success(user_data)));
    st.history.resuming.start_ready(conn, None, now);
    let admit = crate::admit::Admit { conn, ready: true };
    route::user_connected(shard, st, &user, conn, admit, now);
}

/// The `id` of a sign-in's `user_data`.
fn user_id(user_data: &str) -> Option<String> {
    if user_data.len() > MAX_USER_DATA_BYTES {
        return None;
    }
    let mut bytes = user_data.as_bytes().to_vec();
    let v = simd_json::to_borrowed_value(&mut bytes).ok()?;
    let id = v.get("id")?.as_str()?;
    (!id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control)).then(|| id.to_owned())
}

/// `pusher:signin_success` with the signed `user_data`.
fn success(user_data: &str) -> bytes::Bytes {
    let mut inner = bytes::BytesMut::new();
    inner.extend_from_slice(b"{\"user_data\":");
    write_json_str(&mut inner, user_data);
    inner.extend_from_slice(b"}");
    let mut b = FrameBuilder::with_capacity(64 + inner.len() * 2);
    let p = b.payload();
    p.extend_from_slice(b"{\"event\":\"pusher:signin_success\",\"data\":");
    write_json_str(p, &String::from_utf8_lossy(&inner));
    p.extend_from_slice(b"}");
    b.finish_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_needs_a_string_id() {
        assert_eq!(
            user_id(r#"{"id":"u1","name":"Ann"}"#).as_deref(),
            Some("u1")
        );
        for bad in ["", "{}", r#"{"id":1}"#, r#"{"id":""}"#, "[1]"] {
            assert_eq!(user_id(bad), None, "{bad}");
        }
    }
}
