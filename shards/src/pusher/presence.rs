//! Pusher presence channels at the channel's owner shard: who the members are (by `user_id`, once
//! however many sockets), what each said about itself (`user_info`), and the events their comings and
//! goings send (`member_added` on a user's first socket, `member_removed` after its last).
//!
//! The channel index already counts a channel's subscribed connections per user; a presence channel
//! is subscribed under the member's own (app-scoped) user name instead of the app's anonymous one, so
//! the index's "first connection of this user" and "last one gone" are exactly the member events.
//! This module keeps the rest: the `user_info` of each member, the member cap, and the frames.

use std::sync::Arc;

use bytes::Bytes;
use simd_json::prelude::*;

use super::names;
use crate::{
    messages::{ChannelMsg, NodeMsg, Origin, ReplyTo, ShardMsg},
    protocol::encode::write_json_str,
    route,
    shard::{Shard, ShardState},
    ws::encode::FrameBuilder,
};

/// Largest `channel_data` a presence subscription may carry.
pub const MAX_CHANNEL_DATA_BYTES: usize = 2048;

/// A member's `user_id` and `user_info` (JSON text; `null` when absent), read from a subscription's
/// `channel_data`; `None` when it is not a JSON object with a string or integer `user_id`.
pub fn parse_channel_data(channel_data: &str) -> Option<(String, String)> {
    if channel_data.len() > MAX_CHANNEL_DATA_BYTES {
        return None;
    }
    let mut bytes = channel_data.as_bytes().to_vec();
    let v = simd_json::to_borrowed_value(&mut bytes).ok()?;
    let id = v.get("user_id")?;
    let id = match id.as_str() {
        Some(s) if !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control) => {
            s.to_owned()
        }
        Some(_) => return None,
        None => id.as_i64().map(|n| n.to_string())?,
    };
    let info = v
        .get("user_info")
        .map_or_else(|| "null".to_owned(), |i| i.encode());
    Some((id, info))
}

/// True when `channel` (an internal name) is an app's presence channel.
pub fn is_presence(channel: &str) -> bool {
    names::external(channel).is_some_and(|(_, c)| c.starts_with("presence-"))
}

/// Owner step of a presence subscription by `member` with `info`, after the index counted it
/// (`first`: the member's first socket). Returns false when the channel is full: the caller undoes
/// the subscription and the socket gets `subscription_error` 403.
pub fn joined(
    shard: &Shard,
    st: &mut ShardState,
    channel: &Arc<str>,
    (member, info): (&Arc<str>, Arc<str>),
    first: bool,
    joiner: Option<&ReplyTo>,
    now: u64,
) -> bool {
    let cap = names::external(channel)
        .and_then(|(app, _)| shard.config.pusher.by_id(app))
        .map_or(100, |(_, a)| a.max_presence_members as usize);
    if !st
        .channels
        .pusher_members
        .join(channel, member, &info, first.then_some(cap))
    {
        return false;
    }
    if first {
        if let Some(link) = &shard.config.cluster {
            // The cluster decides whether this is the member's first socket anywhere.
            link.presence_member(channel, member, Some(info), joiner.cloned());
        } else {
            crate::webhooks::emit::member(shard, channel, member, true);
            let (_, msg) = member_event(channel, member, Some(&info), joiner.cloned(), 1);
            route::handle(shard, st, msg, now);
        }
    }
    true
}

/// Owner step of a member's last socket (on this node) leaving `channel`.
pub fn left(shard: &Shard, st: &mut ShardState, channel: &Arc<str>, member: &Arc<str>, now: u64) {
    st.channels.pusher_members.leave(channel, member);
    match &shard.config.cluster {
        Some(link) => link.presence_member(channel, member, None, None),
        None => {
            crate::webhooks::emit::member(shard, channel, member, false);
            let (_, msg) = member_event(channel, member, None, None, 1);
            route::handle(shard, st, msg, now);
        }
    }
}

/// The owner shard of `channel` among `shards`, and the message that sends it `member_added` (with
/// `info`; skipping `joiner`, who learns of itself from `subscription_succeeded`) or, without `info`,
/// `member_removed`, to every subscriber on every node.
pub fn member_event(
    channel: &Arc<str>,
    member: &str,
    info: Option<&str>,
    joiner: Option<ReplyTo>,
    shards: usize,
) -> (usize, ShardMsg) {
    let frame = member_frame(channel, member_event_name(info.is_some()), member, info);
    let reply = match joiner {
        Some(r) => Origin::Silent(r),
        None => Origin::External(Box::new(|_| {})),
    };
    let msg = ChannelMsg::Publish {
        channel: channel.clone(),
        frame,
        reply,
        self_subscribed: false,
        local_only: false,
        seq: 0,
    };
    (crate::ids::owner_of(channel, shards), msg.into())
}

/// Refuses a subscription the owner could not take (the channel is full): the socket's shard drops it
/// and tells the client.
pub fn refuse(shard: &Shard, st: &mut ShardState, channel: Arc<str>, ack: ReplyTo, now: u64) {
    let invoke: crate::messages::Invocation = Box::new(move |shard, st, now| {
        super::subscribe::refused(shard, st, ack.conn, &channel, now)
    });
    if ack.shard == shard.id {
        invoke(shard, st, now);
    } else {
        st.mesh.send(ack.shard, NodeMsg::Invoke(invoke));
    }
}

