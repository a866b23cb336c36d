//! Socket ids of this shard's Pusher connections: `{node tag × 256 + shard}.{generation × 2³² + slot}`
//! (the codec is in [`super::names`]), and the connection one names if it is on this node.

use super::names;
use crate::{ids::ConnId, shard::Shard};

/// The socket id of connection `id` on this shard.
pub fn socket_id(shard: &Shard, id: ConnId) -> String {
    let tag = names::node_tag(&shard.config.node_id);
    names::socket_id(tag, shard.id, id.index, id.generation)
}

/// The connection of this node that `socket_id` names, as `(shard, conn)`.
pub fn local_socket(shard: &Shard, socket_id: &str) -> Option<(usize, ConnId)> {
    let (tag, on, index, generation) = names::parse_socket_id(socket_id)?;
    (tag == names::node_tag(&shard.config.node_id) && on < shard.config.shards)
        .then_some((on, ConnId { index, generation }))
}
