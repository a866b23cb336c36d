//! The snapshot behind `GET /dashboard/data`: this node's figures per shard and the cluster's nodes.
//!
//! Everything is read from what the admin server already holds: [`shards::NodeStatus`] (readiness,
//! connection count and cap), the Prometheus text (per-shard figures, see [`super::prom`]) and the
//! bridge's [`ClusterView`](crate::bridge::ClusterView) (the node registry as of the last heartbeat,
//! the Redis link). Counters are sent as totals with the time they were read; the page turns the
//! difference between two polls into rates, so the server keeps no state per viewer.

use serde_json::{Value, json};
use shards::metrics::{CONNECTIONS_OPEN, MESSAGES_ROUTED, SLOW_CONSUMER_CLOSES};

use super::prom;
use crate::{admin::AdminState, cluster::now_ms};

/// One shard's figures, read from the metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ShardFigures {
    /// Open connections (`gateway_connections_open`).
    pub connections: u64,
    /// Messages handed to this shard's connections (`gateway_messages_routed_total{path="local"}`).
    pub delivered: u64,
    /// Messages passed to another shard (`gateway_messages_routed_total{path="cross_shard"}`).
    pub cross_shard: u64,
    /// Connections closed because they did not read (`gateway_slow_consumer_closes_total`).
    pub slow_consumer: u64,
}

/// The figures of shards `0..shards` from the Prometheus text `text` (a shard with no sample yet
/// shows zeros; samples of a higher shard index are ignored).
pub fn shard_figures(text: &str, shards: usize) -> Vec<ShardFigures> {
    let mut figures = vec![ShardFigures::default(); shards];
    for sample in prom::samples(text) {
        if !matches!(
            sample.name,
            CONNECTIONS_OPEN | MESSAGES_ROUTED | SLOW_CONSUMER_CLOSES
        ) {
            continue;
        }
        let shard = sample.label("shard").and_then(|s| s.parse::<usize>().ok());
        let Some(f) = shard.and_then(|shard| figures.get_mut(shard)) else {
            continue;
        };
        let field = match (sample.name, sample.label("path").as_deref()) {
            (CONNECTIONS_OPEN, _) => &mut f.connections,
            (SLOW_CONSUMER_CLOSES, _) => &mut f.slow_consumer,
            (_, Some("local")) => &mut f.delivered,
            (_, Some("cross_shard")) => &mut f.cross_shard,
            _ => continue,
        };
        // Gauges are floats; never show a negative count.
        *field += sample.value.max(0.0) as u64;
    }
    figures
}

/// The JSON document of `GET /dashboard/data` (fields in the module doc of [`super`]).
pub fn snapshot(state: &AdminState) -> Value {
    let status = &state.status;
    let figures = shard_figures(&state.metrics.render(), status.shards());
    let readiness = status.readiness();
    let draining = status.is_shutting_down();
    let connections = status.connections() as u64;
    let own_state = if draining { "draining" } else { "alive" };

    let this = json!({
        "id": state.node_id,
        "state": own_state,
        "ready": readiness.is_ok(),
        "readiness": readiness.err().unwrap_or_else(|| "ready".into()),
        "connections": connections,
        "max_connections": status.max_connections(),
        "shards": figures.iter().enumerate().map(|(i, f)| json!({
            "shard": i,
            "connections": f.connections,
            "delivered_total": f.delivered,
            "cross_shard_total": f.cross_shard,
            "slow_consumer_total": f.slow_consumer,
        })).collect::<Vec<_>>(),
    });

    // This node's own row uses the live figures; the others are as of their last heartbeat.
    let own_row = |heartbeat_ms: u64, ws: &str, admin: &str| {
        json!({"id": state.node_id, "state": own_state, "connections": connections,
               "shards": status.shards(), "ws": ws, "admin": admin,
               "heartbeat_ms": heartbeat_ms, "self": true})
    };
    let (mode, redis, nodes) = match &state.cluster {
        None => ("embedded", "embedded", vec![own_row(0, "", "")]),
        Some(cluster) => {
            let mut nodes: Vec<Value> = Vec::new();
            let mut seen_self = false;
            for n in cluster.nodes() {
                if n.id == state.node_id {
                    seen_self = true;
                    nodes.push(own_row(n.heartbeat_ms, &n.ws, &n.admin));
                } else {
                    nodes.push(json!({"id": n.id, "state": n.state.as_str(),
                                      "connections": n.connections, "shards": n.shards,
                                      "ws": n.ws, "admin": n.admin,
                                      "heartbeat_ms": n.heartbeat_ms, "self": false}));
                }
            }
            if !seen_self {
                nodes.push(own_row(0, "", ""));
            }
            nodes.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            let redis = if cluster.redis_up() { "up" } else { "down" };
            ("cluster", redis, nodes)
        }
    };
    json!({
        "ts_ms": now_ms(),
        "mode": mode,
        "redis": redis,
        "node": this,
        "nodes": nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_per_shard_from_the_metrics_text() {
        let text = "\
gateway_connections_open{shard=\"0\"} 3
gateway_connections_open{shard=\"1\"} -1
gateway_connections_open{shard=\"7\"} 9
gateway_messages_routed_total{shard=\"0\",path=\"local\"} 40
gateway_messages_routed_total{shard=\"1\",path=\"cross_shard\"} 5
gateway_slow_consumer_closes_total{shard=\"1\"} 2
gateway_connections_closed_total{shard=\"1\",reason=\"slow_consumer\"} 2
gateway_shards 2
";
        let f = shard_figures(text, 2);
        assert_eq!(
            f,
            vec![
                ShardFigures {
                    connections: 3,
                    delivered: 40,
                    ..Default::default()
                },
                ShardFigures {
                    cross_shard: 5,
                    slow_consumer: 2,
                    ..Default::default()
                },
            ]
        );
    }
}
