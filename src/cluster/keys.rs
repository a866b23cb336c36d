//! Every Redis key and pub/sub channel name the cluster uses, in one place.
//!
//! Other nodes, operators with `redis-cli` and future versions of the gateway read these names, so they
//! are part of the cluster's interface: changing one is a breaking change between nodes of one cluster.
//! Names are built from fixed prefixes and the raw id; nothing parses them back, so an id containing `:`
//! is harmless (pub/sub channels and keys are separate namespaces in Redis, so `gateway:node:<id>` the
//! channel never meets `gateway:node:<id>:alive` the key).
//!
//! | name                      | type    | written by                 | content                                  |
//! |---------------------------|---------|----------------------------|------------------------------------------|
//! | `presence:<user>`         | hash    | each node holding the user | field node id → `"<count>:<ts_ms>"`      |
//! | `gateway:nodes`           | hash    | each node, every heartbeat | field node id → JSON description         |
//! | `gateway:node:<id>:alive` | string  | node `<id>`, with a TTL    | `alive` or `draining`; gone = dead       |
//! | `gateway:node:<id>:channels` | set  | node `<id>`                | channels where `<id>` has subscribers    |
//! | `gateway:ch:<name>:members` | hash  | each node with subscribers | field `<node id>\n<user>` → `1`          |
//! | `gateway:hist:s:<user>`   | stream  | any node sending to `<user>` | the user's kept messages: fields `s` (seq), `f` (frame) |
//! | `gateway:hist:m:<user>`   | hash    | any node sending to `<user>` | the stream's `e` (epoch) and `s` (last seq) |
//! | `gateway:chist:s:<name>`  | stream  | any node publishing to channel `<name>` (with history) | the channel's kept publications: `s`, `f` |
//! | `gateway:chist:m:<name>`  | hash    | any node publishing to channel `<name>` (with history) | the channel stream's `e` and `s` |
//! | `gateway:node:<id>`       | channel | any node                   | messages for users held by node `<id>`   |
//! | `gateway:ch:<name>`       | channel | any node                   | publications to channel `<name>` (sharded pub/sub when the server has it) |
//!
//! Node ids, user and channel names never contain a newline (names are checked by the protocol, node
//! ids are `<host>-<pid>`), so `<node id>\n<user>` is unambiguous.

/// Prefix of a user's presence hash.
pub const PRESENCE_PREFIX: &str = "presence:";

/// The node registry hash: node id → JSON description (see [`super::registry`]).
pub const NODES: &str = "gateway:nodes";

/// Prefix shared by a node's alive key and its pub/sub channel.
pub const NODE_PREFIX: &str = "gateway:node:";

/// Suffix of a node's alive key.
pub const ALIVE_SUFFIX: &str = ":alive";

/// Prefix of a channel's pub/sub topic.
pub const CHANNEL_PREFIX: &str = "gateway:ch:";

/// `presence:<user>`: the hash of the nodes holding `user`'s connections.
pub fn presence(user: &str) -> String {
    concat(PRESENCE_PREFIX, user, "")
}

/// `gateway:node:<id>:alive`: exists (with a TTL) while node `id` heartbeats.
pub fn node_alive(node: &str) -> String {
    concat(NODE_PREFIX, node, ALIVE_SUFFIX)
}

/// `gateway:node:<id>`: the pub/sub channel on which node `id` receives messages for its users.
pub fn node_channel(node: &str) -> String {
    concat(NODE_PREFIX, node, "")
}

/// `gateway:ch:<name>`: the pub/sub channel carrying publications to the gateway channel `name`.
pub fn channel(name: &str) -> String {
    concat(CHANNEL_PREFIX, name, "")
}

/// Suffix of a node's set of channels with members.
pub const CHANNELS_SUFFIX: &str = ":channels";

/// Prefix of a user's history stream.
pub const HISTORY_STREAM_PREFIX: &str = "gateway:hist:s:";

/// Prefix of a user's history metadata (epoch, last seq).
pub const HISTORY_META_PREFIX: &str = "gateway:hist:m:";

