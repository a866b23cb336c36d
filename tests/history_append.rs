//! The append script against a real `redis-server`: a message is numbered, kept and published once
//! however often its pipeline is sent. On a Redis Cluster the client library sends a whole pipeline
//! again when one of its commands is redirected (a failover, a slot's move), though the commands
//! before it ran; tests/redis_cluster.rs shows the failover end to end, this shows the rule itself,
//! deterministically: the same pipeline sent twice, and an earlier message sent again after a later
//! one.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use gateway::cluster::history::{HistoryStore, message_id};
use gateway::cluster::keys;
use shards::history::HistoryConfig;

const CONFIG: HistoryConfig = HistoryConfig {
    max_messages: 100,
    max_age: Duration::from_secs(60),
};

/// Appends to `user`'s stream for each id, in one pipeline, published to node `me` (which holds
/// `user`); returns each reply's (seq, receivers).
async fn send(
    conn: &mut redis::aio::MultiplexedConnection,
    store: &HistoryStore,
    user: &str,
    me: &str,
    ids: &[u64],
) -> Vec<(u64, u64)> {
    let mut pipe = redis::pipe();
    store.prepare(&mut pipe);
    for &id in ids {
        let head = format!("hdm\n{id}\n");
        let how = (head.as_bytes(), Duration::from_secs(5), me, true);
        store.append(&mut pipe, user, format!("frame {id}").as_bytes(), how, id);
    }
    let replies: Vec<redis::Value> = pipe.query_async(conn).await.expect("append pipeline");
    assert!(!store.after(&Ok::<(), redis::RedisError>(())));
    replies
        .into_iter()
        .map(|v| {
            let a = HistoryStore::parse_append(v).expect("append reply");
            (a.seq, a.receivers)
        })
        .collect()
}

#[test]
fn a_message_sent_again_is_appended_and_published_once() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis.client();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        // This node listens on its channel, as the bridge does: each publication counts.
        let mut listener = client.get_async_pubsub().await.unwrap();
        listener.subscribe(keys::node_channel("me")).await.unwrap();
        let store = HistoryStore::new(CONFIG);
        let first = message_id();
        let ids = [first, first + 1, first + 2];

        assert_eq!(
            send(&mut conn, &store, "amy", "me", &ids).await,
            [(1, 1), (2, 1), (3, 1)]
        );
        // The same pipeline again: the first run's answers, nothing new kept or published.
        assert_eq!(
            send(&mut conn, &store, "amy", "me", &ids).await,
            [(1, 1), (2, 1), (3, 1)]
        );
        // Its first message alone (as when the library sends a part whose head was redirected),
        // then a new message: numbered next.
        assert_eq!(
            send(&mut conn, &store, "amy", "me", &[first, first + 3]).await,
            [(1, 1), (4, 1)]
        );
        let len: u64 = redis::cmd("XLEN")
            .arg(keys::history_stream("amy"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(len, 4, "one entry per message");
        let mut messages = listener.on_message();
        let mut seqs = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(
            Duration::from_millis(300),
            futures_util::StreamExt::next(&mut messages),
        )
        .await
        {
            let payload = m.get_payload_bytes().to_vec();
            let text = String::from_utf8_lossy(&payload).to_string();
            // hdm\n<id>\n<seq>\n<epoch>\n<frame>
            seqs.push(text.lines().nth(2).unwrap().parse::<u64>().unwrap());
        }
        assert_eq!(seqs, [1, 2, 3, 4], "each message published once, in order");
    });
}
