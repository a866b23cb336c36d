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
//! | `gateway:ch:<name>:subs`  | hash    | each node with subscribers of a Pusher app's channel | field node id → subscribed sockets |
//! | `gateway:occ:<kind>:<name>:nodes` | set | each node holding it (webhooks only) | the nodes holding channel/user/member `<name>` |
//! | `gateway:occ:<kind>:<name>:going` | string | the node deciding a going (webhooks only) | the going's token, with a TTL |
//! | `gateway:node:<id>:occ:<kind>` | set | node `<id>` (webhooks only) | what `<id>` holds, swept when it dies |
//!
//! Node ids, user and channel names never contain a newline (names are checked by the protocol, node
//! ids are `<host>-<pid>`), so `<node id>\n<user>` is unambiguous.
//!
//! **On a Redis Cluster** ([`use_hash_tags`]) the same names carry hash tags, so that every key one
//! script or transaction touches is in one slot: the id part is wrapped in braces
//! (`presence:{<user>}`, `gateway:hist:s:{<user>}` and `gateway:hist:m:{<user>}` with it;
//! `gateway:ch:{<name>}`, its `:members`, `:subs` and `gateway:chist:*:{<name>}` together;
//! `gateway:node:{<id>}`, its `:channels` and `:occ:*` together), and the registry (`gateway:nodes`
//! and every alive key, written together in one transaction) moves under one tag:
//! `{gateway}:nodes`, `{gateway}:node:<id>:alive`. A single Redis keeps the names of the table, so a
//! node of this version shares one Redis with nodes of the previous one.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether names carry Redis Cluster hash tags (set once, by the bridge, before its first command).
static HASH_TAGS: AtomicBool = AtomicBool::new(false);

/// Names carry hash tags from now on: the bridge connects to a Redis Cluster.
pub fn use_hash_tags() {
    HASH_TAGS.store(true, Ordering::Release);
}

/// True when names carry hash tags.
pub fn hash_tags() -> bool {
    HASH_TAGS.load(Ordering::Acquire)
}

/// The node registry hash without hash tags: node id → JSON description (see [`super::registry`]).
pub const NODES: &str = "gateway:nodes";

/// The node registry hash of the current layout (see [`NODES`]).
pub fn nodes() -> &'static str {
    if hash_tags() {
        "{gateway}:nodes"
    } else {
        NODES
    }
}

/// `presence:<user>`: the hash of the nodes holding `user`'s connections.
pub fn presence(user: &str) -> String {
    named("presence:", user, "")
}

/// `gateway:node:<id>:alive`: exists (with a TTL) while node `id` heartbeats. In the registry's slot.
pub fn node_alive(node: &str) -> String {
    if hash_tags() {
        concat("{gateway}:node:", node, ":alive")
    } else {
        concat("gateway:node:", node, ":alive")
    }
}

/// `gateway:node:<id>`: the pub/sub channel on which node `id` receives messages for its users.
pub fn node_channel(node: &str) -> String {
    named("gateway:node:", node, "")
}

/// What goes before and after a node id in [`node_channel`] (the append script builds the names).
pub fn node_channel_affixes() -> (&'static str, &'static str) {
    if hash_tags() {
        ("gateway:node:{", "}")
    } else {
        ("gateway:node:", "")
    }
}

/// `gateway:ch:<name>`: the pub/sub channel carrying publications to the gateway channel `name`.
pub fn channel(name: &str) -> String {
    named("gateway:ch:", name, "")
}

/// The channel whose topic ([`channel`]) is `topic`, if it is one.
pub fn channel_of_topic(topic: &str) -> Option<&str> {
    let name = topic.strip_prefix("gateway:ch:")?;
    if hash_tags() {
        name.strip_prefix('{')?.strip_suffix('}')
    } else {
        Some(name)
    }
}

/// `gateway:hist:s:<user>`: the stream of `user`'s kept messages. Stream and metadata have different
/// prefixes rather than suffixes, so no user name (`:` included) makes one the other's key.
pub fn history_stream(user: &str) -> String {
    named("gateway:hist:s:", user, "")
}

/// `gateway:hist:m:<user>`: the epoch and last seq of `user`'s stream.
pub fn history_meta(user: &str) -> String {
    named("gateway:hist:m:", user, "")
}

/// `gateway:chist:s:<name>`: the stream of channel `name`'s kept publications.
pub fn channel_history_stream(name: &str) -> String {
    named("gateway:chist:s:", name, "")
}