/// `gateway:hist:s:<user>`: the stream of `user`'s kept messages. Stream and metadata have different
/// prefixes rather than suffixes, so no user name (`:` included) makes one the other's key.
pub fn history_stream(user: &str) -> String {
    concat(HISTORY_STREAM_PREFIX, user, "")
}

/// `gateway:hist:m:<user>`: the epoch and last seq of `user`'s stream.
pub fn history_meta(user: &str) -> String {
    concat(HISTORY_META_PREFIX, user, "")
}

/// Prefix of a channel's history stream (channels matching `history.channels`).
pub const CHANNEL_HISTORY_STREAM_PREFIX: &str = "gateway:chist:s:";

/// Prefix of a channel's history metadata (epoch, last seq).
pub const CHANNEL_HISTORY_META_PREFIX: &str = "gateway:chist:m:";

/// `gateway:chist:s:<name>`: the stream of channel `name`'s kept publications.
pub fn channel_history_stream(name: &str) -> String {
    concat(CHANNEL_HISTORY_STREAM_PREFIX, name, "")
}

/// `gateway:chist:m:<name>`: the epoch and last seq of channel `name`'s stream.
pub fn channel_history_meta(name: &str) -> String {
    concat(CHANNEL_HISTORY_META_PREFIX, name, "")
}

/// Suffix of a channel's member hash.
pub const MEMBERS_SUFFIX: &str = ":members";

/// `gateway:node:<id>:channels`: the channels in which node `id` wrote member fields (what its clean-up
/// or a sweep after its death visits).
pub fn node_channels(node: &str) -> String {
    concat(NODE_PREFIX, node, CHANNELS_SUFFIX)
}

/// `gateway:ch:<name>:members`: channel presence, one field per (node, user).
pub fn channel_members(name: &str) -> String {
    concat(CHANNEL_PREFIX, name, MEMBERS_SUFFIX)
}

/// The field of `user` held by `node` in a channel's member hash: `<node>\n<user>`.
pub fn member_field(node: &str, user: &str) -> String {
    concat(node, "\n", user)
}

/// Splits a member field back into (node, user).
pub fn parse_member_field(field: &str) -> Option<(&str, &str)> {
    field.split_once('\n')
}

fn concat(prefix: &str, id: &str, suffix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + id.len() + suffix.len());
    s.push_str(prefix);
    s.push_str(id);
    s.push_str(suffix);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_documented_layout() {
        assert_eq!(presence("alice"), "presence:alice");
        assert_eq!(NODES, "gateway:nodes");
        assert_eq!(node_alive("gw-1"), "gateway:node:gw-1:alive");
        assert_eq!(node_channel("gw-1"), "gateway:node:gw-1");
        assert_eq!(channel("news"), "gateway:ch:news");
        assert_eq!(node_channels("gw-1"), "gateway:node:gw-1:channels");
        assert_eq!(channel_members("news"), "gateway:ch:news:members");
        assert_eq!(member_field("gw-1", "amy"), "gw-1\namy");
        assert_eq!(parse_member_field("gw-1\na:b"), Some(("gw-1", "a:b")));
        assert_eq!(parse_member_field("nofield"), None);
        assert_eq!(history_stream("amy"), "gateway:hist:s:amy");
        assert_eq!(history_meta("amy"), "gateway:hist:m:amy");
        assert_ne!(history_stream("a:m"), history_meta("a"));
        assert_eq!(channel_history_stream("r:1"), "gateway:chist:s:r:1");
        assert_eq!(channel_history_meta("r:1"), "gateway:chist:m:r:1");
        assert_ne!(channel_history_meta("x"), history_meta("x"));
    }

    #[test]
    fn ids_are_used_verbatim() {
        assert_eq!(presence("a:b"), "presence:a:b");
        assert_eq!(presence(""), "presence:");
        assert_eq!(node_alive("host:1234"), "gateway:node:host:1234:alive");
        assert_eq!(channel("é/x y"), "gateway:ch:é/x y");
    }

    #[test]
    fn a_node_channel_is_not_its_alive_key() {
        // Two different names for every id, including ids that end like the suffix.
        for id in ["n", "n:alive", ""] {
            assert_ne!(node_channel(id), node_alive(id));
        }
    }
}
