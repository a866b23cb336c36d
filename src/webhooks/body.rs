//! Webhook bodies and their signatures: Pusher's format for an app's targets, the same shape for
//! protocol v1's, each event named as its receiver expects.
//!
//! `{"time_ms":<unix ms>,"events":[{"name":"channel_occupied","channel":"c"}, ...]}`. Pusher's
//! bodies are signed with the app's secret in `X-Pusher-Signature` (and name the app in
//! `X-Pusher-Key`); protocol v1's with the target's secret in `X-Gateway-Signature`.

use serde_json::{Value, json};
use shards::{pusher::names, webhooks::Hook};

/// Pusher's name for `hook`, and its JSON for a Pusher app's target (names are external).
pub fn pusher_event(hook: &Hook) -> Option<(&'static str, Value)> {
    let external = |internal: &str| names::external(internal).map(|(_, n)| n.to_owned());
    Some(match hook {
        Hook::ChannelOccupied { channel } => (
            "channel_occupied",
            json!({"name": "channel_occupied", "channel": external(channel)?}),
        ),
        Hook::ChannelVacated { channel } => (
            "channel_vacated",
            json!({"name": "channel_vacated", "channel": external(channel)?}),
        ),
        Hook::MemberAdded { channel, member } => (
            "member_added",
            json!({"name": "member_added", "channel": external(channel)?, "user_id": external(member)?}),
        ),
        Hook::MemberRemoved { channel, member } => (
            "member_removed",
            json!({"name": "member_removed", "channel": external(channel)?, "user_id": external(member)?}),
        ),
        Hook::ClientEvent {
            channel,
            event,
            data,
            socket_id,
            user_id,
        } => {
            let mut v = json!({
                "name": "client_event",
                "channel": external(channel)?,
                "event": &**event,
                "data": &**data,
                "socket_id": &**socket_id,
            });
            if let Some(user) = user_id {
                v["user_id"] = json!(&**user);
            }
            ("client_event", v)
        }
        Hook::UserOnline { .. } | Hook::UserOffline { .. } => return None,
    })
}

/// The event's name and JSON for a protocol v1 target (v1 channels and users only).
pub fn gateway_event(hook: &Hook) -> Option<(&'static str, Value)> {
    let v1 = |name: &str| names::external(name).is_none();
    Some(match hook {
        Hook::ChannelOccupied { channel } if v1(channel) => (
            "channel_occupied",
            json!({"name": "channel_occupied", "channel": &**channel}),
        ),
        Hook::ChannelVacated { channel } if v1(channel) => (
            "channel_vacated",
            json!({"name": "channel_vacated", "channel": &**channel}),
        ),
        Hook::UserOnline { user } if v1(user) => (
            "user_online",
            json!({"name": "user_online", "user": &**user}),
        ),
        Hook::UserOffline { user } if v1(user) => (
            "user_offline",
            json!({"name": "user_offline", "user": &**user}),
        ),
        _ => return None,
    })
}

/// The body of one POST.
pub fn body(time_ms: u64, events: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({"time_ms": time_ms, "events": events})).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn events_are_named_for_their_receivers() {
        let ch: Arc<str> = names::internal("1", "presence-r").into();
        let member: Arc<str> = names::user("1", "u7").into();
        let (name, v) = pusher_event(&Hook::MemberAdded {
            channel: ch.clone(),
            member,
        })
        .unwrap();
        assert_eq!(name, "member_added");
        assert_eq!(
            v,
            json!({"name": "member_added", "channel": "presence-r", "user_id": "u7"})
        );
        // Pusher targets never see v1 names, and v1 targets never see an app's.
        assert!(
            pusher_event(&Hook::ChannelOccupied {
                channel: "room".into()
            })
            .is_none()
        );
        assert!(gateway_event(&Hook::ChannelOccupied { channel: ch }).is_none());
        let (name, v) = gateway_event(&Hook::UserOffline {
            user: "alice".into(),
        })
        .unwrap();
        assert_eq!(
            (name, v),
            (
                "user_offline",
                json!({"name": "user_offline", "user": "alice"})
            )
        );
        let b: Value = serde_json::from_slice(&body(5, &[json!({"a": 1})])).unwrap();
        assert_eq!(b, json!({"time_ms": 5, "events": [{"a": 1}]}));
    }
}
