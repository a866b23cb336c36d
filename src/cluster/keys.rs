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
//! | `gateway:node:<id>`       | channel | any node                   | messages for users held by node `<id>`   |
//! | `gateway:ch:<name>`       | channel | any node                   | publications to channel `<name>`         |

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
