//! `redis+cluster://[user:password@]host:port[,host:port...]`: a Redis Cluster, reached through the
//! seed nodes named (the topology is discovered from any of them; MOVED and ASK are followed, and the
//! slot map is refreshed after a failover, by the `redis` crate's cluster connection).
//!
//! On a cluster the cluster layer's names carry hash tags ([`crate::cluster::keys`]), and the bridge
//! opens two cluster connections: one for commands and scripts ([`crate::cluster::conn::Conn`]) and one
//! (RESP3) that listens: classic `SUBSCRIBE` for this node's channel (a cluster broadcasts classic
//! publications to every server, so the scripts that number a user's messages can publish to any
//! node's channel from the user's slot), sharded `SSUBSCRIBE` for channel topics (each one held on the
//! master of its slot). When a slot moves, the old master ends its topics' subscriptions and the
//! crate forgets them; the subscriber places them again on a fresh listening connection
//! ([`crate::relay::subscriber`]).

use std::time::Duration;

use redis::{
    ProtocolVersion, PushInfo, RedisResult,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};
use tokio::sync::mpsc::UnboundedSender;

/// URL scheme of a Redis Cluster.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A parsed `redis+cluster://` URL: the seed nodes as `redis://` URLs, credentials included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterUrl {
    pub seeds: Vec<String>,
}

/// Parses a cluster URL; `Ok(None)` for any other scheme.
pub fn parse_cluster_url(url: &str) -> Result<Option<ClusterUrl>, String> {
    let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
        return Ok(None);
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') {
        return Err(
            "a redis+cluster:// URL names seed nodes only (a cluster has one database)".into(),
        );
    }
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let seeds = super::target::host_list(hosts, "cluster node")?
        .into_iter()
        .map(|host| format!("redis://{auth}{host}"))
        .collect();
    Ok(Some(ClusterUrl { seeds }))
}

impl ClusterUrl {
    fn builder(&self, timeout: Duration) -> ClusterClientBuilder {
        ClusterClientBuilder::new(self.seeds.clone())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
    }

    /// The connection for commands and scripts.
    pub async fn connect(&self, timeout: Duration) -> RedisResult<ClusterConnection> {
        let client: ClusterClient = self.builder(timeout).build()?;
        client.get_async_connection().await
    }

    /// A listening connection (RESP3) whose push frames go to `pushes`, subscribed to
    /// `node_channel` when one is named. Its slot map is read as it opens.
    pub async fn listen(
        &self,
        node_channel: Option<&str>,
        pushes: UnboundedSender<PushInfo>,
        timeout: Duration,
    ) -> RedisResult<ClusterConnection> {
        let client = self
            .builder(timeout)
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()?;
        let mut conn = client.get_async_connection().await?;
        if let Some(channel) = node_channel {
            conn.subscribe(channel).await?;
        }
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_parse_and_bad_ones_say_why() {
        let u = parse_cluster_url("redis+cluster://:pw@10.0.0.1:7000,h2:7001/")
            .unwrap()
            .unwrap();
        assert_eq!(
            u.seeds,
            ["redis://:pw@10.0.0.1:7000", "redis://:pw@h2:7001"]
        );
        let u = parse_cluster_url("redis+cluster://h:1").unwrap().unwrap();
        assert_eq!(u.seeds, ["redis://h:1"]);
        assert_eq!(parse_cluster_url("redis://h:1/").unwrap(), None);
        for bad in [
            "redis+cluster://",
            "redis+cluster://h",
            "redis+cluster://h:0",
            "redis+cluster://h:1,:2",
            "redis+cluster://h:1/2",
            "redis+cluster://h:1?x=y",
        ] {
            assert!(parse_cluster_url(bad).is_err(), "{bad}");
        }
    }
}