/// At a presence subscriber's shard: its `subscription_succeeded` (`frame`), and from then on the
/// channel's events. Events before it are not delivered: the member list it carries supersedes them,
/// so pusher-js never hears a `member_added` before the list it belongs to.
pub fn succeeded_at(conn: crate::ids::ConnId, channel: Arc<str>, frame: Bytes) -> ShardMsg {
    NodeMsg::Invoke(Box::new(move |_, st, now| {
        let subscribed = st
            .conns
            .get(conn)
            .is_some_and(|c| c.subs.contains(&channel));
        if subscribed {
            st.channels.local.add(channel, conn);
            st.conns.enqueue(conn, frame, now);
        }
    }))
    .into()
}

/// `pusher_internal:subscription_succeeded` of a presence channel: every member with its info.
pub fn succeeded(channel: &str, members: &[(&Arc<str>, &Arc<str>)]) -> Bytes {
    let mut inner = String::with_capacity(32 + members.len() * 48);
    inner.push_str("{\"presence\":{\"ids\":[");
    for (i, (m, _)) in members.iter().enumerate() {
        if i > 0 {
            inner.push(',');
        }
        push_json_str(&mut inner, user_id(m));
    }
    inner.push_str("],\"hash\":{");
    for (i, (m, info)) in members.iter().enumerate() {
        if i > 0 {
            inner.push(',');
        }
        push_json_str(&mut inner, user_id(m));
        inner.push(':');
        inner.push_str(info);
    }
    inner.push_str(&format!("}},\"count\":{}}}}}", members.len()));
    let name = names::external(channel).map_or(channel, |(_, c)| c);
    string_data_frame("pusher_internal:subscription_succeeded", name, &inner)
}

/// The event a member's join (`true`) or leave sends.
pub fn member_event_name(joined: bool) -> &'static str {
    if joined {
        "pusher_internal:member_added"
    } else {
        "pusher_internal:member_removed"
    }
}

/// `member_added` (with the info) or `member_removed` (without).
pub fn member_frame(channel: &str, event: &str, member: &str, info: Option<&str>) -> Bytes {
    let mut inner = String::from("{\"user_id\":");
    push_json_str(&mut inner, user_id(member));
    if let Some(info) = info {
        inner.push_str(",\"user_info\":");
        inner.push_str(info);
    }
    inner.push('}');
    let name = names::external(channel).map_or(channel, |(_, c)| c);
    string_data_frame(event, name, &inner)
}

/// `{"event":..,"channel":..,"data":"<inner as a JSON string>"}`.
fn string_data_frame(event: &str, channel: &str, inner: &str) -> Bytes {
    let mut b = FrameBuilder::with_capacity(48 + event.len() + channel.len() + inner.len() * 2);
    let p = b.payload();
    p.extend_from_slice(b"{\"event\":");
    write_json_str(p, event);
    p.extend_from_slice(b",\"channel\":");
    write_json_str(p, channel);
    p.extend_from_slice(b",\"data\":");
    write_json_str(p, inner);
    p.extend_from_slice(b"}");
    b.finish_text()
}

/// The `user_id` of an app-scoped member name.
fn user_id(member: &str) -> &str {
    names::external(member).map_or(member, |(_, id)| id)
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    let mut b = bytes::BytesMut::new();
    write_json_str(&mut b, s);
    out.push_str(&String::from_utf8_lossy(&b));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(frame: &Bytes) -> serde_json::Value {
        let start = if frame[1] & 0x7f == 126 { 4 } else { 2 };
        serde_json::from_slice(&frame[start..]).unwrap()
    }

    #[test]
    fn channel_data_needs_a_user_id() {
        assert_eq!(
            parse_channel_data(r#"{"user_id":"u1","user_info":{"name":"Ann"}}"#),
            Some(("u1".into(), r#"{"name":"Ann"}"#.into()))
        );
        assert_eq!(
            parse_channel_data(r#"{"user_id":42}"#),
            Some(("42".into(), "null".into()))
        );
        for bad in [
            "",
            "[]",
            r#"{"user_info":{}}"#,
            r#"{"user_id":""}"#,
            r#"{"user_id":1.5}"#,
        ] {
            assert_eq!(parse_channel_data(bad), None, "{bad}");
        }
        let big = format!(
            r#"{{"user_id":"u","user_info":"{}"}}"#,
            "x".repeat(MAX_CHANNEL_DATA_BYTES)
        );
        assert_eq!(parse_channel_data(&big), None);
    }

    #[test]
    fn frames_are_what_pusher_js_reads() {
        let ch = names::internal("1", "presence-room");
        let (a, b): (Arc<str>, Arc<str>) =
            (names::user("1", "a").into(), names::user("1", "b\"").into());
        let (ia, ib): (Arc<str>, Arc<str>) = (r#"{"n":1}"#.into(), "null".into());
        let f = json(&succeeded(&ch, &[(&a, &ia), (&b, &ib)]));
        assert_eq!(f["channel"], "presence-room");
        let data: serde_json::Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["presence"]["ids"], serde_json::json!(["a", "b\""]));
        assert_eq!(data["presence"]["hash"]["a"]["n"], 1);
        assert_eq!(data["presence"]["count"], 2);
        let f = json(&member_frame(
            &ch,
            "pusher_internal:member_added",
            &a,
            Some(&ia),
        ));
        let data: serde_json::Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"user_id": "a", "user_info": {"n": 1}})
        );
        assert!(is_presence(&ch) && !is_presence(&names::internal("1", "private-x")));
    }
}
