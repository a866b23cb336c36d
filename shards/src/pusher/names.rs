//! Names in the Pusher world: channel name rules, the internal names that keep apps apart, and socket
//! ids.
//!
//! A Pusher channel lives in the shards' channel tables (and in Redis, in cluster mode) under an
//! internal name: `\x01{app id}\x01{channel}`. Protocol v1 refuses control characters in names, so no
//! v1 client can reach an app's channel, and two apps' channels differ by their id. Frames are encoded
//! once, in Pusher's format, by whoever publishes on such a name.

/// Separates the parts of an internal name (a control character: never valid in a v1 name).
const SEP: char = '\u{1}';

/// Longest Pusher channel name (Pusher's own limit).
pub const MAX_CHANNEL_BYTES: usize = 164;

/// What a channel's prefix makes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Anyone may subscribe; no client events.
    Public,
    /// `private-`: subscribe with a signature over `socket_id:channel`.
    Private,
    /// `private-encrypted-`: as private; payloads are relayed untouched and clients may not send.
    Encrypted,
    /// `presence-`: as private, with `channel_data` signed too, and a member list.
    Presence,
}

impl Kind {
    /// The kind of `channel`.
    pub fn of(channel: &str) -> Kind {
        if channel.starts_with("private-encrypted-") {
            Kind::Encrypted
        } else if channel.starts_with("private-") {
            Kind::Private
        } else if channel.starts_with("presence-") {
            Kind::Presence
        } else {
            Kind::Public
        }
    }

    /// Whether subscribing needs a signature.
    pub fn needs_auth(self) -> bool {
        self != Kind::Public
    }
}

/// Whether `channel` is a valid Pusher channel name: 1 to 164 of `A-Z a-z 0-9 _ - = @ , . ;`.
pub fn channel_ok(channel: &str) -> bool {
    !channel.is_empty()
        && channel.len() <= MAX_CHANNEL_BYTES
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b))
}

/// The internal name of `channel` of the app `app_id`.
pub fn internal(app_id: &str, channel: &str) -> String {
    let mut s = String::with_capacity(app_id.len() + channel.len() + 2);
    s.push(SEP);
    s.push_str(app_id);
    s.push(SEP);
    s.push_str(channel);
    s
}

/// `(app id, channel)` of an internal name; `None` for a protocol v1 name.
pub fn external(internal: &str) -> Option<(&str, &str)> {
    internal.strip_prefix(SEP)?.split_once(SEP)
}

/// The internal user name of `user_id` in the app `app_id` (sign-in and presence members): in its
/// own name space, so it never meets a v1 user or another app's.
pub fn user(app_id: &str, user_id: &str) -> String {
    internal(app_id, user_id)
}

/// The internal name of the app's anonymous subscribers: who a public or private subscription is
/// counted under in the channel index (one member, whatever the number of sockets).
pub fn anonymous(app_id: &str) -> String {
    internal(app_id, "")
}

/// This node's part of its socket ids: a 32-bit hash of the node id, so socket ids differ across the
/// nodes of a cluster (FNV-1a: stable across builds and processes).
pub fn node_tag(node_id: &str) -> u32 {
    node_id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The socket id of connection `(index, generation)` on `shard` of the node tagged `tag`:
/// `{tag * 256 + shard}.{generation * 2^32 + index}`, matching `^\d+\.\d+$`.
pub fn socket_id(tag: u32, shard: usize, index: u32, generation: u32) -> String {
    let a = (u64::from(tag) << 8) | (shard as u64 & 0xff);
    let b = (u64::from(generation) << 32) | u64::from(index);
    format!("{a}.{b}")
}

/// `(tag, shard, index, generation)` of a socket id, if it has the shape [`socket_id`] gives.
pub fn parse_socket_id(s: &str) -> Option<(u32, usize, u32, u32)> {
    let (a, b) = s.split_once('.')?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let a: u64 = a.parse().ok()?;
    let b: u64 = b.parse().ok()?;
    let tag = u32::try_from(a >> 8).ok()?;
    Some((tag, (a & 0xff) as usize, b as u32, (b >> 32) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_names() {
        assert_eq!(Kind::of("news"), Kind::Public);
        assert_eq!(Kind::of("private-a"), Kind::Private);
        assert_eq!(Kind::of("private-encrypted-a"), Kind::Encrypted);
        assert_eq!(Kind::of("presence-a"), Kind::Presence);
        assert!(!Kind::Public.needs_auth() && Kind::Presence.needs_auth());
        for ok in ["a", "private-x_y=z@w,v.u;t", &"c".repeat(164)] {
            assert!(channel_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "#server-to-user-1",
            "é",
            "a\u{1}b",
            &"c".repeat(165),
        ] {
            assert!(!channel_ok(bad), "{bad}");
        }
    }

    #[test]
    fn internal_names_keep_apps_apart() {
        let a = internal("1", "presence-room");
        let b = internal("2", "presence-room");
        assert_ne!(a, b);
        assert_eq!(external(&a), Some(("1", "presence-room")));
        assert_eq!(external("room:1"), None);
        assert_ne!(user("1", "7"), user("2", "7"));
        assert_ne!(anonymous("1"), user("1", "x"));
    }

    #[test]
    fn socket_ids_round_trip() {
        let tag = node_tag("node-a");
        assert_ne!(tag, node_tag("node-b"));
        let id = socket_id(tag, 3, 17, 9);
        assert!(id.split_once('.').is_some_and(|(a, b)| {
            a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
        }));
        assert_eq!(parse_socket_id(&id), Some((tag, 3, 17, 9)));
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "1.2.3",
            "a.1",
            "-1.2",
            "1.99999999999999999999999",
        ] {
            assert_eq!(parse_socket_id(bad), None, "{bad}");
        }
    }
}
