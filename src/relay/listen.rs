//! The relay's listening side: the pushes of the subscribed connection go to [`Relay::on_message`], and
//! this node's acks go back out in pipelined batches, until the connection fails.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::{
    Relay, envelope, outgoing,
    subscriber::{Push, classify},
};
use crate::cluster::keys;

/// Serves the listening connection's messages until it fails, and publishes this node's answers (all
/// answers queued at a time go out in one pipelined round trip). Returns when the connection is gone
/// (the bridge then reconnects). The channels whose topic stopped being listened to go to `dropped`:
/// the bridge subscribes again to those it still has subscribers of.
pub async fn serve(
    relay: Arc<Relay>,
    mut pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    dropped: mpsc::UnboundedSender<Arc<str>>,
) -> redis::RedisResult<()> {
    let mut acks_rx = relay
        .acks_rx
        .lock()
        .ok()
        .and_then(|mut rx| rx.take())
        .ok_or_else(|| redis::RedisError::from(std::io::Error::other("relay served twice")))?;
    let out_rx = relay
        .out_rx
        .lock()
        .ok()
        .and_then(|mut rx| rx.take())
        .ok_or_else(|| redis::RedisError::from(std::io::Error::other("relay served twice")))?;
    // Both tasks end with the session (`Relay::end`), also when this future is aborted.
    let sender = tokio::spawn(outgoing::run(relay.clone(), out_rx));
    let mut conn = relay.conn.clone();
    let mut ended = relay.ended.subscribe();
    let ack_task = tokio::spawn(async move {
        let mut batch = Vec::new();
        loop {
            let received = tokio::select! {
                biased;
                _ = ended.wait_for(|e| *e) => 0,
                n = acks_rx.recv_many(&mut batch, 1024) => n,
            };
            if received == 0 {
                return;
            }
            let mut pipe = redis::pipe();
            for (origin, corr, conns) in batch.drain(..) {
                pipe.cmd("PUBLISH")
                    .arg(keys::node_channel(&origin))
                    .arg(envelope::ack(corr, conns))
                    .ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                warn!(error = %e, "could not publish cross-node acks");
            }
        }
    });
    let result = loop {
        match pushes.recv().await.map(classify) {
            Some(Push::Message(payload)) => relay.on_message(&payload),
            Some(Push::Other) => {}
            Some(Push::Unsubscribed(topic)) => {
                if let Some(channel) = std::str::from_utf8(&topic)
                    .ok()
                    .and_then(keys::channel_of_topic)
                {
                    let _ = dropped.send(channel.into());
                }
            }
            Some(Push::Disconnected) | None => {
                break Err(redis::RedisError::from(std::io::Error::other(
                    "listening connection to Redis lost",
                )));
            }
        }
    };
    ack_task.abort();
    sender.abort();
    result
}