/// `gateway:chist:m:<name>`: the epoch and last seq of channel `name`'s stream.
pub fn channel_history_meta(name: &str) -> String {
    named("gateway:chist:m:", name, "")
}

/// `gateway:node:<id>:channels`: the channels in which node `id` wrote member fields (what its clean-up
/// or a sweep after its death visits).
pub fn node_channels(node: &str) -> String {
    named("gateway:node:", node, ":channels")
}

/// `gateway:ch:<name>:members`: channel presence, one field per (node, user).
pub fn channel_members(name: &str) -> String {
    named("gateway:ch:", name, ":members")
}

/// `gateway:ch:<name>:subs`: the sockets subscribed to a Pusher app's channel, one field per node.
pub fn channel_subs(name: &str) -> String {
    named("gateway:ch:", name, ":subs")
}

/// `gateway:occ:<kind>:<name>:nodes`: the nodes holding `name` (webhooks' occupancy).
pub fn occupancy_nodes(kind: &str, name: &str) -> String {
    named(&concat("gateway:occ:", kind, ":"), name, ":nodes")
}

/// `gateway:occ:<kind>:<name>:going`: the marker of `name`'s going, during its grace.
pub fn occupancy_going(kind: &str, name: &str) -> String {
    named(&concat("gateway:occ:", kind, ":"), name, ":going")
}

/// `gateway:node:<id>:occ:<kind>`: what node `id` holds of `kind` (swept when it dies).
pub fn node_held(node: &str, kind: &str) -> String {
    named("gateway:node:", node, &concat(":occ:", kind, ""))
}

/// The field of `user` held by `node` in a channel's member hash: `<node>\n<user>`.
pub fn member_field(node: &str, user: &str) -> String {
    concat(node, "\n", user)
}

/// Splits a member field back into (node, user).
pub fn parse_member_field(field: &str) -> Option<(&str, &str)> {
    field.split_once('\n')
}

/// `<prefix><id><suffix>`, the id wrapped in a hash tag on a Redis Cluster.
fn named(prefix: &str, id: &str, suffix: &str) -> String {
    tagged(prefix, id, suffix, hash_tags())
}

fn tagged(prefix: &str, id: &str, suffix: &str, tags: bool) -> String {
    if !tags {
        return concat(prefix, id, suffix);
    }
    let mut s = String::with_capacity(prefix.len() + id.len() + suffix.len() + 2);
    s.push_str(prefix);
    s.push('{');
    s.push_str(id);
    s.push('}');
    s.push_str(suffix);
    s
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
        assert_eq!(channel_of_topic("gateway:ch:a:b"), Some("a:b"));
        assert_eq!(channel_of_topic("gateway:node:x"), None);
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
        assert_eq!(occupancy_nodes("ch", "n"), "gateway:occ:ch:n:nodes");
        assert_eq!(node_held("gw", "user"), "gateway:node:gw:occ:user");
        assert_eq!(channel_subs("c"), "gateway:ch:c:subs");
        assert_eq!(node_channel_affixes(), ("gateway:node:", ""));
        assert_eq!(node_alive("host:1234"), "gateway:node:host:1234:alive");
        assert_eq!(channel("é/x y"), "gateway:ch:é/x y");
    }

    #[test]
    fn tagged_names_of_one_id_share_a_slot() {
        use super::super::conn::key_slot;
        // What hash_tags() switches on, without switching it for the other tests of this process.
        let t = |p: &str, id: &str, s: &str| tagged(p, id, s, true);
        assert_eq!(t("presence:", "amy", ""), "presence:{amy}");
        assert_eq!(
            t("gateway:ch:", "r:1", ":members"),
            "gateway:ch:{r:1}:members"
        );
        for id in ["amy", "a}b", "{x}", "é/x y", "a{b"] {
            let slot = key_slot(t("presence:", id, "").as_bytes());
            for (p, s) in [
                ("gateway:hist:s:", ""),
                ("gateway:hist:m:", ""),
                ("gateway:ch:", ":members"),
            ] {
                assert_eq!(key_slot(t(p, id, s).as_bytes()), slot, "{p}{id}{s}");
            }
        }
        assert_eq!(
            key_slot(b"{gateway}:nodes"),
            key_slot(b"{gateway}:node:any{id}:alive")
        );
    }

    #[test]
    fn a_node_channel_is_not_its_alive_key() {
        // Two different names for every id, including ids that end like the suffix.
        for id in ["n", "n:alive", ""] {
            assert_ne!(node_channel(id), node_alive(id));
        }
    }
}
